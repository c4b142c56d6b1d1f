/**
 * 1,000 races of the three writers SPEC.md lets loose on one model: Astria's callback (a real HTTP POST
 * to the daemon's webhook handler on loopback), the daemon's poller (a round of the engine, as the
 * daemon runs it) and an operator's `--once` (`reconcileOnce` with `operatorFilter`), all started together against
 * the same trained tune, each trial on a fresh model. Across every trial:
 * - exactly one writer applies the transition (the other two see it done);
 * - exactly one `model_status_changed` READY row per model in the event log, and exactly one NOTIFY;
 * - no eventId twice, and the NOTIFYs are the logged events;
 * - no regression from READY: a stale "failed" callback and a stale 404 observation (decided on the
 *   row as it was before the race) leave the model READY and send nothing.
 */
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import { pino } from 'pino';
import { Pool as HttpPool } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAstriaClient, type AstriaClient } from '../../src/astria/client.js';
import type { Tune } from '../../src/astria/tune.js';
import { tuneSchema } from '../../src/astria/tune.js';
import { systemClock } from '../../src/clock.js';
import type { SeedModel } from '../../dev/host-schema.js';
import { operatorFilter } from '../../src/db/inflight.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { startSimulatedAstria, type SimulatedAstria, type TuneJson } from '../../dev/simulated-astria.js';
import { createHttpServer, type HttpServer } from '../../src/http/server.js';
import { createWebhookHandler } from '../../src/http/webhook.js';
import { createMetrics } from '../../src/metrics.js';
import { reconcileOnce, type OnceDeps } from '../../src/reconciler/once.js';
import { tunes } from '../../src/reconciler/resource.js';
import { InFlightIndex } from '../../src/reconciler/inflight-index.js';
import { runRound } from '../../src/reconciler/round.js';
import { decide, type ModelRow } from '../../src/status/rules.js';
import { createStatusService, type StatusService } from '../../src/status/service.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { listen } from '../support/listen.js';
import { HOST_FIXTURES } from '../support/renamed-host-schema.js';

const TRIALS = 1_000;
/** Trials raced at once; each is three writers. */
const CONCURRENT_TRIALS = 25;
const API_KEY = 'sd_races_key';
const SECRET = 'races-webhook-secret';
const HOUR = 3_600_000;
const TRAINING_TIMEOUT_MS = 24 * HOUR;
const log = pino({ level: 'silent' });

