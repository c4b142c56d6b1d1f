/**
 * What the daemon's watch asks of the database (issue 20): the in-flight rows are read once per
 * discovery, however many list pages a round fetches, and a round's progress-only writes are one
 * statement for every model, never moving progress down; a prompt's single GET goes to the path
 * Astria documents, under its tune. Real PostgreSQL, the simulated Astria on loopback; statements are
 * counted on the client side of a real pool.
 */
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { seedModels } from '../../dev/host-schema.js';
import { startSimulatedAstria, type RequestEvent, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { countStatements, type StatementCounter } from '../../dev/statement-counter.js';
import { createAstriaClient, type AstriaClient } from '../../src/astria/client.js';
import { systemClock } from '../../src/clock.js';
import { flushNotifications, listenForEvents } from '../../src/db/events.js';
import { operatorFilter } from '../../src/db/inflight.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { createMetrics } from '../../src/metrics.js';
import { reconcileOnce } from '../../src/reconciler/once.js';
import { prompts, tunes } from '../../src/reconciler/resource.js';
import { InFlightWatch } from '../../src/reconciler/watch.js';
import { DEFAULT_HOST_SCHEMA } from '../../src/db/host-names.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { GENERATIONS_SCHEMA_SQL, readGeneration, seedGenerations } from '../support/generations-schema.js';

const API_KEY = 'sd_inflight_reads_key';
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const log = pino({ level: 'silent' });
const WATCH_OPTIONS = { intervalMs: 30_000, stuckAfterMs: 0, observeEveryMs: 2_000, trainingTimeoutMs: 24 * HOUR, concurrency: 4, maxNotFoundShare: 0.5 };

let db: TestDatabase;
let pool: pg.Pool;
let counter: StatementCounter;
let astria: SimulatedAstria;
let client: AstriaClient;

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(GENERATIONS_SCHEMA_SQL);
  await ensureOwnSchema(db.pool, 'astria_reconciler');
  pool = new pg.Pool({ connectionString: db.url, max: 10 });
  // The database is dropped with FORCE at the end: a client still connected then must not crash the worker.
  pool.on('error', () => undefined);
  counter = countStatements(pool);
});
afterAll(async () => {
  await pool.end();
  await db.drop();
});

beforeEach(async () => {
  astria = await startSimulatedAstria({ apiKey: API_KEY });
  // One try a request: a list answering 500 falls back to single GETs at once.
  client = createAstriaClient({ apiUrl: astria.url, apiKey: API_KEY, maxRps: 1_000, concurrency: 4, timeoutMs: 5_000, log, metrics: createMetrics(), clock: systemClock, retry: { attempts: 1 } });
});
afterEach(async () => {
  await client.close();
  await astria.close();
  await db.pool.query('DELETE FROM generations');
  await db.pool.query('DELETE FROM ai_models');
});

const ago = (ms: number) => new Date(Date.now() - ms);
const signal = new AbortController().signal;

function tuneWatch(metrics = createMetrics()) {
  const service = createStatusService({ pool, metrics });
  return new InFlightWatch(tunes(DEFAULT_HOST_SCHEMA), { pool, astria: client, writer: service, log, clock: systemClock, metrics }, WATCH_OPTIONS);
}

/** The statements sent since the counter's reset that read the in-flight rows of each kind. */
function inFlightReads(): { models: number; generations: number } {
  const selects = counter.texts.filter((text) => /^\s*SELECT\b/i.test(text));
  return {
    models: selects.filter((text) => /FROM "ai_models" WHERE/.test(text) && !/FROM "generations"/.test(text)).length,
    generations: selects.filter((text) => /FROM "generations" g WHERE/.test(text)).length,
  };
}

