/**
 * One bad input costs one model at most, end to end (issue 9): the built CLI and daemon, a real
 * database, the simulated Astria over loopback.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { seedModels, type SeedModel } from '../../dev/host-schema.js';
import { quoteIdentifier } from '../../src/db/identifier.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { runCli } from '../support/cli.js';
import { startDaemon, waitUntil, type RunningDaemon } from '../support/daemon.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';

const API_KEY = 'sd_e2e_robustness_key';
const HOUR = 3_600_000;
const ago = (ms: number) => new Date(Date.now() - ms);

let db: TestDatabase;
let astria: SimulatedAstria;
let env: Record<string, string>;
const daemons: RunningDaemon[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());
beforeEach(async () => {
  astria = await startSimulatedAstria({ apiKey: API_KEY });
  await db.pool.query('DELETE FROM ai_models');
  env = { DATABASE_URL: db.url, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url, LOG_LEVEL: 'info' };
});
afterEach(async () => {
  for (const daemon of daemons.splice(0)) if (!daemon.exited()) daemon.kill('SIGKILL');
  await astria.close();
});

const stuck = (id: string, tuneId: number | string, extra: Partial<SeedModel> = {}): SeedModel => ({
  id,
  status: 'TRAINING',
  trainingJobId: String(tuneId),
  updatedAt: ago(HOUR),
  ...extra,
});

/** 30 trained models and the three poison strings (NUL from Astria, a surrogate cut, a 9 KB modelUrl). */
async function seedPoison(): Promise<string[]> {
  const trained = astria.addTunes(30, () => ({ trainedAt: ago(60_000), startedTrainingAt: ago(HOUR) }));
  const nul = astria.addTune({ status: 'failed', errorMessage: 'face\u0000not detected' });
  const surrogate = astria.addTune({ trainedAt: ago(60_000) });
  const longUrl = astria.addTune({ startedTrainingAt: ago(60_000), eta: new Date(Date.now() + HOUR) });
  await seedModels(db.pool, [
    ...trained.map((tune) => stuck(`m-${tune.id}`, tune.id)),
    stuck('p-nul', nul.id),
    stuck('p-surrogate', surrogate.id, { errorMessage: `${'a'.repeat(999)}${'😀'.repeat(20)}` }),
    stuck('p-url', longUrl.id, { status: 'PROCESSING' }),
  ]);
  await db.pool.query(`UPDATE ai_models SET "modelUrl" = $1 WHERE id = 'p-url'`, [`https://cdn.example.test/${'x'.repeat(9_000)}`]);
  return trained.map((tune) => `m-${tune.id}`);
}

async function countStatus(status: string): Promise<number> {
  const { rows } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM ai_models WHERE status = $1', [status]);
  return rows[0]!.n;
}

describe('--once', () => {
  it('poison strings, a row the app keeps locked and a 403: exit 3 listing the failures, every other model applied, no stack trace', async () => {
    const lockedId = (await seedPoison())[5]!;
    // A tune missing from the list: its single GET is answered 403.
    await seedModels(db.pool, [stuck('m-forbidden', 888_888)]);
    astria.injectFaults({ endpoint: 'get', status: 403, body: '{"error":"Forbidden"}' }, 1);
    const app = new pg.Client({ connectionString: db.url });
    await app.connect();
    await app.query('BEGIN');
    await app.query(`UPDATE ai_models SET name = 'renamed' WHERE id = $1`, [lockedId]);
    try {
      const result = await runCli(['--once'], env);

      expect(result.code).toBe(3);
      expect(result.stdout).toMatch(new RegExp(`${lockedId}  not checked: database refused the write: .*lock timeout`));
      expect(result.stdout).toMatch(/m-forbidden {2}not checked: Astria refused access \(HTTP 403\)/);
      expect(result.stderr).not.toMatch(/fatal|\n\s+at /);
      expect(await countStatus('READY')).toBe(30); // 29 trained + p-surrogate; the locked one waits
      expect((await readModel(db.pool, 'p-nul')).status).toBe('ERROR');
      expect((await readModel(db.pool, 'p-url')).status).toBe('TRAINING');
      expect((await readModel(db.pool, 'm-forbidden')).status).toBe('TRAINING');
    } finally {
      await app.query('ROLLBACK');
      await app.end();
    }
    expect((await readModel(db.pool, lockedId)).status).toBe('TRAINING');
  }, 60_000);

  it('against a host answering 404 (HTML) everywhere, or a wrong path on Astria: nothing marked ERROR, exit 3 saying why', async () => {
    await seedModels(db.pool, Array.from({ length: 20 }, (_, i) => stuck(`m-${i}`, 5_000 + i)));
    const website = createServer((_req, res) => {
      res.writeHead(404, { 'content-type': 'text/html' });
      res.end('<html><body>404 Not Found</body></html>');
    });
    await new Promise<void>((resolve) => website.listen(0, '127.0.0.1', resolve));
    try {
      const websiteUrl = `http://127.0.0.1:${(website.address() as AddressInfo).port}`;
      for (const apiUrl of [websiteUrl, `${astria.url}/v2/wrong/path`]) {
        const result = await runCli(['--once'], { ...env, ASTRIA_API_URL: apiUrl });
        expect(result.code).toBe(3);
        expect(result.stdout).toMatch(/Pass stopped: .*404.*ASTRIA_API_URL/);
        expect(await countStatus('ERROR')).toBe(0);
      }
    } finally {
      website.closeAllConnections();
      await new Promise((resolve) => website.close(resolve));
    }
  });
});

