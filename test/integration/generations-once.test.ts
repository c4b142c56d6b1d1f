/**
 * Lost prompt callbacks recovered by `--once` with the same engine as tunes: on real PostgreSQL with
 * the app's `generations` table, against the simulated Astria over HTTP.
 */
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { systemClock } from '../../src/clock.js';
import { operatorFilter } from '../../src/db/inflight.js';
import { classifyReconcilerRecoveries, recordCallbackArrival } from '../../src/db/callbacks.js';
import { executorFor } from '../../src/db/drivers.js';
import { DEFAULT_HOST_SCHEMA, type HostSchema } from '../../src/db/host-names.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { createMetrics } from '../../src/metrics.js';
import { reconcileOnce, type OnceKind, type OnceReport } from '../../src/reconciler/once.js';
import { applyObservedPrompt } from '../../src/status/apply-prompt.js';
import { createStatusService } from '../../src/status/service.js';
import { promptSchema } from '../../src/astria/prompt.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { HOST_FIXTURES } from '../support/renamed-host-schema.js';
import type { SeedGeneration } from '../support/generations-schema.js';
import { fastAstriaClient } from '../support/astria-client.js';

const API_KEY = 'sd_generations_once_key';
const HOUR = 3_600_000;
const log = pino({ level: 'silent' });

