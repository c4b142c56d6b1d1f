import { pino } from 'pino';
import { expect, it } from 'vitest';
import { createAstriaClient } from '../../src/astria/client.js';
import { tuneSchema } from '../../src/astria/tune.js';
import { systemClock } from '../../src/clock.js';
import { seedModels } from '../../src/db/host-schema.js';
import { operatorFilter } from '../../src/db/inflight.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { startSimulatedAstria } from '../../src/demo/simulated-astria.js';
import { createMetrics } from '../../src/metrics.js';
import { runPass } from '../../src/reconciler/pass.js';
import { applyObservedTune } from '../../src/status/apply-tune.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase } from '../support/database.js';
const log = pino({ level: 'silent' });
it('probe', async () => {
  const db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
  await seedModels(db.pool, [{ id: 'a', status: 'TRAINING', trainingJobId: '1000' }, { id: 'b', status: 'TRAINING', trainingJobId: '1001' }, { id: 'c', status: 'TRAINING', trainingJobId: '1002' }]);
  const service = createStatusService({ pool: db.pool });
  for (const raw of [{ id: 1000, trained_at: '0000-06-01T00:00:00Z' }, { id: 1001, started_training_at: '2026-01-01T00:00:00Z', eta: '9999-01-01T00:00:00Z' }]) {
    try {
      await applyObservedTune({ pool: db.pool, service, tune: tuneSchema.parse(raw), source: 'webhook', now: new Date(), trainingTimeoutMs: 1e12 });
      console.log('ok', raw);
    } catch (e) { console.log('ERR', raw, (e as Error).message); }
  }
  const astria = await startSimulatedAstria({ apiKey: 'k' });
  astria.addTune({ id: 1000, trainedAt: new Date('0000-06-01T00:00:00Z') });
  astria.addTune({ id: 1001, startedTrainingAt: new Date(), eta: new Date('9999-01-01T00:00:00Z') });
  astria.addTune({ id: 1002, trainedAt: new Date() });
  const metrics = createMetrics();
  const client = createAstriaClient({ apiUrl: astria.url, apiKey: 'k', maxRps: 1000, concurrency: 1, timeoutMs: 2000, log, metrics, clock: systemClock });
  try {
    const r = await runPass({ pool: db.pool, astria: client, service, log, clock: systemClock, metrics }, { filter: operatorFilter(Date.now(), 0, []), trainingTimeoutMs: 1e12, concurrency: 1, plan: 'single-gets' });
    console.log('pass', r);
  } catch (e) { console.log('PASS ERR', (e as Error).message); }
  await new Promise((r) => setTimeout(r, 300));
  console.log((await db.pool.query('select id, status from ai_models order by id')).rows);
  await client.close(); await astria.close(); await db.drop();
});