describe('the daemon', () => {
  it('applies every model past the poison ones and keeps running', async () => {
    await seedPoison();
    const daemon = await startDaemon({ ...env, RECONCILER_INTERVAL: '1s', RECONCILER_STUCK_AFTER: '0s' });
    daemons.push(daemon);
    await waitUntil(async () => (await countStatus('READY')) === 31, 15_000, '31 models READY');
    expect((await readModel(db.pool, 'p-nul')).status).toBe('ERROR');
    expect(daemon.exited()).toBe(false);
  }, 30_000);

  it('webhook: a poison body answers 200, not 500; &model= applies the callback to that model only', async () => {
    const nul = astria.addTune({ status: 'failed', errorMessage: 'bad\u0000photo' });
    // Still training at Astria: the daemon's first look changes nothing, so what changes is the webhook's doing.
    const shared = astria.addTune({ startedTrainingAt: ago(120_000) });
    await seedModels(db.pool, [
      stuck('w-nul', nul.id, { updatedAt: new Date() }),
      stuck('w-mine', shared.id, { userId: 'user-a', updatedAt: new Date() }),
      stuck('w-other', shared.id, { userId: 'user-b', updatedAt: new Date() }),
    ]);
    const daemon = await startDaemon({ ...env, WEBHOOK_SECRET: 'hook-secret', RECONCILER_INTERVAL: '1h' });
    daemons.push(daemon);
    const post = (query: string, tune: unknown) =>
      fetch(`${daemon.url}/webhooks/astria?secret=hook-secret${query}`, { method: 'POST', body: JSON.stringify({ tune }) });

    expect((await post('', astria.getTune(nul.id))).status).toBe(200);
    expect((await readModel(db.pool, 'w-nul')).errorMessage).toBe('Astria training failed: badphoto');
    expect((await post('&model=w-mine', { ...astria.getTune(shared.id), trained_at: ago(60_000).toISOString() })).status).toBe(200);
    expect((await readModel(db.pool, 'w-mine')).status).toBe('READY');
    expect((await readModel(db.pool, 'w-other')).status).toBe('TRAINING');
  });

  it("stops calling Astria within seconds once its lock connection is dropped mid-pass, retries included", async () => {
    // The list shows none of the tunes, so each needs a GET, and every GET fails with 500: each check is
    // a chain of retries with backoff, the longest-lived calls.
    const tunes = astria.addTunes(200, () => ({ startedTrainingAt: ago(60_000), eta: new Date(Date.now() + HOUR) }));
    await seedModels(db.pool, tunes.map((tune) => stuck(`m-${tune.id}`, tune.id)));
    astria.injectFaults({ endpoint: 'list', status: 200, body: '[]' }, 1_000);
    astria.injectFaults({ endpoint: 'get', status: 500 }, 100_000);
    const arrivals: number[] = [];
    astria.onRequest((request) => arrivals.push(request.at));

    const daemon = await startDaemon({ ...env, RECONCILER_INTERVAL: '30s', RECONCILER_STUCK_AFTER: '0s', ASTRIA_MAX_RPS: '20' });
    daemons.push(daemon);
    await waitUntil(() => arrivals.length >= 20, 10_000, 'the pass to be under way');

    // The lock connection drops; another "replica" (this test) takes the lock at once.
    const rival = new pg.Client({ connectionString: db.url });
    await rival.connect();
    try {
      await rival.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'astria-reconciler leader'`);
      await rival.query('SELECT pg_advisory_lock(hashtext($1))', ['astria_reconciler:leader:astria_reconciler']);
      const lostAt = Date.now();
      await new Promise((resolve) => setTimeout(resolve, 8_000));
      const late = arrivals.filter((at) => at > lostAt + 2_000);
      expect(late).toEqual([]);
      expect(daemon.exited()).toBe(false);
    } finally {
      await rival.end();
    }
  }, 40_000);
});

describe('RECONCILER_SCHEMA', () => {
  it.each(['user', 'Reconciler_Log', 'astria-reconciler "log" v2'])('any name quoting makes valid works: a reserved word, mixed case, a hyphen, a space, a double quote (%s)', async (schema) => {
    const tune = astria.addTune({ trainedAt: ago(60_000) });
    await seedModels(db.pool, [stuck(`m-${schema}`, tune.id)]);
    const once = await runCli(['--once'], { ...env, RECONCILER_SCHEMA: schema });
    expect(once.stderr).not.toMatch(/unreachable|fatal/);
    expect(once.code).toBe(0);
    const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${quoteIdentifier(schema)}.events`);
    expect(rows[0]!.n).toBe(1);
    const report = await runCli(['report', '--json'], { ...env, RECONCILER_SCHEMA: schema });
    expect(report.code).toBe(0);
    expect(JSON.parse(report.stdout).transitions.READY.reconciler).toBe(1);
  });

  it('refuses a name longer than 63 bytes (PostgreSQL would cut it) at start, naming the variable', async () => {
    const result = await runCli(['--once'], { ...env, RECONCILER_SCHEMA: `reconciler-${'é'.repeat(26)}x` });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/RECONCILER_SCHEMA must be at most 63 bytes/);
  });

  it("refuses the app's own schema at start, naming the variable", async () => {
    const result = await runCli(['--once'], { ...env, RECONCILER_SCHEMA: 'public' });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/RECONCILER_SCHEMA must not be the app's schema/);
  });
});

describe('report', () => {
  it('--since reaching before any event: exit 2 with a message, no "Invalid time value"', async () => {
    const result = await runCli(['report', '--since', '999999999d'], env);
    expect(result.code).toBe(2);
    expect(result.stderr).toMatch(/--since reaches back before 1970/);
    expect(result.stderr).not.toMatch(/Invalid time value/);
  });
});
