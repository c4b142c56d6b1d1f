/**
 * The built daemon against real PostgreSQL and the loopback simulated Astria, in real time: lost
 * callbacks detected at default settings, and a rejected key that pauses polling without a restart.
 * Bounds are generous (a shared machine); the strict figures live in `npm run bench`.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { seedModels, type SeedModel } from '../../dev/host-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { startDaemon, waitUntil, type RunningDaemon } from '../support/daemon.js';
import { listen } from '../support/listen.js';

const API_KEY = 'sd_detection_test_key';
const SECRET = 'detection-webhook-secret';
const HOUR = 3_600_000;
const ago = (ms: number) => new Date(Date.now() - ms);

let db: TestDatabase;
let astria: SimulatedAstria;
const daemons: RunningDaemon[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());
beforeEach(async () => {
  await db.pool.query('DELETE FROM ai_models');
  await db.pool.query('DROP SCHEMA IF EXISTS astria_reconciler CASCADE');
  astria = await startSimulatedAstria({ apiKey: API_KEY, latencyMs: 25 });
});
afterEach(async () => {
  for (const daemon of daemons.splice(0)) if (!daemon.exited()) daemon.kill('SIGKILL');
  await astria.close();
});

/** The daemon at default settings: only what has no default is set. */
async function daemon(env: Record<string, string> = {}): Promise<RunningDaemon> {
  const running = await startDaemon({ DATABASE_URL: db.url, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url, WEBHOOK_SECRET: SECRET, ...env });
  daemons.push(running);
  return running;
}

const training = (tuneId: number): SeedModel => ({ id: `m-${tuneId}`, status: 'TRAINING', trainingJobId: String(tuneId), updatedAt: ago(HOUR) });

async function metric(running: RunningDaemon, name: string): Promise<number | undefined> {
  const text = await (await fetch(`${running.url}/metrics`)).text();
  const line = text.split('\n').find((entry) => entry.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

describe('the built daemon, webhook lost', () => {
  it('default settings: models finishing over a minute (eta accurate, late, none) are each READY within seconds, one event each', async () => {
    const now = Date.now();
    const etas = [now + 5_000, now - 20 * 60_000, null, now + 30_000, now - 60_000, null];
    const tunes = etas.map((eta) => astria.addTune({ startedTrainingAt: ago(HOUR), eta: eta === null ? null : new Date(eta) }));
    astria.addTunes(3); // newer tunes of the account, not ours
    await seedModels(db.pool, tunes.map((tune) => training(tune.id)));
    const listener = await listen(db.url);
    const heardAt = new Map<string, number>();
    const trainedAt = new Map<string, number>();
    try {
      const running = await daemon();
      const poll = setInterval(() => {
        for (const payload of listener.payloads as { modelId: string; status: string }[]) {
          if (payload.status === 'READY' && !heardAt.has(payload.modelId)) heardAt.set(payload.modelId, Date.now());
        }
      }, 20);
      const timers = tunes.map((tune, index) =>
        setTimeout(() => {
          trainedAt.set(`m-${tune.id}`, Date.now());
          astria.train(tune.id, new Date());
        }, 5_000 + index * 10_000),
      );
      try {
        await waitUntil(
          () => {
            if (running.exited()) throw new Error(`daemon exited:\n${running.output()}`);
            return heardAt.size === tunes.length;
          },
          90_000,
          'every model READY on LISTEN',
        );
      } finally {
        clearInterval(poll);
        timers.forEach(clearTimeout);
      }
      const lags = [...heardAt].map(([modelId, at]) => at - trainedAt.get(modelId)!);
      console.log(`[detection] trained_at → LISTEN lags (ms): ${lags.join(', ')}; Astria calls ${astria.stats.requests}`);
      for (const lag of lags) expect(lag).toBeLessThan(15_000);
      await listener.settle();
      const ready = (listener.payloads as { status: string }[]).filter((payload) => payload.status === 'READY');
      expect(ready).toHaveLength(tunes.length);
      const { rows } = await db.pool.query<{ model_id: string; n: number }>(
        `SELECT model_id, count(*)::int AS n FROM astria_reconciler.events GROUP BY model_id`,
      );
      expect(rows.map((row) => row.n)).toEqual(tunes.map(() => 1));
      for (const tune of tunes) expect((await readModel(db.pool, `m-${tune.id}`)).status).toBe('READY');
      // One page covers all of them: the cost follows rounds, not models.
      expect(astria.stats.get).toBe(0);
      expect(astria.stats.requests).toBeLessThan(90);
      expect(running.exited()).toBe(false);
    } finally {
      await listener.close();
    }
  }, 120_000);

  it('Astria answering 401: the daemon stays up, the webhook still applies, the gauge says 0; a key accepted again resumes polling', async () => {
    const stuck = astria.addTune({ startedTrainingAt: ago(HOUR), trainedAt: ago(60_000) });
    const hooked = astria.addTune({ startedTrainingAt: ago(HOUR), trainedAt: ago(1_000) });
    await seedModels(db.pool, [training(stuck.id), training(hooked.id)]);
    astria.injectFaults({ status: 401, body: '{"error":"bad key"}' }, 1_000_000);
    const running = await daemon({ RECONCILER_AUTH_RETRY: '2s', LOG_LEVEL: 'info' });

    await waitUntil(async () => (await metric(running, 'astria_reconciler_astria_auth_ok')) === 0, 15_000, 'astria_auth_ok 0');
    expect((await metric(running, 'astria_reconciler_loop_errors_total{reason="auth"}'))!).toBeGreaterThan(0);
    const webhook = await fetch(`${running.url}/webhooks/astria?secret=${SECRET}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ tune: astria.getTune(hooked.id) }),
    });
    expect(webhook.status).toBe(200);
    expect((await readModel(db.pool, `m-${hooked.id}`)).status).toBe('READY');
    expect((await fetch(`${running.url}/livez`)).status).toBe(200);
    expect((await fetch(`${running.url}/readyz`)).status).toBe(200);
    // Retries every 2 s, logged at most once a minute; the model stays untouched meanwhile.
    await new Promise((resolve) => setTimeout(resolve, 5_000));
    expect(running.exited()).toBe(false);
    expect(running.output().match(/polling paused, the key will be tried again/g)).toHaveLength(1);
    expect((await readModel(db.pool, `m-${stuck.id}`)).status).toBe('TRAINING');

    astria.clearFaults();
    await waitUntil(async () => (await readModel(db.pool, `m-${stuck.id}`)).status === 'READY', 15_000, 'the stuck model recovered');
    expect(await metric(running, 'astria_reconciler_astria_auth_ok')).toBe(1);
    expect(running.output()).toContain('Astria accepts the API key again');
    expect(running.output()).not.toContain(API_KEY);
    expect((await metric(running, 'astria_reconciler_last_success_timestamp_seconds'))! * 1000).toBeGreaterThan(Date.now() - 10_000);
  }, 60_000);
});
