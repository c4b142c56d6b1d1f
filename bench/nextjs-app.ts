/**
 * examples/nextjs as the browser test and the browser benchmark run it: built once (`npm run build` in
 * its folder), started with `next start` on loopback, its page in headless Chromium (Debian's package,
 * driven by playwright-core), the sidecar beside it as the built CLI.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { chromium, type Browser } from 'playwright-core';

/** The repository root, found from this file whether it runs as bench/*.ts (vitest) or dist/bench/*.js. */
function repositoryRoot(): string {
  for (let dir = dirname(fileURLToPath(import.meta.url)); dir !== dirname(dir); dir = dirname(dir)) {
    if (existsSync(join(dir, 'examples/nextjs/package.json'))) return dir;
  }
  return process.cwd(); // not in a checkout: exampleMissing() says so
}

const ROOT = repositoryRoot();
export const EXAMPLE_DIR = join(ROOT, 'examples/nextjs');
const CLI_PATH = join(ROOT, 'dist/src/cli/main.js');
/** Prisma's CLI wants a schema-engine binary it never runs for `generate`: the offline stand-in. */
const SCHEMA_ENGINE_STAND_IN = join(ROOT, 'prisma/schema-engine-unavailable');
const NEXT_BIN = join(EXAMPLE_DIR, 'node_modules/next/dist/bin/next');
const SOURCES = ['app', 'lib', 'prisma', 'next.config.ts', 'package-lock.json'];

/** Why the example cannot run here, or null. `.ci/run` installs it (`npm ci` in examples/nextjs). */
export function exampleMissing(): string | null {
  if (!existsSync(NEXT_BIN)) return `examples/nextjs has no node_modules: run "npm ci" in examples/nextjs (.ci/run does)`;
  if (!existsSync(CLI_PATH)) return 'dist/ is missing: run "npm run build" (npm test does)';
  return null;
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export async function waitUntil(condition: () => Promise<boolean> | boolean, timeoutMs: number, what: string): Promise<void> {
  const started = Date.now();
  while (!(await condition())) {
    if (Date.now() - started > timeoutMs) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

function newestMtime(path: string): number {
  const stat = statSync(path);
  if (!stat.isDirectory()) return stat.mtimeMs;
  return Math.max(stat.mtimeMs, ...readdirSync(path).map((name) => newestMtime(join(path, name))));
}

/**
 * `npm run build` in the example (prisma generate + next build), unless a build newer than every source
 * is there already: one build serves every test file and both database runs of `.ci/run`.
 */
export async function buildExample(env: Record<string, string> = {}, distDir = '.next'): Promise<void> {
  const buildId = join(EXAMPLE_DIR, distDir, 'BUILD_ID');
  await withBuildLock(async () => {
    // The library itself is not in the build: it is a server external, loaded from dist/ at run time.
    const sources = Math.max(...SOURCES.map((name) => newestMtime(join(EXAMPLE_DIR, name))));
    if (existsSync(buildId) && statSync(buildId).mtimeMs > sources) return;
    await promisify(execFile)('npm', ['run', 'build'], {
      cwd: EXAMPLE_DIR,
      env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? SCHEMA_ENGINE_STAND_IN, NEXT_TELEMETRY_DISABLED: '1', NEXT_DIST_DIR: distDir, ...env },
      maxBuffer: 16 * 1024 * 1024,
    });
  });
}

/** Test files run in parallel workers: one builds, the others wait for it (mkdir is atomic). */
async function withBuildLock(work: () => Promise<void>): Promise<void> {
  const lock = join(EXAMPLE_DIR, '.build-lock');
  const started = Date.now();
  for (;;) {
    try {
      mkdirSync(lock);
      break;
    } catch {
      // A lock older than any build is left over from a killed run.
      if (Date.now() - (statSync(lock, { throwIfNoEntry: false })?.mtimeMs ?? Date.now()) > 600_000) rmSync(lock, { recursive: true, force: true });
      if (Date.now() - started > 600_000) throw new Error(`${lock} held for 10 minutes`);
      await new Promise((resolve) => setTimeout(resolve, 250));
    }
  }
  try {
    await work();
  } finally {
    rmSync(lock, { recursive: true, force: true });
  }
}

/** Creates the example's tables (its migrations) in `schema` of the database at `url`. */
export async function migrateExample(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}; SET search_path TO ${schema}`);
    // In order, as `prisma migrate deploy` applies them (their directories sort by their number).
    const migrations = join(EXAMPLE_DIR, 'prisma/migrations');
    const names = readdirSync(migrations, { withFileTypes: true }).filter((entry) => entry.isDirectory()).map((entry) => entry.name);
    for (const name of names.sort((a, b) => parseInt(a, 10) - parseInt(b, 10))) {
      await client.query(readFileSync(join(migrations, name, 'migration.sql'), 'utf8'));
    }
  } finally {
    await client.end();
  }
}

export interface RunningProcess {
  url: string;
  output(): string;
  stop(): Promise<void>;
}

/** `next start` on a free loopback port with exactly `env` (plus PATH), once it answers. */
export async function startExample(env: Record<string, string>): Promise<RunningProcess> {
  const port = await freePort();
  return startAndProbe([NEXT_BIN, 'start', '-H', '127.0.0.1', '-p', String(port)], EXAMPLE_DIR, `http://127.0.0.1:${port}`, '', {
    NODE_ENV: 'production',
    NEXT_TELEMETRY_DISABLED: '1',
    ...env,
  });
}