describe('one in-flight read per discovery, whatever the pages', () => {
  it('300 models and 300 generations over several list pages each: one SELECT per kind, and none in the rounds', async () => {
    astria.addTunes(300, () => ({ startedTrainingAt: ago(10 * MINUTE), eta: new Date(Date.now() + HOUR) }));
    // Foreign tunes between ours: the in-flight span needs several pages of 120.
    const ours = astria.addTunes(300, () => ({ startedTrainingAt: ago(10 * MINUTE), eta: new Date(Date.now() + HOUR) }));
    const generationTune = ours[0]!;
    const pack = astria.addPack(generationTune.id, 300);
    await seedModels(db.pool, ours.map((tune) => ({ id: `m-${tune.id}`, status: 'TRAINING', trainingJobId: String(tune.id), progress: 10, updatedAt: ago(HOUR), createdAt: ago(HOUR) })));
    await seedGenerations(db.pool, pack.map((prompt) => ({ id: `g-${prompt.id}`, modelId: `m-${generationTune.id}`, status: 'PROCESSING' as const, jobId: String(prompt.id), createdAt: ago(HOUR) })));
    const service = createStatusService({ pool });
    const metrics = createMetrics();
    const modelWatch = tuneWatch(metrics);
    const generationWatch = new InFlightWatch(
      prompts(DEFAULT_HOST_SCHEMA),
      { pool, astria: client, writer: { apply: (transition) => service.applyGeneration(transition, 'reconciler') }, log, clock: systemClock, metrics },
      WATCH_OPTIONS,
    );

    counter.reset();
    astria.resetStats();
    const now = Date.now();
    for (const watch of [modelWatch, generationWatch]) {
      await watch.discover(now);
      await watch.round(now, signal, () => undefined);
    }
    expect(astria.stats.list).toBeGreaterThanOrEqual(3);
    expect(astria.stats.prompt_list).toBeGreaterThanOrEqual(3);
    expect(inFlightReads()).toEqual({ models: 1, generations: 1 });

    // Rounds without a discovery between them read nothing at all.
    counter.reset();
    for (const watch of [modelWatch, generationWatch]) await watch.round(now + HOUR, signal, () => undefined);
    expect(astria.stats.list).toBeGreaterThanOrEqual(6);
    expect(inFlightReads()).toEqual({ models: 0, generations: 0 });
  });
});

describe("a round's progress-only writes", () => {
  it('50 models written in one statement and one NOTIFY statement; progress never moves down, a model another writer changed or holds is left', async () => {
    // Half-way through a 40-minute training: every bar at 0 moves to about 50.
    const trainings = astria.addTunes(50, () => ({ startedTrainingAt: ago(20 * MINUTE), eta: new Date(Date.now() + 20 * MINUTE) }));
    await seedModels(db.pool, trainings.map((tune) => ({ id: `p-${tune.id}`, status: 'TRAINING', trainingJobId: String(tune.id), progress: 0, updatedAt: ago(HOUR), createdAt: ago(HOUR) })));
    const [ahead, finished, locked] = trainings.map((tune) => `p-${tune.id}`) as [string, string, string];
    const listener = new pg.Client({ connectionString: db.url });
    await listener.connect();
    const heard: { type: string; modelId: string; progress: number }[] = [];
    listener.on('notification', (message) => heard.push(JSON.parse(message.payload!)));
    await listenForEvents(listener, 'model_status_changed');
    const holder = await db.pool.connect();
    try {
      const watch = tuneWatch();
      const now = Date.now();
      await watch.discover(now);
      // Between the read and the write: the app's own bar is ahead, the webhook finished one, and the
      // app holds another locked in a transaction of its own.
      await db.pool.query(`UPDATE ai_models SET progress = 90 WHERE id = $1`, [ahead]);
      await db.pool.query(`UPDATE ai_models SET status = 'READY', progress = 100 WHERE id = $1`, [finished]);
      await holder.query('BEGIN');
      await holder.query(`SELECT 1 FROM ai_models WHERE id = $1 FOR UPDATE`, [locked]);

      counter.reset();
      await watch.round(now, signal, () => undefined);
      await holder.query('COMMIT');
      await flushNotifications(listener);

      expect(counter.texts.filter((text) => /UPDATE "ai_models"/.test(text))).toHaveLength(1);
      expect(counter.texts.filter((text) => /pg_notify/.test(text))).toHaveLength(1);
      const progress = new Map((await db.pool.query<{ id: string; progress: number; status: string }>(`SELECT id, progress, status::text FROM ai_models`)).rows.map((row) => [row.id, row]));
      expect(progress.get(ahead)).toMatchObject({ progress: 90, status: 'TRAINING' });
      expect(progress.get(finished)).toMatchObject({ progress: 100, status: 'READY' });
      expect(progress.get(locked)).toMatchObject({ progress: 0, status: 'TRAINING' });
      const written = [...progress.values()].filter((row) => ![ahead, finished, locked].includes(row.id));
      expect(written).toHaveLength(47);
      for (const row of written) expect(row.progress).toBeGreaterThanOrEqual(49);
      // One model_progress per model written (the one whose bar was ahead says 90), none for the two left.
      expect(heard.every((event) => event.type === 'model_progress')).toBe(true);
      expect(heard.map((event) => event.modelId).sort()).toEqual([ahead, ...written.map((row) => row.id)].sort());
      expect(heard.find((event) => event.modelId === ahead)?.progress).toBe(90);
    } finally {
      holder.release();
      await listener.end();
    }
  });
});

