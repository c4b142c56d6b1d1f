import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { operatorFilter } from '../../src/db/inflight.js';
import { seedModels, type SeedModel } from '../../dev/host-schema.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { createMetrics } from '../../src/metrics.js';
import { reconcileOnce, type OnceReport } from '../../src/reconciler/once.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { listen } from '../support/listen.js';
import { fastAstriaClient } from '../support/astria-client.js';

const API_KEY = 'sd_pass_test_key';
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
});
afterEach(() => astria.close());

function pass(options: { dryRun?: boolean; modelIds?: string[]; stuckAfterMs?: number } = {}): Promise<OnceReport> {
  const metrics = createMetrics();
  const client = fastAstriaClient({ apiUrl: astria.url, apiKey: API_KEY, metrics });
  const service = options.dryRun ? null : createStatusService({ pool: db.pool, metrics });
  return reconcileOnce(
    { pool: db.pool, astria: client, service, log, clock: systemClock, metrics },
    {
      filter: operatorFilter(Date.now(), options.stuckAfterMs ?? 0, options.modelIds ?? []),
      trainingTimeoutMs: 24 * HOUR,
      concurrency: 4,
    },
  ).finally(() => client.close());
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

describe('a --once pass', () => {
  it('recovers trained, failed and deleted tunes, leaves the training one, and lists every transition', async () => {
    const trained = astria.addTune({ trainedAt: ago(10 * 60_000), startedTrainingAt: ago(HOUR) });
    const failed = astria.addTune({ status: 'failed', errorMessage: 'face not detected' });
    const training = astria.addTune({ startedTrainingAt: ago(30 * 60_000), eta: new Date(Date.now() + 30 * 60_000) });
    const processing = astria.addTune({ startedTrainingAt: ago(60_000), eta: new Date(Date.now() + HOUR) });
    await seedModels(db.pool, [
      stuck('m-trained', trained.id),
      stuck('m-failed', failed.id),
      stuck('m-gone', 999_999),
      stuck('m-training', training.id),
      stuck('m-processing', processing.id, { status: 'PROCESSING' }),
      stuck('m-ready', trained.id, { status: 'READY' }),
      stuck('m-replicate', trained.id, { aiProvider: 'replicate' }),
    ]);
    const listener = await listen(db.url);

    const report = await pass();

    expect(report).toMatchObject({ checked: 5, transitioned: 4, unchanged: 1, failed: 0 });
    expect(new Set(report.transitions.map((t) => `${t.modelId}:${t.from}>${t.to}`))).toEqual(
      new Set(['m-trained:TRAINING>READY', 'm-failed:TRAINING>ERROR', 'm-gone:TRAINING>ERROR', 'm-processing:PROCESSING>TRAINING']),
    );
    expect(await readModel(db.pool, 'm-trained')).toMatchObject({ status: 'READY', progress: 100, modelUrl: String(trained.id) });
    expect((await readModel(db.pool, 'm-failed')).errorMessage).toContain('face not detected');
    expect((await readModel(db.pool, 'm-gone')).errorMessage).toBe('Astria tune 999999 not found');
    expect((await readModel(db.pool, 'm-training')).progress).toBeGreaterThanOrEqual(49);
    expect((await readModel(db.pool, 'm-ready')).status).toBe('READY');
    expect((await readModel(db.pool, 'm-replicate')).status).toBe('TRAINING');

    const events = (await listener.settle()) as { type: string }[];
    await listener.close();
    expect(events.filter((e) => e.type === 'model_status_changed')).toHaveLength(4);
  });

  it('reports a non-digit trainingJobId as a failure and never sends it to Astria', async () => {
    const paths: string[] = [];
    astria.onRequest((request) => paths.push(request.path));
    await seedModels(db.pool, [stuck('m-bad', '../tunes/1'), stuck('m-bad2', 'abc')]);

    const report = await pass();

    expect(report).toMatchObject({ checked: 2, failed: 2, transitioned: 0, apiCalls: 0 });
    expect(report.failures.map((f) => f.modelId).sort()).toEqual(['m-bad', 'm-bad2']);
    expect(paths).toEqual([]);
    expect((await readModel(db.pool, 'm-bad')).status).toBe('TRAINING');
  });

  it('falls back to single GETs when the tune list keeps failing', async () => {
    const tunes = astria.addTunes(2, () => ({ trainedAt: ago(60_000) }));
    await seedModels(db.pool, tunes.map((tune) => stuck(`m-${tune.id}`, tune.id)));
    astria.injectFaults({ endpoint: 'list', status: 503 }, 10);

    const report = await pass();

    expect(report).toMatchObject({ checked: 2, transitioned: 2, failed: 0 });
    expect(report.plan).toEqual({ listPages: 0, singleGets: 2 });
  });

  it('counts a model as failed when Astria answers 500 on every try', async () => {
    const tune = astria.addTune({ trainedAt: ago(60_000) });
    await seedModels(db.pool, [stuck('m-down', tune.id)]);
    // The list page and then the tune's GET, each tried twice.
    astria.injectFaults({ status: 500 }, 10);

    const report = await pass();

    expect(report).toMatchObject({ checked: 1, failed: 1, transitioned: 0 });
    expect(report.failures[0]?.reason).toMatch(/500/);
    expect((await readModel(db.pool, 'm-down')).status).toBe('TRAINING');
  });

  it('--dry-run lists what would change and writes nothing, sends nothing', async () => {
    const tune = astria.addTune({ trainedAt: ago(60_000) });
    await seedModels(db.pool, [stuck('m-dry', tune.id), stuck('m-dry-gone', 123)]);
    const listener = await listen(db.url);

    const report = await pass({ dryRun: true });

    expect(report).toMatchObject({ dryRun: true, checked: 2, transitioned: 2 });
    expect((await readModel(db.pool, 'm-dry')).status).toBe('TRAINING');
    expect((await readModel(db.pool, 'm-dry-gone')).status).toBe('TRAINING');
    expect(await listener.settle()).toEqual([]);
    await listener.close();
  });

  it('leaves models within the webhook grace (--stuck-after) alone', async () => {
    const tune = astria.addTune({ trainedAt: ago(60_000) });
    await seedModels(db.pool, [stuck('m-fresh', tune.id, { updatedAt: ago(30_000) }), stuck('m-old', tune.id)]);

    const report = await pass({ stuckAfterMs: 2 * 60_000 });

    expect(report.transitions.map((t) => t.modelId)).toEqual(['m-old']);
    expect((await readModel(db.pool, 'm-fresh')).status).toBe('TRAINING');
  });

  it('--model-id limits the pass and heals a false failure in ERROR', async () => {
    const tune = astria.addTune({ trainedAt: ago(60_000) });
    await seedModels(db.pool, [
      stuck('m-false-error', tune.id, { status: 'ERROR', errorMessage: 'timeout' }),
      stuck('m-other', tune.id),
    ]);

    const report = await pass({ modelIds: ['m-false-error'] });

    expect(report.transitions).toEqual([{ modelId: 'm-false-error', from: 'ERROR', to: 'READY' }]);
    expect(await readModel(db.pool, 'm-false-error')).toMatchObject({ status: 'READY', errorMessage: null });
    expect((await readModel(db.pool, 'm-other')).status).toBe('TRAINING');
  });

  it('pages the tune list instead of one GET per model when many are in flight', async () => {
    // 600 account tunes, the newest 240 of them in flight and trained: 2 list pages cover them all.
    const tunes = astria.addTunes(600, () => ({ startedTrainingAt: ago(HOUR) }));
    const inFlight = tunes.slice(-240);
    for (const tune of inFlight) astria.train(tune.id, ago(60_000));
    await seedModels(db.pool, inFlight.map((tune) => stuck(`m-${tune.id}`, tune.id)));

    const report = await pass();

    expect(report).toMatchObject({ checked: 240, transitioned: 240, failed: 0 });
    expect(report.plan).toEqual({ listPages: 2, singleGets: 0 });
    expect(astria.stats.get).toBe(0);
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM ai_models WHERE status = 'READY'`);
    expect(rows[0].n).toBe(240);
  });

  it('settles a backlog of more than one page of rows (2,000) page by page, every model once, each list page read at most twice', async () => {
    // 2,150 tunes in flight, every tenth still training (it stays in flight: a page read again would
    // count it twice): two pages of rows, the list's 18 pages walked down once (the page on the border
    // of the two may be read again).
    const tunes = astria.addTunes(2_150, (index) => (index % 10 === 0 ? { startedTrainingAt: ago(HOUR) } : { trainedAt: ago(60_000), startedTrainingAt: ago(HOUR) }));
    await seedModels(db.pool, tunes.map((tune) => stuck(`m-${tune.id}`, tune.id)));

    const report = await pass();

    expect(report).toMatchObject({ checked: 2_150, transitioned: 1_935, unchanged: 215, failed: 0 });
    expect(new Set(report.transitions.map((transition) => transition.modelId)).size).toBe(1_935);
    expect(report.plan.singleGets).toBe(0);
    expect(report.plan.listPages).toBeLessThanOrEqual(Math.ceil(2_150 / 120) + 1);
    const { rows } = await db.pool.query(`SELECT status::text, count(*)::int AS n FROM ai_models GROUP BY status ORDER BY status`);
    expect(rows).toEqual([
      { status: 'READY', n: 1_935 },
      { status: 'TRAINING', n: 215 },
    ]);
  });

  it('pages only the stretch of the list where the in-flight tunes are, however many newer tunes the account has', async () => {
    // Two old in-flight tunes under 2,400 newer account tunes: one page from just above them.
    const old = astria.addTunes(2, () => ({ trainedAt: ago(60_000) }));
    astria.addTunes(2_400);
    await seedModels(db.pool, old.map((tune) => stuck(`m-${tune.id}`, tune.id)));

    const report = await pass();

    expect(report).toMatchObject({ checked: 2, transitioned: 2 });
    expect(report.apiCalls).toBe(1);
    expect(report.plan).toEqual({ listPages: 1, singleGets: 0 });
  });

  it('switches to single GETs when the in-flight tunes are few and far apart in the list', async () => {
    // 20 pages from the newer tune down to the older one would cost more than one GET for it.
    const [older] = astria.addTunes(1, () => ({ trainedAt: ago(60_000) }));
    astria.addTunes(2_400);
    const [newer] = astria.addTunes(1, () => ({ trainedAt: ago(60_000) }));
    await seedModels(db.pool, [stuck('m-older', older!.id), stuck('m-newer', newer!.id)]);

    const report = await pass();

    expect(report).toMatchObject({ checked: 2, transitioned: 2 });
    expect(report.plan).toEqual({ listPages: 1, singleGets: 1 });
  });

  it('falls back to a GET for an in-flight tune the list did not show', async () => {
    const tunes = astria.addTunes(10, () => ({ trainedAt: ago(60_000) }));
    await seedModels(db.pool, [
      ...tunes.map((tune) => stuck(`m-${tune.id}`, tune.id)),
      stuck('m-missing', tunes[5]!.id + 100_000),
    ]);

    const report = await pass();

    expect(report).toMatchObject({ checked: 11, transitioned: 11, failed: 0 });
    expect(report.plan.singleGets).toBe(1);
    expect((await readModel(db.pool, 'm-missing')).errorMessage).toMatch(/not found/);
  });
});
