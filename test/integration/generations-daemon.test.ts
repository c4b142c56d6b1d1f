/**
 * The daemon observes in-flight generations beside in-flight models with the same engine: a lost
 * prompt callback is recovered, on real PostgreSQL against the simulated Astria, and a prompt whose id
 * equals a training tune's id never touches that model.
 */
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedModels } from '../../dev/host-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { createAstriaClient } from '../../src/astria/client.js';
import { systemClock } from '../../src/clock.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { runDaemon } from '../../src/reconciler/daemon.js';
import { createLeaderElection } from '../../src/reconciler/leader.js';
import { promptSchema } from '../../src/astria/prompt.js';
import { applyObservedPrompt } from '../../src/status/apply-prompt.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { waitUntil } from '../support/daemon.js';
import { GENERATIONS_SCHEMA_SQL, readGeneration, seedGenerations } from '../support/generations-schema.js';

const API_KEY = 'sd_generations_daemon_key';
const HOUR = 3_600_000;
const log = pino({ level: 'silent' });

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(GENERATIONS_SCHEMA_SQL);
  await ensureOwnSchema(db.pool, 'astria_reconciler');
});
afterAll(() => db.drop());

/**
 * Runs the daemon on this database and the fake Astria while `body` runs, then stops it and closes
 * the fake; returns the daemon's metrics.
 */
async function whileDaemonRuns(
  astria: SimulatedAstria,
  settings: { lockName: string; stuckAfterMs: number; observeEveryMs: number; maxRps: number },
  body: () => Promise<void>,
): Promise<Metrics> {
  const metrics = createMetrics();
  const client = createAstriaClient({ apiUrl: astria.url, apiKey: API_KEY, maxRps: settings.maxRps, concurrency: 4, timeoutMs: 5_000, log, metrics, clock: systemClock });
  const election = createLeaderElection({ databaseUrl: db.url, lockName: settings.lockName, log, metrics });
  const stop = new AbortController();
  const daemon = runDaemon(
    { pool: db.pool, astria: client, service: createStatusService({ pool: db.pool, metrics }), log, clock: systemClock, metrics, leader: election },
    { intervalMs: 1_000, stuckAfterMs: settings.stuckAfterMs, trainingTimeoutMs: 24 * HOUR, concurrency: 4, observeEveryMs: settings.observeEveryMs, observePromptsEveryMs: settings.observeEveryMs, signal: stop.signal },
  );
  try {
    await body();
  } finally {
    stop.abort(new Error('done'));
    await daemon;
    await election.release();
    await client.close();
    await astria.close();
  }
  return metrics;
}

