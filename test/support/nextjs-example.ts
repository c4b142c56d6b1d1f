import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import pg from 'pg';
import { freePort, waitUntil } from './daemon.js';

export const EXAMPLE_DIR = fileURLToPath(new URL('../../examples/nextjs', import.meta.url));
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Prisma's CLI wants a schema-engine binary it never runs for `generate`: the offline stand-in. */
const SCHEMA_ENGINE_STAND_IN = join(ROOT, 'prisma/schema-engine-unavailable');
const NEXT_BIN = join(EXAMPLE_DIR, 'node_modules/next/dist/bin/next');
const SOURCES = ['app', 'lib', 'prisma', 'next.config.ts', 'package-lock.json'];

/** Why the example cannot run here, or null. `.ci/run` installs it (`npm ci` in examples/nextjs). */
export function exampleMissing(): string | null {
  if (!existsSync(NEXT_BIN)) return `examples/nextjs has no node_modules: run "npm ci" in examples/nextjs (.ci/run does)`;
  if (!existsSync(join(ROOT, 'dist/src/index.js'))) return 'dist/ is missing: run "npm run build" (npm test does)';
  return null;
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
  const sources = Math.max(...SOURCES.map((name) => newestMtime(join(EXAMPLE_DIR, name))), newestMtime(join(ROOT, 'dist/src')));
  if (existsSync(buildId) && statSync(buildId).mtimeMs > sources) return;
  await promisify(execFile)('npm', ['run', 'build'], {
    cwd: EXAMPLE_DIR,
    env: { ...process.env, PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? SCHEMA_ENGINE_STAND_IN, NEXT_TELEMETRY_DISABLED: '1', NEXT_DIST_DIR: distDir, ...env },
    maxBuffer: 16 * 1024 * 1024,
  });
}

/** Creates the example's tables (its migration) in `schema` of the database at `url`. */
export async function migrateExample(url: string, schema: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}; SET search_path TO ${schema}`);
    await client.query(readFileSync(join(EXAMPLE_DIR, 'prisma/migrations/0_init/migration.sql'), 'utf8'));
  } finally {
    await client.end();
  }
}

export interface RunningExample {
  url: string;
  output(): string;
  stop(): Promise<void>;
}

/** `next start` on a free loopback port with exactly `env` (plus PATH), once it answers. */
export async function startExample(env: Record<string, string>): Promise<RunningExample> {
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [NEXT_BIN, 'start', '-H', '127.0.0.1', '-p', String(port)], {
    cwd: EXAMPLE_DIR,
    env: { PATH: process.env.PATH ?? '', NODE_ENV: 'production', NEXT_TELEMETRY_DISABLED: '1', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(
    async () => {
      if (gone) throw new Error(`next start exited:\n${output}`);
      return fetch(url).then(
        (res) => res.ok,
        () => false,
      );
    },
    30_000,
    'next start to answer',
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
