import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedModels } from '../../src/db/host-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../src/demo/simulated-astria.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startDaemon, waitUntil } from '../support/daemon.js';
import { startReceiver } from '../support/receiver.js';

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

describe('dead letter (built CLI)', () => {
  it('a delivery the receiver keeps rejecting (400) is parked, counted, listed by report, and sent again after requeue-dead', async () => {
    const receiver = await startReceiver({ secret: BROADCAST_SECRET, status: 400 });
    const tune = astria.addTune({ trainedAt: new Date(Date.now() - 60_000) });
    await seedModels(db.pool, [{ id: 'm-dead', status: 'TRAINING', trainingJobId: String(tune.id), updatedAt: new Date(Date.now() - 3_600_000) }]);
    const env = {
      DATABASE_URL: db.url,
      ASTRIA_API_KEY: API_KEY,
      ASTRIA_API_URL: astria.url,
      WEBHOOK_SECRET: SECRET,
      BROADCAST: 'pg,http',
      BROADCAST_HTTP_URL: receiver.url,
      BROADCAST_HTTP_SECRET: BROADCAST_SECRET,
      BROADCAST_DEAD_AFTER_ATTEMPTS: '2',
      RECONCILER_STUCK_AFTER: '0s',
      RECONCILER_INTERVAL: '1s',
    };
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
});
