import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
const CONSUMER = join(ROOT, 'test', 'fixtures', 'consumer', 'app.ts');

interface Manifest {
  dependencies: Record<string, string>;
  peerDependencies?: Record<string, string>;
}

let work: string;
let files: string[];
let scratch: string;
let manifest: Manifest;

/**
 * What a clean clone packs (`npm pack` builds first), installed into a scratch app outside this
 * repository: the tarball extracted as node_modules/astria-reconciler, and next to it only the
 * package's own dependencies, linked from this checkout (offline; what npm would hoist there).
 * Optional peer dependencies (ioredis) are left out, as a default install leaves them.
 */
beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), 'arc-pack-'));
  const checkout = join(work, 'checkout');
  await mkdir(checkout);
  for (const entry of ['package.json', 'package-lock.json', 'tsconfig.json', 'tsconfig.package.json', 'README.md', 'LICENSE', 'src']) {
    await cp(join(ROOT, entry), join(checkout, entry), { recursive: true });
  }
  await symlink(join(ROOT, 'node_modules'), join(checkout, 'node_modules'));
  const packed = await run('npm', ['pack', '--json', '--pack-destination', work], { cwd: checkout, maxBuffer: 16 * 1024 * 1024 });
  const [result] = JSON.parse(packed.stdout) as [{ filename: string; files: { path: string }[] }];
  files = result.files.map((file) => file.path).sort();

  scratch = join(work, 'app');
  const installed = join(scratch, 'node_modules', 'astria-reconciler');
  await mkdir(installed, { recursive: true });
  await run('tar', ['-xzf', join(work, result.filename), '-C', installed, '--strip-components=1']);
  manifest = JSON.parse(await readFile(join(installed, 'package.json'), 'utf8')) as Manifest;
  for (const name of Object.keys(manifest.dependencies)) {
    await mkdir(dirname(join(scratch, 'node_modules', name)), { recursive: true });
    await symlink(join(ROOT, 'node_modules', name), join(scratch, 'node_modules', name));
  }
}, 600_000);
afterAll(() => rm(work, { recursive: true, force: true }));

/** A consumer project in the scratch app: `type` module or commonjs, strict, skipLibCheck off. */
async function consumer(type: 'module' | 'commonjs'): Promise<string> {
  const dir = join(scratch, type);
  await mkdir(dir, { recursive: true });
  await cp(CONSUMER, join(dir, 'app.ts'));
  await writeFile(join(dir, 'package.json'), JSON.stringify({ name: `consumer-${type}`, private: true, type }));
  await writeFile(
    join(dir, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { strict: true, skipLibCheck: false, module: 'nodenext', moduleResolution: 'nodenext', target: 'es2022', lib: ['es2023'], outDir: 'out' },
      files: ['app.ts'],
    }),
  );
  return dir;
}

async function outcome(command: string, args: string[], cwd: string): Promise<{ code: number; output: string }> {
  return run(command, args, { cwd }).then(
    (done) => ({ code: 0, output: `${done.stdout}${done.stderr}` }),
    (error: { code?: number; stdout?: string; stderr?: string }) => ({ code: error.code ?? 1, output: `${error.stdout ?? ''}${error.stderr ?? ''}` }),
  );
}

