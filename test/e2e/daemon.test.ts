import { spawnSync } from 'node:child_process';
import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import pg from 'pg';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, it } from 'vitest';
import { randomBytes } from 'node:crypto';
import { createDatabase, dropDatabase } from '../../dev/embedded-postgres.js';
import { seedModels, type SeedModel } from '../../dev/host-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import {
  ASTRIA_ENDPOINTS,
  ASTRIA_OUTCOMES,
  ASYNC_TRANSPORTS,
  DELIVERY_OUTCOMES,
  TRANSITION_SOURCES,
  TRANSITION_TARGETS,
  WEBHOOK_CODES,
  LOOP_ERROR_REASONS,
} from '../../src/metrics.js';
import { CALLBACK_KINDS } from '../../src/db/callbacks.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { freePort, startDaemon, waitUntil, type RunningDaemon } from '../support/daemon.js';
import { listen } from '../support/listen.js';
import { createTcpProxy } from '../support/tcp-proxy.js';

const API_KEY = 'sd_daemon_test_key_77';
const SECRET = 'webhook-secret-e2e';
const HOUR = 3_600_000;
const ago = (ms: number) => new Date(Date.now() - ms);

let db: TestDatabase;
const fakes: SimulatedAstria[] = [];
const daemons: RunningDaemon[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());
beforeEach(async () => {
  await db.pool.query('DELETE FROM ai_models');
  await db.pool.query('DROP SCHEMA IF EXISTS astria_reconciler CASCADE');
});
afterEach(async () => {
  for (const daemon of daemons.splice(0)) if (!daemon.exited()) daemon.kill('SIGKILL');
  await Promise.all(fakes.splice(0).map((fake) => fake.close()));
});

async function fake(options: { latencyMs?: number } = {}): Promise<SimulatedAstria> {
  const astria = await startSimulatedAstria({ apiKey: API_KEY, ...options });
  fakes.push(astria);
  return astria;
}

async function daemon(astria: SimulatedAstria, env: Record<string, string> = {}, options: { waitForReady?: boolean } = {}): Promise<RunningDaemon> {
  const running = await startDaemon({
    DATABASE_URL: db.url,
    ASTRIA_API_KEY: API_KEY,
    ASTRIA_API_URL: astria.url,
    RECONCILER_INTERVAL: '1s',
    RECONCILER_STUCK_AFTER: '0s',
    WEBHOOK_SECRET: SECRET,
    LOG_LEVEL: 'info',
    ...env,
  }, options);
  daemons.push(running);
  return running;
}

const training = (id: string, tuneId: number, extra: Partial<SeedModel> = {}): SeedModel => ({
  id,
  status: 'TRAINING',
  trainingJobId: String(tuneId),
  updatedAt: ago(HOUR),
  ...extra,
});

async function statusOf(id: string): Promise<string> {
  return (await readModel(db.pool, id)).status;
}

async function snapshot(): Promise<string> {
  const models = await db.pool.query(`SELECT * FROM ai_models ORDER BY id`);
  const events = await db.pool
    .query(`SELECT count(*)::int AS n FROM astria_reconciler.events`)
    .then((result) => result.rows[0].n as number, () => 0);
  return JSON.stringify({ models: models.rows, events });
}

