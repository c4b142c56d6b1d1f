/**
 * One bad input costs one model at most (issue 9): poison strings, a wrong endpoint answering 404, an
 * app row lock, a retrain racing a GET, tunes of unusual shapes, ERRORs the app set. Real PostgreSQL,
 * the simulated Astria over loopback HTTP.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { operatorFilter } from '../../src/db/inflight.js';
import { seedModels, type SeedModel } from '../../dev/host-schema.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { acceptAstriaCallback, type CallbackResponse } from '../../src/http/callback.js';
import { createMetrics } from '../../src/metrics.js';
import { reconcileOnce, type OnceReport } from '../../src/reconciler/once.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { listen } from '../support/listen.js';
import { fastAstriaClient } from '../support/astria-client.js';

/** No lone surrogate (what jsonb refuses): with the u flag a paired one is a single code point, not Cs. */
const isWellFormed = (text: string) => !/\p{Cs}/u.test(text);

const API_KEY = 'sd_robustness_key';
const SECRET = 'callback-secret';
const HOUR = 3_600_000;
const log = pino({ level: 'silent' });

let db: TestDatabase;
let astria: SimulatedAstria;

beforeAll(async () => {
  db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
});
afterAll(() => db.drop());
beforeEach(async () => {
  astria = await startSimulatedAstria({ apiKey: API_KEY });
  await db.pool.query('DELETE FROM ai_models');
  await db.pool.query('DELETE FROM astria_reconciler.events');
});
afterEach(() => astria.close());

function pass(options: { plan?: 'auto' | 'single-gets'; apiUrl?: string; modelIds?: string[]; maxNotFoundShare?: number } = {}): Promise<OnceReport> {
  const metrics = createMetrics();
  const client = fastAstriaClient({ apiUrl: options.apiUrl ?? astria.url, apiKey: API_KEY, metrics });
  return reconcileOnce(
    { pool: db.pool, astria: client, service: createStatusService({ pool: db.pool, metrics }), log, clock: systemClock, metrics },
    {
      filter: operatorFilter(Date.now(), 0, options.modelIds ?? []),
      trainingTimeoutMs: 24 * HOUR,
      concurrency: 4,
      plan: options.plan,
      maxNotFoundShare: options.maxNotFoundShare,
    },
  ).finally(() => client.close());
}

function callback(body: unknown, modelId?: string): Promise<CallbackResponse> {
  const service = createStatusService({ pool: db.pool });
  return acceptAstriaCallback(
    { givenSecret: SECRET, modelId, body: (async function* () { yield Buffer.from(JSON.stringify(body)); })() },
    { secret: SECRET, pool: db.pool, service, trainingTimeoutMs: 24 * HOUR },
  );
}

const ago = (ms: number) => new Date(Date.now() - ms);
const stuck = (id: string, tuneId: number | string, extra: Partial<SeedModel> = {}): SeedModel => ({
  id,
  status: 'TRAINING',
  trainingJobId: String(tuneId),
  updatedAt: ago(HOUR),
  createdAt: ago(2 * HOUR),
  ...extra,
});

async function statuses(): Promise<Record<string, string>> {
  const { rows } = await db.pool.query<{ id: string; status: string }>('SELECT id, status::text AS status FROM ai_models ORDER BY id');
  return Object.fromEntries(rows.map((row) => [row.id, row.status]));
}