describe.each(HOST_FIXTURES)('a --once pass over generations on $name', (fixture) => {
  let db: TestDatabase;
  let astria: SimulatedAstria;
  let tuneId: number;

  beforeAll(async () => {
    db = await createTestDatabase();
    await fixture.install(db.pool);
    await ensureOwnSchema(db.pool, 'astria_reconciler', fixture.host);
  });
  afterAll(() => db.drop());
  beforeEach(async () => {
    astria = await startSimulatedAstria({ apiKey: API_KEY });
    await fixture.clear(db.pool);
    await db.pool.query('TRUNCATE astria_reconciler.events, astria_reconciler.callbacks CASCADE');
    tuneId = astria.addTune({ trainedAt: ago(2 * HOUR), startedTrainingAt: ago(3 * HOUR) }).id;
    await fixture.seedModels(db.pool, [{ id: 'model-1', status: 'READY', trainingJobId: String(tuneId) }]);
  });
  afterEach(() => astria.close());

  const ago = (ms: number) => new Date(Date.now() - ms);

  function pass(options: { kinds?: OnceKind[]; maxNotFoundShare?: number; pool?: TestDatabase['pool']; host?: HostSchema } = {}): Promise<OnceReport> {
    const host = options.host ?? fixture.host;
    const pool = options.pool ?? db.pool;
    const metrics = createMetrics();
    const client = fastAstriaClient({ apiUrl: astria.url, apiKey: API_KEY, metrics });
    return reconcileOnce(
      { pool, astria: client, service: createStatusService({ pool, metrics, host }), log, clock: systemClock, metrics, host },
      {
        filter: operatorFilter(Date.now(), 0, []),
        trainingTimeoutMs: 24 * HOUR,
        concurrency: 4,
        ...(options.kinds ? { kinds: options.kinds } : {}),
        ...(options.maxNotFoundShare === undefined ? {} : { maxNotFoundShare: options.maxNotFoundShare }),
      },
    ).finally(() => client.close());
  }

  const waiting = (id: string, promptId: number, extra: Partial<SeedGeneration> = {}): SeedGeneration => ({
    id,
    modelId: 'model-1',
    status: 'PROCESSING',
    jobId: String(promptId),
    createdAt: ago(HOUR),
    ...extra,
  });

  async function eventsOf(generationId: string) {
    const { rows } = await db.pool.query(
      `SELECT kind, from_status, to_status, source, remote_id, payload->>'type' AS type FROM astria_reconciler.events WHERE generation_id = $1 ORDER BY seq`,
      [generationId],
    );
    return rows;
  }

    it('recovers lost prompt callbacks: images, failures, a prompt done without images, one emptied by Astria', async () => {
      const done = astria.addPrompt(tuneId);
      const failed = astria.addPrompt(tuneId);
      const filtered = astria.addPrompt(tuneId);
      const running = astria.addPrompt(tuneId);
      astria.finishPrompt(done.id, { at: ago(60_000) });
      astria.failPrompt(failed.id, 'face not detected');
      astria.finishPrompt(filtered.id, { images: [] });
      astria.startPrompt(running.id);
      await fixture.seedGenerations(db.pool, [
        waiting('g-done', done.id),
        waiting('g-failed', failed.id, { status: 'PENDING' }),
        waiting('g-filtered', filtered.id),
        waiting('g-running', running.id),
        waiting('g-replicate', done.id, { aiProvider: 'replicate' }),
      ]);

      const report = await pass();

      expect(report.prompts).toMatchObject({ checked: 4, transitioned: 3, unchanged: 1, failed: 0, stopped: null });
      expect(report.prompts!.transitions).toEqual(
        expect.arrayContaining([
          { generationId: 'g-done', from: 'PROCESSING', to: 'COMPLETED' },
          { generationId: 'g-failed', from: 'PENDING', to: 'FAILED' },
          { generationId: 'g-filtered', from: 'PROCESSING', to: 'FAILED' },
        ]),
      );
      const completed = await fixture.readGeneration(db.pool, 'g-done');
      expect(completed).toMatchObject({ status: 'COMPLETED', imageUrls: astria.getPrompt(done.id)!.images, errorMessage: null });
      expect(completed.completedAt).toEqual(new Date(astria.getPrompt(done.id)!.trained_at as string));
      expect(completed.updatedAt.getTime()).toBeGreaterThan(Date.now() - 60_000);
      expect((await fixture.readGeneration(db.pool, 'g-failed')).errorMessage).toMatch(/face not detected/);
      expect((await fixture.readGeneration(db.pool, 'g-filtered')).errorMessage).toMatch(/no images/);
      expect((await fixture.readGeneration(db.pool, 'g-running')).status).toBe('PROCESSING');
      expect((await fixture.readGeneration(db.pool, 'g-replicate')).status).toBe('PROCESSING');
      expect(await eventsOf('g-done')).toEqual([
        { kind: 'prompt', from_status: 'PROCESSING', to_status: 'COMPLETED', source: 'reconciler', remote_id: String(done.id), type: 'generation_status_changed' },
      ]);
      // The models' part of the report is untouched by the generations.
      expect(report).toMatchObject({ checked: 0, transitioned: 0, transitions: [] });
    });

    it("a prompt id equal to an in-flight tune id never touches the model, and the tune never touches the generation", async () => {
      const training = astria.addTune({ startedTrainingAt: ago(HOUR), eta: new Date(Date.now() + HOUR) });
      await fixture.seedModels(db.pool, [{ id: 'model-training', status: 'TRAINING', trainingJobId: String(training.id), updatedAt: ago(HOUR), createdAt: ago(2 * HOUR) }]);
      // Prompt N is done, tune N still training: only the generation moves.
      astria.addPrompt(tuneId, { id: training.id });
      astria.finishPrompt(training.id);
      await fixture.seedGenerations(db.pool, [waiting('g-collides', training.id)]);

      const report = await pass();

      expect((await fixture.readGeneration(db.pool, 'g-collides')).status).toBe('COMPLETED');
      expect((await fixture.readModel(db.pool, 'model-training')).status).toBe('TRAINING');
      expect(report.transitions).toEqual([]);

      // And the other way: tune M trained, prompt M still running: only the model moves.
      const trained = astria.addTune({ startedTrainingAt: ago(HOUR) });
      astria.addPrompt(tuneId, { id: trained.id });
      astria.startPrompt(trained.id);
      astria.train(trained.id);
      await fixture.seedModels(db.pool, [{ id: 'model-trained', status: 'TRAINING', trainingJobId: String(trained.id), updatedAt: ago(HOUR), createdAt: ago(2 * HOUR) }]);
      await fixture.seedGenerations(db.pool, [waiting('g-running', trained.id)]);

      const second = await pass();

      expect((await fixture.readModel(db.pool, 'model-trained')).status).toBe('READY');
      expect((await fixture.readGeneration(db.pool, 'g-running')).status).toBe('PROCESSING');
      expect(second.prompts!.transitions).toEqual([]);
    });

    it('a prompt Astria no longer has fails its generation, unless most prompts are missing (the not-found guard)', async () => {
      const kept = astria.addPack(tuneId, 4);
      for (const prompt of kept) astria.startPrompt(prompt.id);
      const gone = astria.addPrompt(tuneId);
      astria.removePrompt(gone.id);
      await fixture.seedGenerations(db.pool, [...kept.map((prompt, n) => waiting(`g-kept-${n}`, prompt.id)), waiting('g-gone', gone.id)]);

      await pass();
      expect(await fixture.readGeneration(db.pool, 'g-gone')).toMatchObject({ status: 'FAILED', errorMessage: `Astria prompt ${gone.id} not found` });

      // Every prompt missing at once (a wrong account or base URL): nothing is failed.
      for (const prompt of kept) astria.removePrompt(prompt.id);
      const report = await pass();
      // The guard speaks of generations and prompts, not of models and tunes.
      expect(report.prompts!.stopped).toMatch(/^4 of 4 checked generations' prompts answered 404, .*Astria showed none of their prompts: none was marked FAILED;/);
      for (let n = 0; n < 4; n++) expect((await fixture.readGeneration(db.pool, `g-kept-${n}`)).status).toBe('PROCESSING');
    });

    it('--kind limits the pass; nothing in flight costs no call; an app without a generations table has prompts off', async () => {
      const done = astria.addPrompt(tuneId);
      astria.finishPrompt(done.id);
      await fixture.seedGenerations(db.pool, [waiting('g-later', done.id)]);

      const tunesOnly = await pass({ kinds: ['tunes'] });
      expect(tunesOnly.prompts).toBeNull();
      expect(tunesOnly.apiCalls).toBe(0);
      expect((await fixture.readGeneration(db.pool, 'g-later')).status).toBe('PROCESSING');

      const promptsOnly = await pass({ kinds: ['prompts'] });
      expect(promptsOnly.prompts).toMatchObject({ checked: 1, transitioned: 1 });
      expect((await fixture.readGeneration(db.pool, 'g-later')).status).toBe('COMPLETED');

      const idle = await pass();
      expect(idle).toMatchObject({ apiCalls: 0, checked: 0, prompts: { checked: 0 } });

      const bare = await createTestDatabase();
      try {
        await ensureOwnSchema(bare.pool, 'astria_reconciler');
        // Whatever the names: the bare database has vibephoto's ai_models and no generations table.
        const report = await pass({ pool: bare.pool, host: DEFAULT_HOST_SCHEMA });
        expect(report).toMatchObject({ prompts: null, apiCalls: 0 });
      } finally {
        await bare.drop();
      }
    });

    it('exactly one event per transition when the webhook and passes race on the same generations', async () => {
      const pack = astria.addPack(tuneId, 20);
      for (const prompt of pack) astria.finishPrompt(prompt.id);
      await fixture.seedGenerations(db.pool, pack.map((prompt, n) => waiting(`g-race-${n}`, prompt.id)));

      const webhook = pack.map((prompt) =>
        applyObservedPrompt({ pool: db.pool, prompt: promptSchema.parse(astria.getPrompt(prompt.id)), source: 'webhook', host: fixture.host }),
      );
      await Promise.all([...webhook, pass(), pass({ kinds: ['prompts'] })]);

      const { rows } = await db.pool.query<{ generation_id: string; n: number }>(
        `SELECT generation_id, count(*)::int AS n FROM astria_reconciler.events WHERE kind = 'prompt' GROUP BY generation_id`,
      );
      expect(rows).toHaveLength(20);
      expect(rows.every((row) => row.n === 1)).toBe(true);
      for (let n = 0; n < 20; n++) expect((await fixture.readGeneration(db.pool, `g-race-${n}`)).status).toBe('COMPLETED');
    });

    it('judges recovered generations lost or late by prompt callbacks only: a tune callback of the same id is not theirs', async () => {
      const late = astria.addPrompt(tuneId);
      const lost = astria.addPrompt(tuneId);
      astria.finishPrompt(late.id);
      astria.finishPrompt(lost.id);
      await fixture.seedGenerations(db.pool, [waiting('g-late', late.id), waiting('g-lost', lost.id)]);
      await pass({ kinds: ['prompts'] });
      const own = executorFor({ pool: db.pool });
      await recordCallbackArrival(own, 'astria_reconciler', late.id, null, null, undefined, 'prompt');
      // A tune's callback whose id equals the lost prompt's: says nothing about that prompt.
      await recordCallbackArrival(own, 'astria_reconciler', lost.id, null, null, undefined, 'tune');

      // Within a ten-minute grace: the one whose callback came is late, the other still waits.
      expect(await classifyReconcilerRecoveries(db.pool, 'astria_reconciler', 600_000)).toEqual({ tune: { lost: 0, late: 0 }, prompt: { lost: 0, late: 1 } });
      // Once no grace is left, the other is lost.
      expect(await classifyReconcilerRecoveries(db.pool, 'astria_reconciler', 0)).toEqual({ tune: { lost: 0, late: 0 }, prompt: { lost: 1, late: 0 } });
    });
});