describe('a row whose write another writer beat', () => {
  it('keeps its schedule: a young model the app held locked is not given its first look again, it waits out the grace', async () => {
    const grace = 2 * MINUTE;
    const tune = astria.addTune({ startedTrainingAt: ago(20 * MINUTE), eta: new Date(Date.now() + 20 * MINUTE) });
    const modelId = `young-${tune.id}`;
    const now = Date.now();
    await seedModels(db.pool, [{ id: modelId, status: 'TRAINING', trainingJobId: String(tune.id), progress: 0, updatedAt: new Date(now), createdAt: new Date(now) }]);
    const metrics = createMetrics();
    const watch = new InFlightWatch(tunes(DEFAULT_HOST_SCHEMA), { pool, astria: client, writer: createStatusService({ pool, metrics }), log, clock: systemClock, metrics }, { ...WATCH_OPTIONS, stuckAfterMs: grace });
    const holder = await db.pool.connect();
    try {
      await watch.discover(now);
      expect(watch.nextRoundAt()).toBe(now);
      // Its first look decides a progress write (0 → about 50), which the app's lock makes lose.
      await holder.query('BEGIN');
      await holder.query('SELECT 1 FROM ai_models WHERE id = $1 FOR UPDATE', [modelId]);
      await watch.round(now, signal, () => undefined);
      await holder.query('COMMIT');
    } finally {
      holder.release();
    }
    expect((await db.pool.query<{ progress: number }>('SELECT progress FROM ai_models WHERE id = $1', [modelId])).rows[0]!.progress).toBe(0);
    // The next re-read brings the row back as it is; its next look is after the grace, not at once.
    await watch.discover(now + 5_000);
    expect(watch.nextRoundAt()).toBeGreaterThanOrEqual(now + grace);
  });
});

describe("a prompt's single GET", () => {
  it('asks under its tune as Astria documents it; under a tune its model no longer trains, a 404 is asked again without it', async () => {
    const tune = astria.addTune({ trainedAt: ago(HOUR), startedTrainingAt: ago(2 * HOUR) });
    const retrainedTo = astria.addTune({ startedTrainingAt: ago(10 * MINUTE) });
    const [underTune, ofRetrained, withoutModel] = astria.addPack(tune.id, 3);
    for (const prompt of [underTune!, ofRetrained!, withoutModel!]) astria.finishPrompt(prompt.id);
    await seedModels(db.pool, [
      { id: 'm-trained', status: 'READY', trainingJobId: String(tune.id) },
      { id: 'm-retrained', status: 'TRAINING', trainingJobId: String(retrainedTo.id) },
    ]);
    await seedGenerations(db.pool, [
      { id: 'g-under-tune', modelId: 'm-trained', status: 'PROCESSING', jobId: String(underTune!.id) },
      { id: 'g-retrained', modelId: 'm-retrained', status: 'PROCESSING', jobId: String(ofRetrained!.id) },
      { id: 'g-no-model', modelId: null, status: 'PROCESSING', jobId: String(withoutModel!.id) },
    ]);
    // The list failing, each prompt is fetched on its own.
    astria.injectFaults({ endpoint: 'prompt_list', status: 500 }, 10);
    const requests: RequestEvent[] = [];
    astria.onRequest((event) => void requests.push(event));

    const service = createStatusService({ pool });
    const report = await reconcileOnce(
      { pool, astria: client, service, log, clock: systemClock, metrics: createMetrics() },
      { filter: operatorFilter(Date.now(), 0, []), trainingTimeoutMs: 24 * HOUR, concurrency: 4, kinds: ['prompts'] },
    );

    expect(report.prompts).toMatchObject({ transitioned: 3, failed: 0 });
    for (const id of ['g-under-tune', 'g-retrained', 'g-no-model']) expect((await readGeneration(db.pool, id)).status).toBe('COMPLETED');
    const gets = requests.filter((event) => event.endpoint === 'prompt_get').map((event) => event.path).sort();
    expect(gets).toEqual(
      [
        `/tunes/${tune.id}/prompts/${underTune!.id}`,
        `/tunes/${retrainedTo.id}/prompts/${ofRetrained!.id}`,
        `/prompts/${ofRetrained!.id}`,
        `/prompts/${withoutModel!.id}`,
      ].sort(),
    );
    expect((await readModel(db.pool, 'm-retrained')).status).toBe('TRAINING');
  });
});