/** An HTTP server answering 404 with an HTML page to everything: a website, an ingress default backend. */
async function startNotFoundEverywhere(body = '<html><body><h1>404 Not Found</h1></body></html>', type = 'text/html'): Promise<Server & { url: string }> {
  const server = createServer((_req, res) => {
    res.writeHead(404, { 'content-type': type });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return Object.assign(server, { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` });
}

const closeServer = (server: Server) =>
  new Promise<void>((resolve) => {
    server.closeAllConnections();
    server.close(() => resolve());
  });

/**
 * 40 trained models, among them the three poison strings: an Astria error_message with NUL, an
 * app-written errorMessage over 1,000 characters whose cut falls inside a surrogate pair, an
 * app-written modelUrl of ~9 KB. Tunes have consecutive ids so the list scan covers them.
 */
async function seedPoison(): Promise<void> {
  const trained = astria.addTunes(37, () => ({ trainedAt: ago(60_000), startedTrainingAt: ago(HOUR) }));
  const nul = astria.addTune({ status: 'failed', errorMessage: 'face\u0000not detected' });
  const surrogate = astria.addTune({ startedTrainingAt: ago(60_000), eta: new Date(Date.now() + HOUR) });
  const longUrl = astria.addTune({ startedTrainingAt: ago(60_000), eta: new Date(Date.now() + HOUR) });
  await seedModels(db.pool, [
    ...trained.map((tune) => stuck(`m-${tune.id}`, tune.id)),
    stuck('p-nul', nul.id),
    stuck('p-surrogate', surrogate.id, { status: 'PROCESSING', errorMessage: `${'a'.repeat(999)}${'😀'.repeat(20)}` }),
    stuck('p-url', longUrl.id, { status: 'PROCESSING' }),
  ]);
  await db.pool.query(`UPDATE ai_models SET "modelUrl" = $1 WHERE id = 'p-url'`, [`https://cdn.example.test/${'x'.repeat(9_000)}`]);
}

describe('poison strings', () => {
  it.each(['auto', 'single-gets'] as const)('are made safe and applied like any other model (%s plan)', async (plan) => {
    await seedPoison();
    const listener = await listen(db.url);

    const report = await pass({ plan });

    expect(report).toMatchObject({ checked: 40, failed: 0, transitioned: 40, stopped: null });
    if (plan === 'auto') expect(report.plan.listPages).toBeGreaterThan(0);
    const rows = await statuses();
    expect(Object.values(rows).filter((status) => status === 'READY')).toHaveLength(37);
    expect(rows).toMatchObject({ 'p-nul': 'ERROR', 'p-surrogate': 'TRAINING', 'p-url': 'TRAINING' });
    expect((await readModel(db.pool, 'p-nul')).errorMessage).toBe('Astria training failed: facenot detected');
    // The app's own columns are left as the app wrote them; only the event's copy is bounded.
    expect((await readModel(db.pool, 'p-url')).modelUrl).toHaveLength(9_025);

    const events = (await listener.settle()) as { modelId: string; data: { modelUrl: string | null; errorMessage: string | null } }[];
    await listener.close();
    expect(events).toHaveLength(40);
    const url = events.find((event) => event.modelId === 'p-url')!;
    expect(Buffer.byteLength(url.data.modelUrl!)).toBeLessThanOrEqual(2_000);
    expect(isWellFormed(events.find((event) => event.modelId === 'p-surrogate')!.data.errorMessage!)).toBe(true);
    const { rows: logged } = await db.pool.query<{ n: number }>('SELECT count(*)::int AS n FROM astria_reconciler.events');
    expect(logged[0]!.n).toBe(40);
  });

  it('reach the webhook as well: 200, never a 500', async () => {
    const nul = astria.addTune({ status: 'failed', errorMessage: 'bad\u0000photo' });
    const started = astria.addTune({ startedTrainingAt: ago(60_000), eta: new Date(Date.now() + HOUR) });
    const second = astria.addTune({ startedTrainingAt: ago(60_000), eta: new Date(Date.now() + HOUR) });
    await seedModels(db.pool, [
      stuck('w-nul', nul.id),
      stuck('w-surrogate', started.id, { status: 'PROCESSING', errorMessage: `${'a'.repeat(999)}${'😀'.repeat(20)}` }),
      stuck('w-url', second.id, { status: 'PROCESSING' }),
    ]);
    await db.pool.query(`UPDATE ai_models SET "modelUrl" = $1 WHERE id = 'w-url'`, ['u'.repeat(9_000)]);

    for (const tune of [nul, started, second]) {
      expect(await callback({ tune: astria.getTune(tune.id) })).toMatchObject({ status: 200, body: { applied: 1 } });
    }
    expect(await statuses()).toEqual({ 'w-nul': 'ERROR', 'w-surrogate': 'TRAINING', 'w-url': 'TRAINING' });
  });
});

describe("timestamps that are no time ('infinity', valid in the app's columns)", () => {
  it.each(['auto', 'single-gets'] as const)('cost nothing: the pass goes on, the others are applied, those are decided like any (%s plan)', async (plan) => {
    const trained = astria.addTunes(4, () => ({ trainedAt: ago(60_000), startedTrainingAt: ago(HOUR) }));
    // Still training: the rules get as far as the training timeout, which reads createdAt.
    const training = astria.addTunes(2, () => ({ startedTrainingAt: ago(60_000), eta: new Date(Date.now() + HOUR) }));
    await seedModels(db.pool, [...trained, ...training].map((tune) => stuck(`m-${tune.id}`, tune.id)));
    await db.pool.query(`UPDATE ai_models SET "createdAt" = 'infinity' WHERE id = $1`, [`m-${training[0]!.id}`]);
    await db.pool.query(`UPDATE ai_models SET "createdAt" = '-infinity' WHERE id = $1`, [`m-${training[1]!.id}`]);
    const report = await pass({ plan });
    expect(report).toMatchObject({ stopped: null, failed: 0, checked: 6 });
    for (const tune of trained) expect((await readModel(db.pool, `m-${tune.id}`)).status).toBe('READY');
    for (const tune of training) expect((await readModel(db.pool, `m-${tune.id}`)).status).toBe('TRAINING');
  });
});

describe('a 404 that is not Astria saying "no such tune"', () => {
  it('from a host answering 404 (HTML) everywhere: nothing is marked ERROR, the pass reports it', async () => {
    const website = await startNotFoundEverywhere();
    try {
      await seedModels(db.pool, Array.from({ length: 20 }, (_, i) => stuck(`m-${i}`, 1_000 + i)));

      const report = await pass({ apiUrl: website.url });

      expect(Object.values(await statuses()).every((status) => status === 'TRAINING')).toBe(true);
      expect(report.transitioned).toBe(0);
      expect(report.stopped).toMatch(/tune list answered HTTP 404.*ASTRIA_API_URL/);

      // Single GETs only (no list to blame): each 404 without Astria's JSON is that model's failure.
      const single = await pass({ apiUrl: website.url, plan: 'single-gets' });
      expect(single).toMatchObject({ checked: 20, failed: 20, transitioned: 0 });
      expect(single.failures[0]!.reason).toMatch(/404.*ASTRIA_API_URL/);
      expect(Object.values(await statuses()).every((status) => status === 'TRAINING')).toBe(true);
    } finally {
      await closeServer(website);
    }
  });

  it('JSON 404s for most of a pass stop it: more than RECONCILER_MAX_NOT_FOUND_SHARE is a wrong endpoint', async () => {
    const jsonEverywhere = await startNotFoundEverywhere('{"error":"Not found"}', 'application/json');
    try {
      await seedModels(db.pool, Array.from({ length: 20 }, (_, i) => stuck(`m-${i}`, 1_000 + i)));
      const report = await pass({ apiUrl: jsonEverywhere.url, plan: 'single-gets' });
      expect(report.stopped).toMatch(/20 of 20 checked models' tunes answered 404.*RECONCILER_MAX_NOT_FOUND_SHARE=0.5/);
      expect(report).toMatchObject({ failed: 20, transitioned: 0 });
      expect(Object.values(await statuses()).every((status) => status === 'TRAINING')).toBe(true);
    } finally {
      await closeServer(jsonEverywhere);
    }
  });

  it('a few deleted tunes among many are still marked ERROR "not found"', async () => {
    const tunes = astria.addTunes(8, () => ({ startedTrainingAt: ago(60_000), eta: new Date(Date.now() + HOUR) }));
    await seedModels(db.pool, [...tunes.map((tune) => stuck(`m-${tune.id}`, tune.id)), stuck('m-gone-1', 999_001), stuck('m-gone-2', 999_002)]);
    const report = await pass({ plan: 'single-gets' });
    expect(report.stopped).toBeNull();
    expect(await statuses()).toMatchObject({ 'm-gone-1': 'ERROR', 'm-gone-2': 'ERROR' });
  });
  it.each(['auto', 'single-gets'] as const)('three of four tunes deleted while the list answers: all three ERROR, the pass not stopped (%s plan)', async (plan) => {
    const tunes = astria.addTunes(4, () => ({ startedTrainingAt: ago(60_000), eta: new Date(Date.now() + HOUR) }));
    await seedModels(db.pool, tunes.map((tune) => stuck(`m-${tune.id}`, tune.id)));
    for (const tune of tunes.slice(1)) astria.remove(tune.id);
    const report = await pass({ plan });
    expect(report).toMatchObject({ stopped: null, failed: 0, transitioned: 3 });
    // Single GETs only: the one tune still shown proves the endpoint, no list page needed.
    if (plan === 'single-gets') expect(report.plan.listPages).toBe(0);
    for (const tune of tunes.slice(1)) expect((await readModel(db.pool, `m-${tune.id}`)).errorMessage).toBe(`Astria tune ${tune.id} not found`);
    expect((await readModel(db.pool, `m-${tunes[0]!.id}`)).status).toBe('TRAINING');
  });
});

describe('an app row lock', () => {
  it("costs the locked model one lock timeout; the other models are applied and the pass ends", async () => {
    const tunes = astria.addTunes(6, () => ({ trainedAt: ago(60_000), startedTrainingAt: ago(HOUR) }));
    await seedModels(db.pool, tunes.map((tune) => stuck(`m-${tune.id}`, tune.id)));
    const locked = `m-${tunes[2]!.id}`;
    // An idle interactive transaction of the app, held for 60 s unless the test ends it first.
    const app = await db.pool.connect();
    await app.query('BEGIN');
    await app.query(`UPDATE ai_models SET name = 'renamed' WHERE id = $1`, [locked]);
    const release = setTimeout(() => void app.query('ROLLBACK'), 60_000);
    try {
      const started = Date.now();
      const report = await pass({ plan: 'single-gets' });
      expect(Date.now() - started).toBeLessThan(30_000);
      expect(report).toMatchObject({ checked: 6, transitioned: 5, failed: 1 });
      expect(report.failures[0]).toMatchObject({ modelId: locked });
      expect(report.failures[0]!.reason).toMatch(/lock timeout/);
      const rows = await statuses();
      expect(Object.entries(rows).filter(([, status]) => status === 'READY')).toHaveLength(5);
    } finally {
      clearTimeout(release);
      await app.query('ROLLBACK');
      app.release();
    }
    expect((await readModel(db.pool, locked)).status).toBe('TRAINING');
  }, 60_000);
});

describe('a retrain racing a GET', () => {
  it('the compare-and-set on trainingJobId keeps the old tune from deciding the re-pointed row', async () => {
    await astria.close();
    astria = await startSimulatedAstria({ apiKey: API_KEY, latencyMs: 300 });
    astria.addTune({ id: 100, trainedAt: ago(60_000), startedTrainingAt: ago(HOUR) });
    astria.addTune({ id: 101, status: 'cancelled' });
    astria.addTune({ id: 200, startedTrainingAt: ago(60_000), eta: new Date(Date.now() + HOUR) });
    astria.addTune({ id: 201, startedTrainingAt: ago(60_000), eta: new Date(Date.now() + HOUR) });
    await seedModels(db.pool, [stuck('m-retrain', 100), stuck('m-retrain-cancelled', 101)]);
    // While Astria is still answering for the old tune, the app points the row at the new one.
    const repointed: Promise<unknown>[] = [];
    astria.onRequest((request) => {
      const match = /^\/tunes\/(100|101)$/.exec(request.path);
      if (match) {
        const next = match[1] === '100' ? '200' : '201';
        repointed.push(db.pool.query(`UPDATE ai_models SET "trainingJobId" = $1 WHERE "trainingJobId" = $2`, [next, match[1]]));
      }
    });

    await pass({ plan: 'single-gets' });
    await Promise.all(repointed);

    expect(repointed).toHaveLength(2);
    expect(await readModel(db.pool, 'm-retrain')).toMatchObject({ status: 'TRAINING', trainingJobId: '200', modelUrl: null });
    expect(await readModel(db.pool, 'm-retrain-cancelled')).toMatchObject({ status: 'TRAINING', trainingJobId: '201', errorMessage: null });
  });
});

describe('tunes of unusual shapes', () => {
  const shapes: [string, Record<string, unknown>][] = [
    ['created_at with a space', { created_at: '2023-10-02 14:32:05.067' }],
    ['created_at as epoch seconds', { created_at: 1696257125 }],
    ['a numeric title', { title: 42 }],
    ['status as an object', { status: { state: 'trained' } }],
    ['an +00 offset on trained_at and eta', { trained_at: '2026-01-02 03:04:05+00', eta: '2026-01-02T03:04:05+00' }],
    ['started_training_at in 1969', { started_training_at: '1969-12-31T23:00:00Z' }],
  ];

  async function seedShapes(): Promise<number[]> {
    const ids: number[] = [];
    for (const [, fields] of shapes) {
      const tune = astria.addTune({ trainedAt: new Date('2026-01-02T03:04:05Z'), startedTrainingAt: ago(HOUR) });
      Object.assign(tune, fields);
      ids.push(tune.id);
    }
    await seedModels(db.pool, ids.map((id) => stuck(`m-${id}`, id)));
    return ids;
  }

  it.each(['auto', 'single-gets'] as const)('are read and applied from GET /tunes/:id and list pages (%s plan)', async (plan) => {
    await seedShapes();
    const report = await pass({ plan });
    expect(report).toMatchObject({ checked: shapes.length, transitioned: shapes.length, failed: 0 });
    if (plan === 'auto') expect(report.plan.singleGets).toBe(0);
    expect(Object.values(await statuses()).every((status) => status === 'READY')).toBe(true);
  });

  it('are accepted by the webhook', async () => {
    const ids = await seedShapes();
    for (const id of ids) expect(await callback({ tune: astria.getTune(id) })).toMatchObject({ status: 200, body: { applied: 1 } });
    const row = await readModel(db.pool, `m-${ids[4]}`);
    expect(row).toMatchObject({ status: 'READY', trainedAt: new Date('2026-01-02T03:04:05Z') });
  });
});

describe('ERROR → READY', () => {
  it('a trained callback leaves an ERROR the app set ("Rejected by moderation") alone', async () => {
    const tune = astria.addTune({ trainedAt: ago(60_000) });
    await seedModels(db.pool, [stuck('m-moderated', tune.id, { status: 'ERROR', errorMessage: 'Rejected by moderation' })]);
    expect(await callback({ tune: astria.getTune(tune.id) })).toMatchObject({ status: 200, body: { applied: 0 } });
    expect(await readModel(db.pool, 'm-moderated')).toMatchObject({ status: 'ERROR', errorMessage: 'Rejected by moderation' });
  });

  it('heals an ERROR this product set, as long as the app has not changed its message since', async () => {
    const tune = astria.addTune({ status: 'failed', errorMessage: 'GPU lost' });
    await seedModels(db.pool, [stuck('m-ours', tune.id), stuck('m-ours-then-app', tune.id, { userId: 'user-2' })]);
    expect(await callback({ tune: astria.getTune(tune.id) })).toMatchObject({ status: 200, body: { applied: 2 } });
    // The app then rewrites one message: that ERROR is the app's now.
    await db.pool.query(`UPDATE ai_models SET "errorMessage" = 'Refunded' WHERE id = 'm-ours-then-app'`);

    astria.train(tune.id);
    const trained = { ...astria.getTune(tune.id), status: 'trained', error_message: null };
    expect(await callback({ tune: trained })).toMatchObject({ status: 200, body: { applied: 1 } });
    expect(await statuses()).toEqual({ 'm-ours': 'READY', 'm-ours-then-app': 'ERROR' });
  });

  it('an operator naming the model heals any ERROR (--model-id)', async () => {
    const tune = astria.addTune({ trainedAt: ago(60_000) });
    await seedModels(db.pool, [stuck('m-named', tune.id, { status: 'ERROR', errorMessage: 'Rejected by moderation' })]);
    const report = await pass({ modelIds: ['m-named'] });
    expect(report.transitions).toEqual([{ modelId: 'm-named', from: 'ERROR', to: 'READY' }]);
  });
});

describe('a callback URL carrying &model=', () => {
  it('applies to that model only, not to every model sharing the tune id', async () => {
    const tune = astria.addTune({ trainedAt: ago(60_000) });
    await seedModels(db.pool, [stuck('m-mine', tune.id, { userId: 'user-a' }), stuck('m-other-user', tune.id, { userId: 'user-b' })]);
    expect(await callback({ tune: astria.getTune(tune.id) }, 'm-mine')).toMatchObject({ status: 200, body: { matched: 1, applied: 1 } });
    expect(await statuses()).toEqual({ 'm-mine': 'READY', 'm-other-user': 'TRAINING' });
  });
});