describe('the npm package', () => {
  it('ships the built runtime, its types, README and LICENSE: no demo, test fixtures or source maps', () => {
    expect(files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/cli/main.js']));
    expect(files.filter((path) => !/^dist\/src\/.+\.(js|d\.ts)$/.test(path) && !['LICENSE', 'README.md', 'package.json'].includes(path))).toEqual([]);
    expect(files.filter((path) => /demo|simulated|embedded|host-schema|\.map$/.test(path))).toEqual([]);
  });

  it('imports nothing its dependencies do not name; ioredis (an optional peer) only from the redis adapter', async () => {
    const dist = join(scratch, 'node_modules', 'astria-reconciler');
    const declared = new Set([...Object.keys(manifest.dependencies), ...Object.keys(manifest.peerDependencies ?? {})]);
    const undeclared: string[] = [];
    const ioredisImporters: string[] = [];
    for (const path of files.filter((file) => file.endsWith('.js') || file.endsWith('.d.ts'))) {
      const text = await readFile(join(dist, path), 'utf8');
      for (const [, specifier] of text.matchAll(/(?:(?:^|[\s};])from|\bimport\()\s*['"]([^'"]+)['"]/gm)) {
        if (specifier!.startsWith('.') || specifier!.startsWith('node:') || builtinModules.includes(specifier!)) continue;
        const name = specifier!.startsWith('@') ? specifier!.split('/').slice(0, 2).join('/') : specifier!.split('/')[0]!;
        const types = name.startsWith('@types/') ? name : `@types/${name.replace(/^@(.+)\//, '$1__')}`;
        if (!declared.has(name) && !(path.endsWith('.d.ts') && declared.has(types))) undeclared.push(`${path}: ${specifier}`);
        if (name === 'ioredis') ioredisImporters.push(path);
      }
    }
    expect(undeclared).toEqual([]);
    expect(ioredisImporters.filter((path) => path.endsWith('.js'))).toEqual(['dist/src/broadcast/redis.js']);
    expect(manifest.peerDependencies).toHaveProperty('ioredis');
    expect(Object.keys(manifest.dependencies)).toEqual(expect.arrayContaining(['@types/node', '@types/pg']));
  });

  it('loads with a plain require() and with import, without ioredis installed', async () => {
    const exported = Object.keys(await import(join(scratch, 'node_modules', 'astria-reconciler', 'dist', 'src', 'index.js'))).sort();
    const required = await outcome('node', ['-e', 'console.log(JSON.stringify(Object.keys(require("astria-reconciler")).sort()))'], scratch);
    expect(required.code).toBe(0);
    expect(JSON.parse(required.output)).toEqual(exported);
    const imported = await outcome('node', ['--input-type=module', '-e', 'console.log(JSON.stringify(Object.keys(await import("astria-reconciler")).sort()))'], scratch);
    expect(imported.code).toBe(0);
    expect(JSON.parse(imported.output)).toEqual(exported);
  }, 60_000);

  it('BROADCAST=redis without ioredis installed fails at start, naming ioredis', async () => {
    const env = {
      PATH: process.env.PATH,
      BROADCAST: 'pg,redis',
      REDIS_URL: 'redis://127.0.0.1:1',
      DATABASE_URL: 'postgresql://postgres@127.0.0.1:1/none',
      ASTRIA_API_KEY: 'sd_package_test',
      PORT: '0',
    };
    const cli = join(scratch, 'node_modules', 'astria-reconciler', 'dist', 'src', 'cli', 'main.js');
    const result = await run('node', [cli], { cwd: scratch, env, timeout: 30_000 }).then(
      () => ({ code: 0, stderr: '' }),
      (error: { code?: number; stderr?: string }) => ({ code: error.code ?? 1, stderr: error.stderr ?? '' }),
    );
    expect(result.code).not.toBe(0);
    expect(result.stderr).toMatch(/BROADCAST names redis, which needs the ioredis package/);
  }, 60_000);

  it.each(['module', 'commonjs'] as const)(
    'type-checks calls of every exported function in a strict %s app (skipLibCheck off), and the compiled app runs',
    async (type) => {
      const source = await readFile(CONSUMER, 'utf8');
      const runtime = await import(join(scratch, 'node_modules', 'astria-reconciler', 'dist', 'src', 'index.js'));
      const functions = Object.keys(runtime).filter((name) => typeof runtime[name] === 'function');
      expect(functions.filter((name) => !source.includes(`${name}(`))).toEqual([]);

      const dir = await consumer(type);
      const compiled = await outcome('node', [TSC, '-p', dir], dir);
      expect(compiled.output).toBe('');
      expect(compiled.code).toBe(0);
      const ran = await outcome('node', [join(dir, 'out', 'app.js')], dir);
      expect(ran).toEqual({ code: 0, output: 'loaded function\n' });
    },
    300_000,
  );
});