/** mulberry32: the trial order and jitter are reproducible from the printed seed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

describe.each(HOST_FIXTURES)('races on $name', (fixture) => {
  let db: TestDatabase;
  let pool: pg.Pool;
  let astria: SimulatedAstria;
  let server: HttpServer;
  let http: HttpPool;
  let service: StatusService;
  const clients: AstriaClient[] = [];

  function astriaClient(): AstriaClient {
    const client = createAstriaClient({
      apiUrl: astria.url,
      apiKey: API_KEY,
      maxRps: 100_000,
      concurrency: 32,
      timeoutMs: 10_000,
      log,
      metrics: createMetrics(),
      clock: systemClock,
      retry: { attempts: 3, baseDelayMs: 5, maxDelayMs: 20 },
    });
    clients.push(client);
    return client;
  }

  beforeAll(async () => {
    db = await createTestDatabase();
    await fixture.install(db.pool);
    await ensureOwnSchema(db.pool, 'astria_reconciler', fixture.host);
    // One pool for the three writers, as if they shared a database; big enough that they really overlap.
    pool = new pg.Pool({ connectionString: db.url, max: 24 });
    pool.on('error', () => undefined);
    service = createStatusService({ pool, host: fixture.host });
    astria = await startSimulatedAstria({ apiKey: API_KEY });
    server = createHttpServer({
      pool,
      host: fixture.host,
      metrics: createMetrics(),
      log,
      webhook: createWebhookHandler({ secret: SECRET, pool, host: fixture.host, service, log, clock: systemClock, trainingTimeoutMs: TRAINING_TIMEOUT_MS }),
    });
    const address: AddressInfo = await server.listen(0, '127.0.0.1');
    http = new HttpPool(`http://127.0.0.1:${address.port}`, { connections: 32, pipelining: 1 });
  });

  afterAll(async () => {
    await http?.close();
    await server?.close();
    await Promise.all(clients.map((client) => client.close()));
    await astria?.close();
    await pool?.end();
    await db?.drop();
  });

  async function postCallback(body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
    const response = await http.request({
      path: `/webhooks/astria?secret=${SECRET}`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body),
    });
    return { status: response.statusCode, json: (await response.body.json()) as Record<string, unknown> };
  }

  interface Trial {
    model: SeedModel & { createdAt: Date };
    tune: TuneJson;
  }

  describe('webhook vs poller vs --once on the same model', () => {
    it(`${TRIALS} trials: one transition, one event, one NOTIFY per model, no duplicates, no regression`, async () => {
      const seed = Number(process.env.RACES_SEED ?? Date.now() % 2 ** 31);
      const random = prng(seed);
      console.log(`[races] seed ${seed} (RACES_SEED=${seed} to replay the order and jitter)`);

      const trials: Trial[] = Array.from({ length: TRIALS }, (_, i) => {
        const tune = astria.addTune({ startedTrainingAt: new Date(Date.now() - HOUR), trainedAt: new Date(Date.now() - 60_000 - i) });
        const model: Trial['model'] = {
          id: `race-${String(i).padStart(4, '0')}`,
          userId: `user-${i % 17}`,
          // A quarter never saw their PROCESSING → TRAINING write: READY straight from PROCESSING.
          status: i % 4 === 0 ? 'PROCESSING' : 'TRAINING',
          trainingJobId: String(tune.id),
          progress: i % 90,
          estimatedTime: 5,
          createdAt: new Date(Date.now() - 2 * HOUR),
          updatedAt: new Date(Date.now() - HOUR),
        };
        return { model, tune };
      });
      await fixture.seedModels(db.pool, trials.map((trial) => trial.model));
      const listener = await listen(db.url);

      // Two "processes": the daemon and an operator's --once, each with its own Astria client.
      const daemon = { pool, astria: astriaClient(), writer: service, log, clock: systemClock };
      const once: OnceDeps = { pool, astria: astriaClient(), service, log, clock: systemClock, metrics: createMetrics(), host: fixture.host };

      const violations: string[] = [];
      const wins = { webhook: 0, daemon: 0, once: 0 };
      /** Passes that decided the transition on a TRAINING/PROCESSING read, then lost the compare-and-set. */
      let lostCompareAndSet = 0;
      const jitter = async () => {
        const roll = random();
        if (roll < 0.3) return;
        if (roll < 0.7) await new Promise((resolve) => setImmediate(resolve));
        else await new Promise((resolve) => setTimeout(resolve, Math.floor(random() * 3)));
      };

      const runTrial = async ({ model, tune }: Trial) => {
        const callbackBody = random() < 0.5 ? { tune } : tune;
        const racers: (() => Promise<number>)[] = [
          async () => {
            await jitter();
            // The pollers first ask Astria: half the time the callback waits about as long, so all three
            // read the row before anyone writes it.
            if (random() < 0.5) await new Promise((resolve) => setTimeout(resolve, 1 + Math.floor(random() * 4)));
            const { status, json } = await postCallback(callbackBody);
            if (status !== 200 || json.matched !== 1) violations.push(`${model.id}: webhook answered ${status} ${JSON.stringify(json)}`);
            const applied = Number(json.applied ?? 0);
            wins.webhook += applied;
            return applied;
          },
          async () => {
            await jitter();
            let applied = 0;
            // The daemon's re-read of the row, then its round over what it read.
            const rows = new InFlightIndex<ModelRow>();
            for (const ref of await tunes(fixture.host).inFlight.refs(pool, { stuckBefore: null, modelIds: [model.id], includeError: false })) {
              rows.add({ row: ref.row, remoteId: tune.id, parentRemoteId: null });
            }
            await runRound(tunes(fixture.host), daemon, {
              items: [{ id: tune.id, weight: 1 }],
              rows,
              rules: { trainingTimeoutMs: TRAINING_TIMEOUT_MS },
              idsPerPage: 120,
              concurrency: 4,
              maxNotFoundShare: 0.5,
              onOutcome: (_row, outcome) => {
                if (outcome.kind === 'raced') lostCompareAndSet += 1;
                else if (outcome.kind === 'observed' && outcome.wrote === 'status') applied += 1;
                else violations.push(`${model.id}: daemon round came to ${JSON.stringify(outcome)}`);
              },
            });
            wins.daemon += applied;
            return applied;
          },
          async () => {
            await jitter();
            const report = await reconcileOnce(once, { trainingTimeoutMs: TRAINING_TIMEOUT_MS, concurrency: 4, filter: operatorFilter(Date.now(), 0, [model.id]) });
            if (report.failed > 0) violations.push(`${model.id}: --once pass failed ${JSON.stringify(report.failures)}`);
            // The tune is trained: a model it read in flight and left unchanged lost the compare-and-set.
            lostCompareAndSet += report.unchanged;
            wins.once += report.transitioned;
            return report.transitioned;
          },
        ];
        // Shuffle who starts first.
        for (let i = racers.length - 1; i > 0; i--) {
          const j = Math.floor(random() * (i + 1));
          [racers[i], racers[j]] = [racers[j]!, racers[i]!];
        }
        const applied = await Promise.all(racers.map((racer) => racer()));
        const total = applied.reduce((sum, n) => sum + n, 0);
        if (total !== 1) violations.push(`${model.id}: ${total} writers applied the transition (${applied.join(',')})`);

        // Stale news after the fact: a "failed" callback, and a 404 decided on the row as it was before.
        const staleFailed = { ...tune, trained_at: null, status: 'failed', error_message: 'stale failure' };
        const { status, json } = await postCallback({ tune: staleFailed });
        if (status !== 200 || json.applied !== 0) violations.push(`${model.id}: stale failed callback answered ${status} ${JSON.stringify(json)}`);
        const staleRow: ModelRow = {
          id: model.id,
          userId: model.userId!,
          status: model.status,
          progress: model.progress!,
          trainingJobId: model.trainingJobId,
          errorMessage: model.errorMessage ?? null,
          estimatedTime: model.estimatedTime ?? null,
          createdAt: model.createdAt,
        };
        const now = new Date();
        for (const observation of [
          { kind: 'gone' as const, tuneId: String(tune.id) },
          { kind: 'tune' as const, tune: tuneSchema.parse(staleFailed) as Tune },
        ]) {
          const stale = decide(staleRow, observation, now, { trainingTimeoutMs: TRAINING_TIMEOUT_MS });
          if (!stale || stale.to !== 'ERROR') violations.push(`${model.id}: the stale row should decide ERROR, got ${JSON.stringify(stale)}`);
          else {
            const result = await service.apply(stale, 'reconciler');
            if (result.applied) violations.push(`${model.id}: a stale ${observation.kind} observation was applied over READY`);
          }
        }
        const row: ModelRow = await fixture.readModel(pool, model.id);
        if (decide(row, { kind: 'gone', tuneId: String(tune.id) }, now, { trainingTimeoutMs: TRAINING_TIMEOUT_MS }) !== null) {
          violations.push(`${model.id}: the rules would move a READY model on a 404`);
        }
      };

      const started = Date.now();
      for (let next = 0; next < trials.length; next += CONCURRENT_TRIALS) {
        await Promise.all(trials.slice(next, next + CONCURRENT_TRIALS).map(runTrial));
      }
      console.log(`[races] ${TRIALS} trials in ${Date.now() - started} ms; first to apply: ${JSON.stringify(wins)}, ` +
          `passes that lost the compare-and-set: ${lostCompareAndSet}`);
      expect(violations.slice(0, 20)).toEqual([]);
      // Every writer won some races: they really ran against each other, not one after the other.
      expect(wins.webhook).toBeGreaterThan(0);
      expect(wins.daemon).toBeGreaterThan(0);
      expect(wins.once).toBeGreaterThan(0);
      expect(lostCompareAndSet, 'some writers decided on the same read and lost the compare-and-set').toBeGreaterThan(0);

      // The database: every model READY with the tune's result, exactly one event each, READY from its seed status.
      const models = await Promise.all(trials.map((trial) => fixture.readModel(db.pool, trial.model.id)));
      expect(models).toHaveLength(TRIALS);
      expect(models.filter((m) => m.status !== 'READY' || m.progress !== 100 || m.modelUrl !== m.trainingJobId)).toEqual([]);

      const { rows: events } = await db.pool.query<{ event_id: string; model_id: string; from_status: string; to_status: string; payload: { type: string } }>(
        `SELECT event_id, model_id, from_status, to_status, payload FROM astria_reconciler.events ORDER BY seq`,
      );
      const seededStatus = new Map(trials.map((trial) => [trial.model.id, trial.model.status]));
      const perModel = new Map<string, number>();
      for (const event of events) perModel.set(event.model_id, (perModel.get(event.model_id) ?? 0) + 1);
      expect([...perModel.entries()].filter(([, n]) => n !== 1)).toEqual([]);
      expect(perModel.size).toBe(TRIALS);
      expect(events.filter((e) => e.to_status !== 'READY' || e.from_status !== seededStatus.get(e.model_id) || e.payload.type !== 'model_status_changed')).toEqual([]);
      expect(new Set(events.map((e) => e.event_id)).size).toBe(events.length);

      // The broadcast: exactly one NOTIFY per model, each one a logged event.
      await listener.waitFor(TRIALS, 15_000);
      const notifications = (await listener.settle(300)) as { type: string; eventId: string; modelId: string; status: string }[];
      await listener.close();
      expect(notifications.filter((n) => n.type !== 'model_status_changed' || n.status !== 'READY')).toEqual([]);
      expect(notifications).toHaveLength(TRIALS);
      const notifiedModels = new Map<string, number>();
      for (const n of notifications) notifiedModels.set(n.modelId, (notifiedModels.get(n.modelId) ?? 0) + 1);
      expect(notifiedModels.size).toBe(TRIALS);
      const notifiedIds = new Set(notifications.map((n) => n.eventId));
      expect(notifiedIds.size).toBe(TRIALS);
      expect(notifiedIds).toEqual(new Set(events.map((e) => e.event_id)));
    }, 90_000);
  });
});