/** The sidecar daemon (built CLI) on a free loopback port with exactly `env` (plus PATH), once it is live. */
export async function startSidecar(env: Record<string, string>): Promise<RunningProcess> {
  const port = await freePort();
  return startAndProbe([CLI_PATH], ROOT, `http://127.0.0.1:${port}`, '/livez', {
    RECONCILER_HTTP_HOST: '127.0.0.1',
    RECONCILER_HTTP_PORT: String(port),
    ...env,
  });
}

async function startAndProbe(args: string[], cwd: string, url: string, probePath: string, env: Record<string, string>): Promise<RunningProcess> {
  const child: ChildProcess = spawn(process.execPath, args, {
    cwd,
    env: { PATH: process.env.PATH ?? '', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));
  await waitUntil(
    async () => {
      if (gone) throw new Error(`${args.join(' ')} exited:\n${output}`);
      return fetch(`${url}${probePath}`).then(
        (res) => res.ok,
        () => false,
      );
    },
    30_000,
    `${url}${probePath} to answer`,
  );
  return {
    url,
    output: () => output,
    async stop() {
      if (!gone) child.kill('SIGTERM');
      await exited;
    },
  };
}

/** Debian's `chromium` (`.ci/run` apt-installs it), or CHROMIUM_PATH. */
export function chromiumPath(): string | null {
  if (process.env.CHROMIUM_PATH) return existsSync(process.env.CHROMIUM_PATH) ? process.env.CHROMIUM_PATH : null;
  try {
    return execFileSync('sh', ['-c', 'command -v chromium || command -v chromium-browser'], { encoding: 'utf8' }).trim() || null;
  } catch {
    return null;
  }
}

/** Headless Chromium driven by playwright-core (no bundled browser download). */
export function launchChromium(executablePath: string): Promise<Browser> {
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath, headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

export interface ExampleModelSeed {
  id: string;
  tuneId: number;
  /** When the app last changed its status (default now). */
  updatedAt?: Date;
}

/** The user (0 credits) and their TRAINING models, as the example app would have written them. */
export async function seedExampleModels(pool: pg.Pool, userId: string, models: readonly ExampleModelSeed[]): Promise<void> {
  await pool.query(`INSERT INTO demo_users (id, name) VALUES ($1, $1) ON CONFLICT DO NOTHING`, [userId]);
  await pool.query(
    `INSERT INTO ai_models (id, "userId", name, status, "aiProvider", "trainingJobId", "createdAt", "updatedAt")
     SELECT id, $1, id, 'TRAINING', 'astria', tune, (at AT TIME ZONE 'UTC'), (at AT TIME ZONE 'UTC')
     FROM unnest($2::text[], $3::text[], $4::timestamptz[]) AS m(id, tune, at)`,
    [userId, models.map((m) => m.id), models.map((m) => String(m.tuneId)), models.map((m) => (m.updatedAt ?? new Date()).toISOString())],
  );
}