describe('the daemon (built CLI, real database, loopback Astria)', () => {
  it('only the leader talks to Astria; when it is killed -9 another takes over within 2 × interval', async () => {
    // Two fakes with the same account: each daemon talks to its own, so we can tell who polls.
    const [a, b] = [await fake(), await fake()];
    for (const astria of [a, b]) astria.addTune({ id: 5001, startedTrainingAt: ago(HOUR), eta: ago(60_000) });
    await seedModels(db.pool, [training('m-1', 5001)]);
    const first = await daemon(a);
    const second = await daemon(b);

    await new Promise((resolve) => setTimeout(resolve, 10_000));
    const counts = [a.stats.requests, b.stats.requests];
    expect(counts.filter((count) => count > 0)).toHaveLength(1);
    const [leader, follower, followerAstria] = a.stats.requests > 0 ? [first, second, b] : [second, first, a];

    leader.kill('SIGKILL');
    for (const astria of [a, b]) astria.train(5001);
    const lagMs = await waitUntil(async () => (await statusOf('m-1')) === 'READY', 2 * 1_000 + 5_000, 'the survivor to recover m-1');

    expect(followerAstria.stats.requests).toBeGreaterThan(0);
    expect(follower.exited()).toBe(false);
    expect(lagMs).toBeLessThanOrEqual(7_000);
  }, 40_000);

  it('50 webhooks fired at once, while the daemon polls and a --once runs: 50 READY, 50 events, none twice', async () => {
    const astria = await fake({ latencyMs: 5 });
    const tunes = astria.addTunes(50, () => ({ startedTrainingAt: ago(HOUR), eta: ago(1_000) }));
    await seedModels(db.pool, tunes.map((tune) => training(`m-${tune.id}`, tune.id)));
    const running = await daemon(astria, { RECONCILER_INTERVAL: '200ms' });
    const listener = await listen(db.url);

    for (const tune of tunes) astria.train(tune.id);
    const [statuses, once] = await Promise.all([
      Promise.all(tunes.map((tune) => astria.fireCallback(tune.id, `${running.url}/webhooks/astria?secret=${SECRET}`))),
      runCli(['--once', '--json'], { DATABASE_URL: db.url, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url, RECONCILER_STUCK_AFTER: '0s' }),
    ]);

    expect(statuses.every((status) => status === 200 || status === 202)).toBe(true);
    expect(once.code).toBe(0);
    await waitUntil(async () => {
      const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM ai_models WHERE status = 'READY'`);
      return rows[0].n === 50;
    }, 10_000, '50 READY models');
    const { rows } = await db.pool.query(
      `SELECT model_id, count(*)::int AS n FROM astria_reconciler.events WHERE to_status = 'READY' GROUP BY model_id`,
    );
    expect(rows).toHaveLength(50);
    expect(rows.every((row) => row.n === 1)).toBe(true);
    const notified = ((await listener.settle(300)) as { type: string; status: string; modelId: string }[]).filter(
      (event) => event.type === 'model_status_changed' && event.status === 'READY',
    );
    await listener.close();
    expect(notified).toHaveLength(50);
    expect(new Set(notified.map((event) => event.modelId)).size).toBe(50);
  }, 40_000);

  it('rejects bad webhooks with the SPEC.md codes and writes nothing', async () => {
    const astria = await fake();
    // Still training at Astria: the daemon's first look at the new model changes nothing, so whatever
    // changes is the webhook's doing. The callback carries the tune as Astria sends it once trained.
    const tune = astria.addTune({ startedTrainingAt: ago(60_000) });
    await seedModels(db.pool, [training('m-hook', tune.id, { updatedAt: new Date() })]);
    const running = await daemon(astria, { RECONCILER_STUCK_AFTER: '1h' });
    const before = await snapshot();
    const post = (query: string, body: string | Buffer) =>
      fetch(`${running.url}/webhooks/astria${query}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body }).then(
        (res) => res.status,
        // A server may close the connection before reading a rejected body: the status still arrived first.
        (error: Error) => error.message,
      );
    const valid = JSON.stringify({ tune: { ...astria.getTune(tune.id), trained_at: ago(1_000).toISOString() } });

    expect(await post('', valid)).toBe(401);
    expect(await post('?secret=wrong', valid)).toBe(401);
    expect(await post(`?secret=${SECRET}`, '{"tune": {')).toBe(400);
    expect(await post(`?secret=${SECRET}`, JSON.stringify({ hello: 'world' }))).toBe(400);
    expect(await post(`?secret=${SECRET}`, Buffer.alloc(2 * 1024 * 1024, 'a'))).toBe(413);
    // Chunked, so no Content-Length to refuse it by: cut off while it is read, still a 413.
    expect(await postChunked(`${running.url}/webhooks/astria?secret=${SECRET}`, 3 * 1024 * 1024)).toBe(413);
    // A repeated secret is no secret, whichever value comes first.
    expect(await post(`?secret=${SECRET}&secret=wrong`, valid)).toBe(401);
    expect(await post(`?secret=wrong&secret=${SECRET}`, valid)).toBe(401);
    expect(await post(`?secret=${SECRET}`, JSON.stringify({ id: 424_242, trained_at: new Date().toISOString() }))).toBe(202);

    expect(await snapshot()).toBe(before);
    // And the good one is applied through the same service.
    expect(await post(`?secret=${SECRET}`, valid)).toBe(200);
    expect(await statusOf('m-hook')).toBe('READY');
  }, 30_000);

  it('serves health and Prometheus metrics with the names of SPEC.md', async () => {
    const astria = await fake();
    const running = await daemon(astria);

    expect((await fetch(`${running.url}/healthz`)).status).toBe(200);
    expect((await fetch(`${running.url}/readyz`)).status).toBe(200);
    const metrics = await (await fetch(`${running.url}/metrics`)).text();
    for (const name of [
      'astria_reconciler_transitions_total',
      'astria_reconciler_astria_requests_total',
      'astria_reconciler_detection_lag_seconds',
      'astria_reconciler_inflight_models',
      'astria_reconciler_is_leader',
      'process_cpu_seconds_total',
    ]) {
      expect(metrics).toContain(`# TYPE ${name}`);
    }
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: metrics, encoding: 'utf8' });
    if (promtool.error) console.log(`skipping promtool check metrics: ${promtool.error.message} (install Debian's prometheus package)`);
    else expect({ status: promtool.status, problems: promtool.stdout + promtool.stderr }).toEqual({ status: 0, problems: '' });
  });

  it('SIGTERM during a pass with slow Astria: exits 0 within the timeout, nothing half-applied', async () => {
    const astria = await fake({ latencyMs: 1_500 });
    // Tunes 300 account tunes apart: the round fetches them one by one, one at a time, so it is
    // mid-way when the signal comes.
    const tunes = Array.from({ length: 8 }, () => {
      const tune = astria.addTune({ trainedAt: ago(60_000) });
      astria.addTunes(300);
      return tune;
    });
    await seedModels(db.pool, tunes.map((tune) => training(`m-${tune.id}`, tune.id)));
    const running = await daemon(astria, { ASTRIA_CONCURRENCY: '1', SHUTDOWN_TIMEOUT: '10s', RECONCILER_INTERVAL: '30s' });
    await waitUntil(() => astria.stats.get > 0, 10_000, 'the first single GET');

    const signalledAt = Date.now();
    running.kill('SIGTERM');
    const result = await running.done;

    expect(result.code).toBe(0);
    expect(Date.now() - signalledAt).toBeLessThan(10_000 + 2_000);
    const { rows } = await db.pool.query(
      `SELECT m.id, m.status::text, m.progress, m."modelUrl", (SELECT count(*)::int FROM astria_reconciler.events e WHERE e.model_id = m.id) AS events
         FROM ai_models m`,
    );
    for (const row of rows) {
      if (row.status === 'READY') expect(row).toMatchObject({ progress: 100, events: 1, modelUrl: expect.any(String) });
      else expect(row).toMatchObject({ status: 'TRAINING', events: 0 });
    }
    // It stopped starting new checks: not every model was reached.
    expect(rows.filter((row) => row.status === 'TRAINING').length).toBeGreaterThan(0);
  }, 40_000);

  it('stays up while the database is away: /readyz 503, then 200 and the models recovered', async () => {
    const astria = await fake();
    const tune = astria.addTune({ startedTrainingAt: ago(HOUR), eta: ago(1_000) });
    await seedModels(db.pool, [training('m-outage', tune.id)]);
    const running = await daemon(astria, { RECONCILER_INTERVAL: '500ms' });
    const name = new URL(db.url).pathname.slice(1);
    const admin = new pg.Client({ connectionString: inject('adminDatabaseUrl') });
    await admin.connect();
    const ready = () => fetch(`${running.url}/readyz`).then((res) => res.status);

    try {
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS false`);
      await admin.query(`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1`, [name]);
      await waitUntil(
        async () => (await ready().catch((error: Error) => { throw new Error(`${error.message}\n${running.output()}`); })) === 503,
        5_000,
        '/readyz to answer 503',
      );
      astria.train(tune.id);
      await new Promise((resolve) => setTimeout(resolve, 5_000));
      expect(running.exited()).toBe(false);
      expect((await fetch(`${running.url}/livez`)).status).toBe(200);
    } finally {
      await admin.query(`ALTER DATABASE ${name} ALLOW_CONNECTIONS true`);
      await admin.end();
    }

    await waitUntil(async () => (await ready()) === 200, 10_000, '/readyz to answer 200 again');
    await waitUntil(async () => (await statusOf('m-outage')) === 'READY', 10_000, 'm-outage to be recovered');
  }, 40_000);

  it('a database that comes up 10 s after the daemon: /livez 200 throughout, /readyz 503 with a reason, the webhook 401 to a wrong secret and 503 to a good callback, then 200 and stuck models recovered', async () => {
    const astria = await fake();
    const tune = astria.addTune({ trainedAt: ago(60_000) });
    await seedModels(db.pool, [training('m-late-db', tune.id)]);
    const real = new URL(db.url);
    const proxy = await createTcpProxy({ host: real.hostname, port: Number(real.port || 5432) }, await freePort());
    const proxied = new URL(db.url);
    proxied.port = String(proxy.port);
    try {
      const running = await daemon(astria, { DATABASE_URL: proxied.toString(), RECONCILER_INTERVAL: '500ms' }, { waitForReady: false });
      const startedAt = Date.now();
      const reasons = new Set<string>();
      while (Date.now() - startedAt < 10_000) {
        expect((await fetch(`${running.url}/livez`)).status).toBe(200);
        const ready = await fetch(`${running.url}/readyz`);
        expect(ready.status).toBe(503);
        const body = (await ready.json()) as { ready: boolean; reason: string };
        expect(body.ready).toBe(false);
        reasons.add(body.reason);
        await new Promise((resolve) => setTimeout(resolve, 500));
      }
      expect([...reasons].join('\n')).toMatch(/database unreachable/);
      expect(running.exited()).toBe(false);
      // While the database is away a wrong or missing secret is still refused as such; only a
      // callback that would be applied is told to come back later.
      const callback = (query: string) =>
        fetch(`${running.url}/webhooks/astria${query}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ tune }) });
      expect((await callback('?secret=guessed-secret-123')).status).toBe(401);
      expect((await callback('')).status).toBe(401);
      expect(await astria.fireCallback(tune.id, `${running.url}/webhooks/astria?secret=${SECRET}`)).toBe(503);

      await proxy.open();
      await waitUntil(async () => (await fetch(`${running.url}/readyz`)).status === 200, 15_000, '/readyz 200 once the database is up');
      await waitUntil(async () => (await statusOf('m-late-db')) === 'READY', 15_000, 'the stuck model recovered');
      const metrics = await (await fetch(`${running.url}/metrics`)).text();
      expect(Number(/^astria_reconciler_loop_errors_total\{reason="database"\} (\d+)/m.exec(metrics)![1])).toBeGreaterThan(0);
    } finally {
      await proxy.close();
    }
  }, 60_000);

  it('a database outage after start: counted under loop_errors_total{reason="database"}, logged at error level, and a line when it ends', async () => {
    const astria = await fake();
    const real = new URL(db.url);
    const proxy = await createTcpProxy({ host: real.hostname, port: Number(real.port || 5432) }, await freePort());
    const proxied = new URL(db.url);
    proxied.port = String(proxy.port);
    await proxy.open();
    try {
      const running = await daemon(astria, { DATABASE_URL: proxied.toString(), RECONCILER_INTERVAL: '500ms', LOG_LEVEL: 'info' });
      const loopErrors = async (reason: string) => {
        const metrics = await (await fetch(`${running.url}/metrics`)).text();
        return Number(new RegExp(`^astria_reconciler_loop_errors_total\\{reason="${reason}"\\} (\\d+)`, 'm').exec(metrics)![1]);
      };
      await waitUntil(() => running.output().includes('became the leader'), 15_000, 'the daemon to lead');
      expect(await loopErrors('database')).toBe(0);

      await proxy.close();
      // The loop retries after 2, 4 and 8 s: four failures well inside the minute that logs each failing
      // unit (the loop, the callback judge) once.
      await waitUntil(async () => (await loopErrors('database')) >= 4, 45_000, 'failed attempts counted under reason="database"');
      const errorLines = running
        .output()
        .split('\n')
        .filter((line) => line.startsWith('{'))
        .map((line) => JSON.parse(line) as { level: number; reason?: string; msg: string })
        .filter((entry) => entry.level >= 50 && entry.reason === 'database');
      expect(errorLines.length).toBeGreaterThan(0);
      // Once a minute at most while it lasts: the retries every few seconds are counted, not logged.
      const linesPerMessage = new Map<string, number>();
      for (const entry of errorLines) linesPerMessage.set(entry.msg, (linesPerMessage.get(entry.msg) ?? 0) + 1);
      expect([...linesPerMessage.values()].every((lines) => lines === 1), JSON.stringify([...linesPerMessage])).toBe(true);
      expect(errorLines.length).toBeLessThan(await loopErrors('database'));
      expect(await loopErrors('astria')).toBe(0);

      await proxy.open();
      await waitUntil(() => /database back after \d+ s/.test(running.output()), 40_000, 'a line saying the database is back');
      expect(running.exited()).toBe(false);
    } finally {
      await proxy.close();
    }
  }, 150_000);

  it('a database without ai_models: /readyz 503 naming it, --once exits 1 with one line naming DATABASE_URL and ?schema=, our schema never created', async () => {
    const adminUrl = inject('adminDatabaseUrl');
    const name = `t_wrong_${randomBytes(4).toString('hex')}`;
    const wrongUrl = await createDatabase(adminUrl, name);
    const wrong = new pg.Pool({ connectionString: wrongUrl, max: 1 });
    // DROP DATABASE ... WITH (FORCE) below may still find this pool's connection closing.
    wrong.on('error', () => undefined);
    try {
      const astria = await fake();
      const running = await daemon(astria, { DATABASE_URL: wrongUrl }, { waitForReady: false });
      await waitUntil(
        async () => ((await (await fetch(`${running.url}/readyz`)).json()) as { reason?: string }).reason?.includes('ai_models') ?? false,
        10_000,
        '/readyz to name ai_models',
      );
      const ready = await fetch(`${running.url}/readyz`);
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ ready: false, reason: expect.stringMatching(/ai_models.*DATABASE_URL.*\?schema=/) });
      expect((await fetch(`${running.url}/livez`)).status).toBe(200);

      const once = await runCli(['--once'], { DATABASE_URL: wrongUrl, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url });
      expect(once.code).toBe(1);
      const plain = once.stderr.split('\n').filter((line) => line !== '' && !line.startsWith('{'));
      expect(plain).toHaveLength(1);
      expect(plain[0]).toMatch(/ai_models.*DATABASE_URL.*\?schema=/);
      expect(once.stderr).not.toMatch(/\n\s+at /);

      const { rows } = await wrong.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'astria_reconciler'`);
      expect(rows[0].n).toBe(0);
      expect(running.exited()).toBe(false);
    } finally {
      await wrong.end();
      for (const running of daemons.splice(0)) if (!running.exited()) running.kill('SIGKILL');
      await dropDatabase(adminUrl, name);
    }
  }, 40_000);

  it('a fresh start shows every known counter series at 0 before any work', async () => {
    const astria = await fake();
    const running = await daemon(astria);
    const metrics = await (await fetch(`${running.url}/metrics`)).text();
    const series = (name: string, labels: Record<string, string>) =>
      `${name}{${Object.entries(labels).map(([key, value]) => `${key}="${value}"`).join(',')}} 0`;
    const expected = [
      ...TRANSITION_TARGETS.flatMap((to) => TRANSITION_SOURCES.map((source) => series('astria_reconciler_transitions_total', { to, source }))),
      ...ASTRIA_ENDPOINTS.flatMap((endpoint) => ASTRIA_OUTCOMES.map((outcome) => series('astria_reconciler_astria_requests_total', { endpoint, outcome }))),
      ...WEBHOOK_CODES.map((code) => series('astria_reconciler_webhook_requests_total', { code })),
      ...ASYNC_TRANSPORTS.flatMap((transport) => DELIVERY_OUTCOMES.map((outcome) => series('astria_reconciler_broadcast_deliveries_total', { transport, outcome }))),
      ...ASYNC_TRANSPORTS.map((transport) => series('astria_reconciler_dead_deliveries_total', { transport })),
      ...ASYNC_TRANSPORTS.map((transport) => series('astria_reconciler_outbox_pending', { transport })),
      ...CALLBACK_KINDS.map((kind) => series('astria_reconciler_lost_callbacks_total', { kind })),
      ...CALLBACK_KINDS.map((kind) => series('astria_reconciler_late_callbacks_total', { kind })),
      ...LOOP_ERROR_REASONS.map((reason) => series('astria_reconciler_loop_errors_total', { reason })),
    ];
    const lines = new Set(metrics.split('\n'));
    expect(expected.filter((line) => !lines.has(line))).toEqual([]);
  });

  it('malformed request targets get a 400 and the daemon keeps serving', async () => {
    const astria = await fake();
    const running = await daemon(astria);
    const { port } = new URL(running.url);
    for (const target of ['//[', 'http://[', 'http://a:99999/', 'http://%zz/']) {
      const answer = await new Promise<string>((resolve) => {
        const socket = connect(Number(port), '127.0.0.1', () => socket.write(`GET ${target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`));
        let text = '';
        socket.on('data', (chunk) => (text += chunk.toString()));
        socket.on('close', () => resolve(text));
        socket.on('error', () => resolve(text));
      });
      expect(answer).toMatch(/^HTTP\/1\.1 400/);
    }
    expect((await fetch(`${running.url}/livez`)).status).toBe(200);
    expect(running.exited()).toBe(false);
  });

  it('a webhook with a wrong secret is logged (never the secret) and counted', async () => {
    const astria = await fake();
    const running = await daemon(astria);
    const status = await fetch(`${running.url}/webhooks/astria?secret=guessed-secret-123`, { method: 'POST', body: '{}' }).then((res) => res.status);
    expect(status).toBe(401);
    await waitUntil(() => running.output().includes('Astria webhook request rejected'), 5_000, 'the rejection logged');
    expect(running.output()).not.toContain('guessed-secret-123');
    expect(running.output()).not.toContain(SECRET);
    const metrics = await (await fetch(`${running.url}/metrics`)).text();
    expect(metrics).toContain('astria_reconciler_webhook_requests_total{code="401"} 1');
  });
});

/** POSTs `bytes` of JSON-looking text in chunks (no Content-Length) and resolves with the status answered. */
function postChunked(url: string, bytes: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: 'POST', headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    // The server stops reading once the body is too large: writes after that may fail, the answer came first.
    req.on('error', (error) => setTimeout(() => reject(error), 1_000));
    const chunk = Buffer.alloc(64 * 1024, 'a');
    let sent = 0;
    const pump = () => {
      while (sent < bytes) {
        sent += chunk.length;
        if (!req.write(chunk)) return req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}
