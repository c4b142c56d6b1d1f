import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedModels } from '../../dev/host-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startDaemon, waitUntil } from '../support/daemon.js';
import { freePort, startReceiver } from '../support/receiver.js';

const API_KEY = 'sd_dead_letter_e2e';
const SECRET = 'dead-letter-webhook-secret';
const BROADCAST_SECRET = 'dead-letter-broadcast-secret';

let db: TestDatabase;
let astria: SimulatedAstria;
beforeAll(async () => {
  db = await createTestDatabase();
  astria = await startSimulatedAstria({ apiKey: API_KEY });
});
afterAll(async () => {
  await astria.close();
  await db.drop();
});

/** The daemon's environment both tests share: http broadcasts, every in-flight model looked at at once. */
const daemonEnv = () => ({
  DATABASE_URL: db.url,
  ASTRIA_API_KEY: API_KEY,
  ASTRIA_API_URL: astria.url,
  WEBHOOK_SECRET: SECRET,
  BROADCAST: 'pg,http',
  BROADCAST_HTTP_SECRET: BROADCAST_SECRET,
  RECONCILER_STUCK_AFTER: '0s',
  RECONCILER_INTERVAL: '1s',
});

describe('dead letter (built CLI)', () => {
  it('a delivery the receiver keeps rejecting (400) is parked, counted, listed by report, and sent again after requeue-dead', async () => {
    const receiver = await startReceiver({ secret: BROADCAST_SECRET, status: 400 });
    const tune = astria.addTune({ trainedAt: new Date(Date.now() - 60_000) });
    await seedModels(db.pool, [{ id: 'm-dead', status: 'TRAINING', trainingJobId: String(tune.id), updatedAt: new Date(Date.now() - 3_600_000) }]);
    const env = { ...daemonEnv(), BROADCAST_HTTP_URL: receiver.url, BROADCAST_DEAD_AFTER_ATTEMPTS: '2' };
    const running = await startDaemon(env);
    try {
      await waitUntil(
        async () => (await (await fetch(`${running.url}/metrics`)).text()).includes('astria_reconciler_dead_deliveries_total{transport="http"} 1'),
        20_000,
        'the delivery parked',
      );
      const metrics = await (await fetch(`${running.url}/metrics`)).text();
      expect(metrics).toContain('astria_reconciler_outbox_pending{transport="http"} 0');
      expect(running.output()).toMatch(/parked as dead/);

      const report = await runCli(['report', '--json'], { DATABASE_URL: db.url });
      expect(report.code).toBe(0);
      expect(JSON.parse(report.stdout).deadDeliveries).toMatchObject({
        total: 1,
        byTransport: { http: 1, redis: 0 },
        recent: [{ transport: 'http', modelId: 'm-dead', attempts: 2, lastError: expect.stringMatching(/HTTP 400/) }],
      });
      const tables = await runCli(['report'], { DATABASE_URL: db.url });
      expect(tables.stdout).toMatch(/Dead broadcast deliveries: 1/);

      receiver.state.status = 200;
      const requeued = await runCli(['requeue-dead', '--transport', 'http'], { DATABASE_URL: db.url });
      expect(requeued.code).toBe(0);
      expect(requeued.stdout).toMatch(/re-queued 1 dead delivery/);
      await waitUntil(() => receiver.state.accepted.length === 1, 10_000, 'the re-queued delivery');
      expect(receiver.state.accepted[0]!.modelId).toBe('m-dead');

      const bad = await runCli(['requeue-dead', '--transport', 'pigeon'], { DATABASE_URL: db.url });
      expect(bad.code).toBe(2);
    } finally {
      running.kill('SIGTERM');
      await running.done;
      await receiver.close();
    }
  }, 60_000);

  it('a delivery the receiver keeps failing on (500) is parked once older than BROADCAST_DEAD_AFTER; one to an unreachable receiver never is', async () => {
    const env = { ...daemonEnv(), BROADCAST_DEAD_AFTER: '2s' };
    const delivery = async (modelId: string) =>
      (
        await db.pool.query<{ attempts: number; dead: boolean; delivered: boolean; age_ms: number }>(
          `SELECT d.attempts, d.dead_at IS NOT NULL AS dead, d.delivered_at IS NOT NULL AS delivered,
                  (extract(epoch FROM now() - d.queued_at) * 1000)::float8 AS age_ms
             FROM astria_reconciler.deliveries d JOIN astria_reconciler.events e ON e.seq = d.event_seq
            WHERE e.model_id = $1`,
          [modelId],
        )
      ).rows[0];
    const trained = () => String(astria.addTune({ trainedAt: new Date(Date.now() - 60_000) }).id);
    const hourAgo = new Date(Date.now() - 3_600_000);

    // Nothing listens: an outage, however long past the age limit, parks nothing.
    await seedModels(db.pool, [{ id: 'm-outage', status: 'TRAINING', trainingJobId: trained(), updatedAt: hourAgo }]);
    const outage = await startDaemon({ ...env, BROADCAST_HTTP_URL: `http://127.0.0.1:${await freePort()}/broadcast` });
    try {
      await waitUntil(async () => {
        const row = await delivery('m-outage');
        return row !== undefined && row.attempts >= 3 && row.age_ms > 4_000;
      }, 30_000, 'retries of the unreachable receiver past BROADCAST_DEAD_AFTER');
      expect(await delivery('m-outage')).toMatchObject({ dead: false, delivered: false });
      expect(await (await fetch(`${outage.url}/metrics`)).text()).toContain('astria_reconciler_dead_deliveries_total{transport="http"} 0');
    } finally {
      outage.kill('SIGTERM');
      await outage.done;
    }

    // The receiver is back, but answers 500 to one model's event, forever.
    const receiver = await startReceiver({ secret: BROADCAST_SECRET });
    receiver.state.statusOf = (payload) => (payload.modelId === 'm-poison' ? 500 : 200);
    await seedModels(db.pool, [{ id: 'm-poison', status: 'TRAINING', trainingJobId: trained(), updatedAt: hourAgo }]);
    const running = await startDaemon({ ...env, BROADCAST_HTTP_URL: receiver.url });
    try {
      await waitUntil(
        async () => (await (await fetch(`${running.url}/metrics`)).text()).includes('astria_reconciler_dead_deliveries_total{transport="http"} 1'),
        20_000,
        'the failing delivery parked',
      );
      const parked = await delivery('m-poison');
      expect(parked).toMatchObject({ dead: true, delivered: false });
      expect(parked!.age_ms).toBeGreaterThanOrEqual(2_000);
      // The outage's delivery was waiting, not parked: it goes out now.
      await waitUntil(() => receiver.state.accepted.some((event) => event.modelId === 'm-outage'), 10_000, 'the delivery held during the outage');
      expect(await delivery('m-outage')).toMatchObject({ dead: false, delivered: true });

      const report = await runCli(['report', '--json'], { DATABASE_URL: db.url });
      expect(JSON.parse(report.stdout).deadDeliveries).toMatchObject({
        total: 1,
        recent: [{ transport: 'http', modelId: 'm-poison', lastError: expect.stringMatching(/HTTP 500/) }],
      });
    } finally {
      running.kill('SIGTERM');
      await running.done;
      await receiver.close();
    }
  }, 90_000);
});
