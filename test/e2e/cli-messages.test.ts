import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDatabase, dropDatabase } from '../../dev/embedded-postgres.js';
import { runCli, type CliResult } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const env = { ASTRIA_API_KEY: 'sd_messages_test', LOG_LEVEL: 'info' };

let db: TestDatabase;
/** A database that answers but is not the app's: no ai_models, no schema of ours. */
const wrongName = `t_wrong_${randomBytes(4).toString('hex')}`;
let wrongUrl: string;
beforeAll(async () => {
  db = await createTestDatabase();
  wrongUrl = await createDatabase(inject('adminDatabaseUrl'), wrongName);
});
afterAll(async () => {
  await db.drop();
  await dropDatabase(inject('adminDatabaseUrl'), wrongName);
});

/** `url` with its database name replaced. */
function onDatabase(url: string, name: string): string {
  const changed = new URL(url);
  changed.pathname = `/${name}`;
  return changed.toString();
}

/** A fatal exit: exactly one JSON log line (level fatal) and one plain line, no stack trace. */
function expectFatal(result: CliResult, plain: RegExp): void {
  expect(result.code).toBe(1);
  const lines = result.stderr.split('\n').filter((line) => line !== '');
  const json = lines.filter((line) => line.startsWith('{'));
  const human = lines.filter((line) => !line.startsWith('{'));
  expect(json.length, result.stderr).toBeGreaterThanOrEqual(1);
  const last = JSON.parse(json.at(-1)!) as { level: number; msg: string };
  expect(last.level).toBe(60);
  expect(last.msg).toMatch(plain);
  expect(human, result.stderr).toHaveLength(1);
  expect(human[0]).toMatch(/^astria-reconciler: /);
  expect(human[0]).toMatch(plain);
  expect(result.stderr).not.toMatch(/\n\s+at |stack/);
}

describe('messages of the CLI', () => {
  it('an unknown flag: names the flag, points at --help, no Node hint about positionals (exit 2)', async () => {
    const result = await runCli(['--once', '--frobnicate'], env);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/unknown option --frobnicate/);
    expect(result.stderr).toMatch(/astria-reconciler --help/);
    expect(result.stderr).not.toMatch(/positional|'--'/);
  });

  it('port in use: one JSON line and one plain line naming the port variable', async () => {
    const blocker: Server = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const { port } = blocker.address() as { port: number };
    try {
      const result = await runCli([], { ...env, DATABASE_URL: db.url, RECONCILER_HTTP_HOST: '127.0.0.1', RECONCILER_HTTP_PORT: String(port) });
      expectFatal(result, new RegExp(`127\\.0\\.0\\.1:${port}.*already in use.*RECONCILER_HTTP_PORT`));
    } finally {
      await new Promise<void>((resolve) => blocker.close(() => resolve()));
    }
  });

  it('database unreachable (--once): one JSON line and one plain line, no password', async () => {
    const result = await runCli(['--once'], { ...env, DATABASE_URL: 'postgresql://nobody:hunter2@127.0.0.1:1/none' });
    expectFatal(result, /database unreachable.*check DATABASE_URL.*ECONNREFUSED/);
    expect(result.stderr).not.toContain('hunter2');
  });

  it.each([['report'], ['requeue-dead']])('%s on a database that does not exist: names DATABASE_URL (exit 1)', async (command) => {
    const result = await runCli([command], { ...env, DATABASE_URL: onDatabase(db.url, 'nodb') });
    expectFatal(result, /check DATABASE_URL.*database "nodb" does not exist/);
    expect(result.stdout).toBe('');
  });

  it.each([
    ['report', 'a database without ai_models', () => wrongUrl],
    ['requeue-dead', 'a database without ai_models', () => wrongUrl],
    ['report', "the app's database with a wrong ?schema=", () => `${db.url}?schema=nope`],
    ['requeue-dead', "the app's database with a wrong ?schema=", () => `${db.url}?schema=nope`],
  ])('%s on %s: the one line --once gives, naming DATABASE_URL and ?schema=, no zeros (exit 1)', async (command, _what, url) => {
    const result = await runCli([command], { ...env, DATABASE_URL: url() });
    expectFatal(result, /table ai_models not found.*DATABASE_URL.*\?schema=/);
    expect(result.stdout).toBe('');
    const once = await runCli(['--once'], { ...env, DATABASE_URL: url(), ASTRIA_API_URL: 'http://127.0.0.1:1' });
    expect(once.stderr.split('\n').filter((line) => line.startsWith('astria-reconciler: '))).toEqual(
      result.stderr.split('\n').filter((line) => line.startsWith('astria-reconciler: ')),
    );
  });

  it.each([
    ['--once', ['--once']],
    ['the daemon', []],
  ])('a DATABASE_URL with an unescaped / in the password (%s): names the variable, never shows the password', async (_name, args) => {
    const result = await runCli(args, { ...env, DATABASE_URL: 'postgresql://app:pa/ss@db.internal:5432/app', RECONCILER_HTTP_PORT: '0' });
    expectFatal(result, /DATABASE_URL is not a valid URL/);
    expect(result.stdout + result.stderr).not.toContain('pa/ss');
    expect(result.stdout + result.stderr).not.toContain('db.internal');
  });

  it('--stuck-after beyond 100 years: a usage error (exit 2) naming the flag, no "Invalid time value"', async () => {
    const result = await runCli(['--once', '--stuck-after', '999999999d'], { ...env, DATABASE_URL: db.url });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--stuck-after must be at most 36500d/);
    expect(result.stderr).not.toMatch(/Invalid time value|\n\s+at /);
  });

  it('--kind names something other than tunes or prompts: a usage error (exit 2) naming both kinds', async () => {
    const result = await runCli(['--once', '--kind', 'images'], { ...env, DATABASE_URL: db.url });
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--kind: "images" is not one of tunes, prompts/);
  });

  it.each(['RECONCILER_STUCK_AFTER', 'RECONCILER_EVENT_RETENTION', 'BROADCAST_DEAD_AFTER'])(
    '%s beyond 100 years fails at start naming the variable (exit 1)',
    async (name) => {
      const result = await runCli(['--once'], { ...env, DATABASE_URL: db.url, [name]: '999999999d' });
      expectFatal(result, new RegExp(`${name} must be at most 36500d`));
    },
  );

  it('bad configuration: one JSON line and one plain line naming the variable', async () => {
    const result = await runCli(['--once'], { ...env, DATABASE_URL: db.url, RECONCILER_INTERVAL: 'soon' });
    expectFatal(result, /RECONCILER_INTERVAL/);
  });
});