describe('the daemon with a generations table', () => {
  it('recovers a lost prompt callback once, and leaves the model whose tune id the prompt id equals', async () => {
    const astria = await startSimulatedAstria({ apiKey: API_KEY });
    const ago = (ms: number) => new Date(Date.now() - ms);
    const tune = astria.addTune({ startedTrainingAt: ago(HOUR), eta: new Date(Date.now() + HOUR) });
    await seedModels(db.pool, [{ id: 'model-training', status: 'TRAINING', trainingJobId: String(tune.id), updatedAt: ago(HOUR), createdAt: ago(2 * HOUR) }]);
    astria.addPrompt(tune.id, { id: tune.id });
    astria.finishPrompt(tune.id);
    await seedGenerations(db.pool, [{ id: 'g-lost', modelId: 'model-training', status: 'PROCESSING', jobId: String(tune.id), createdAt: ago(HOUR) }]);

    const metrics = await whileDaemonRuns(astria, { lockName: 'generations-daemon', stuckAfterMs: 0, observeEveryMs: 200, maxRps: 20 }, async () => {
      await waitUntil(async () => (await readGeneration(db.pool, 'g-lost')).status === 'COMPLETED', 30_000, 'the generation recovered');
    });

    expect(await readGeneration(db.pool, 'g-lost')).toMatchObject({ status: 'COMPLETED', imageUrls: astria.getPrompt(tune.id)!.images });
    expect((await readModel(db.pool, 'model-training')).status).toBe('TRAINING');
    const { rows } = await db.pool.query(`SELECT kind, generation_id, to_status, source FROM astria_reconciler.events ORDER BY seq`);
    expect(rows).toEqual([{ kind: 'prompt', generation_id: 'g-lost', to_status: 'COMPLETED', source: 'reconciler' }]);
    // Counted in the generations' own series; the models' series stay as they were.
    const transitions = await metrics.generationTransitions.get();
    expect(transitions.values.filter((sample) => sample.value > 0)).toEqual([{ labels: { to: 'COMPLETED', source: 'reconciler' }, value: 1 }]);
    const lag = await metrics.generationDetectionLag.get();
    expect(lag.values.find((sample) => sample.metricName === 'astria_reconciler_generation_detection_lag_seconds_count')?.value).toBe(1);
    expect((await metrics.transitions.get()).values.every((sample) => sample.value === 0)).toBe(true);
    expect((await metrics.detectionLag.get()).values.find((sample) => sample.metricName?.endsWith('_count'))?.value).toBe(0);
  });

  it('a prompt finishing inside the webhook grace, its callback lost, is applied without waiting the grace out', async () => {
    const astria = await startSimulatedAstria({ apiKey: API_KEY });
    const tune = astria.addTune({ trainedAt: new Date(Date.now() - HOUR), startedTrainingAt: new Date(Date.now() - 2 * HOUR) });
    await seedModels(db.pool, [{ id: 'model-ready', status: 'READY', trainingJobId: String(tune.id) }]);
    const prompt = astria.addPrompt(tune.id);
    astria.startPrompt(prompt.id);
    await seedGenerations(db.pool, [{ id: 'g-young', modelId: 'model-ready', status: 'PROCESSING', jobId: String(prompt.id), createdAt: new Date(), updatedAt: new Date() }]);
    // The default grace: two minutes, far longer than a prompt takes.
    await whileDaemonRuns(astria, { lockName: 'generations-daemon-grace', stuckAfterMs: 2 * 60_000, observeEveryMs: 500, maxRps: 20 }, async () => {
      // Its first look saw it running; then Astria finishes it and no callback comes.
      await waitUntil(() => astria.stats.prompt_list + astria.stats.prompt_get > 0, 15_000, 'the first look at the prompt');
      astria.finishPrompt(prompt.id);
      await waitUntil(async () => (await readGeneration(db.pool, 'g-young')).status === 'COMPLETED', 20_000, 'the generation applied well within the grace');
    });
  });

  it('exactly one event per generation when the webhook races the daemon on a pack', async () => {
    await db.pool.query('DELETE FROM generations');
    await db.pool.query('DELETE FROM ai_models');
    await db.pool.query('TRUNCATE astria_reconciler.events CASCADE');
    const astria = await startSimulatedAstria({ apiKey: API_KEY });
    const ago = (ms: number) => new Date(Date.now() - ms);
    const tune = astria.addTune({ trainedAt: ago(HOUR), startedTrainingAt: ago(2 * HOUR) });
    const pack = astria.addPack(tune.id, 30);
    await seedGenerations(db.pool, pack.map((prompt, n) => ({ id: `g-pack-${n}`, modelId: null, status: 'PROCESSING' as const, jobId: String(prompt.id), createdAt: ago(HOUR) })));
    for (const prompt of pack) astria.finishPrompt(prompt.id);

    const completed = async () =>
      (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM generations WHERE status = 'COMPLETED'`)).rows[0]!.n === pack.length;
    await whileDaemonRuns(astria, { lockName: 'generations-daemon-race', stuckAfterMs: 0, observeEveryMs: 100, maxRps: 50 }, async () => {
      // The callbacks arrive while the daemon polls the same prompts.
      await Promise.all(pack.map((prompt) => applyObservedPrompt({ pool: db.pool, prompt: promptSchema.parse(astria.getPrompt(prompt.id)) })));
      await waitUntil(completed, 30_000, 'every generation completed');
    });

    const { rows } = await db.pool.query<{ generation_id: string; n: number }>(
      `SELECT generation_id, count(*)::int AS n FROM astria_reconciler.events WHERE kind = 'prompt' GROUP BY generation_id`,
    );
    expect(rows).toHaveLength(pack.length);
    expect(rows.filter((row) => row.n !== 1)).toEqual([]);
  });
});
