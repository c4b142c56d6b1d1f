import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tuneSchema } from '../../src/astria/tune.js';
import { seedModels } from '../../dev/host-schema.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { noteTuneModels } from '../../src/db/tune-models.js';
import { applyObservedTune } from '../../src/status/apply-tune.js';
import { createStatusService, type StatusService } from '../../src/status/service.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';

const NOW = new Date('2026-11-25T10:00:00.000Z');
const clock = { now: () => NOW.getTime(), sleep: async () => undefined };
const TIMEOUT = 24 * 3_600_000;
const trained = (id: number) => tuneSchema.parse({ id, trained_at: '2026-11-25T09:59:00.000Z', started_training_at: '2026-11-25T09:30:00Z' });

let db: TestDatabase;
let service: StatusService;
beforeAll(async () => {
  db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
  service = createStatusService({ pool: db.pool, clock });
});
afterAll(() => db.drop());

describe('applyObservedTune', () => {
  it('applies a tune to every Astria model training it, whatever its status; the rules decide', async () => {
    const createdAt = new Date('2026-11-25T09:00:00.000Z');
    await seedModels(db.pool, [
      { id: 'at-training', status: 'TRAINING', trainingJobId: '701', createdAt },
      { id: 'at-error', status: 'ERROR', trainingJobId: '701', createdAt, errorMessage: 'false failure' },
      { id: 'at-deleted', status: 'DELETED', trainingJobId: '701', createdAt },
      { id: 'at-replicate', status: 'TRAINING', trainingJobId: '701', aiProvider: 'replicate', createdAt },
      { id: 'at-other', status: 'TRAINING', trainingJobId: '702', createdAt },
      { id: 'at-app-error', status: 'ERROR', trainingJobId: '701', createdAt, errorMessage: 'Rejected by moderation' },
    ]);
    // at-error's ERROR is ours (our event log set it, with the message the row holds); at-app-error's is the app's.
    await db.pool.query(
      `INSERT INTO astria_reconciler.events (event_id, model_id, user_id, from_status, to_status, source, payload, occurred_at)
       VALUES (gen_random_uuid(), 'at-error', 'user-1', 'TRAINING', 'ERROR', 'reconciler', $1, now())`,
      [JSON.stringify({ data: { errorMessage: 'false failure' } })],
    );

    const result = await applyObservedTune({ pool: db.pool, service, tune: trained(701), source: 'webhook', now: NOW, trainingTimeoutMs: TIMEOUT });

    expect(result.matched).toBe(4);
    expect(result.applied.map((event) => [event.modelId, event.type, event.status])).toEqual([
      ['at-error', 'model_status_changed', 'READY'],
      ['at-training', 'model_status_changed', 'READY'],
    ]);
    expect((await readModel(db.pool, 'at-deleted')).status).toBe('DELETED');
    expect((await readModel(db.pool, 'at-app-error')).status).toBe('ERROR');
    expect((await readModel(db.pool, 'at-replicate')).status).toBe('TRAINING');
    expect((await readModel(db.pool, 'at-other')).status).toBe('TRAINING');
    const { rows } = await db.pool.query(`SELECT model_id, source FROM astria_reconciler.events ORDER BY model_id, seq`);
    expect(rows).toEqual([
      { model_id: 'at-error', source: 'reconciler' },
      { model_id: 'at-error', source: 'webhook' },
      { model_id: 'at-training', source: 'webhook' },
    ]);

    // The same callback again (Astria or the poller): nothing left to apply.
    const again = await applyObservedTune({ pool: db.pool, service, tune: trained(701), source: 'reconciler', now: NOW, trainingTimeoutMs: TIMEOUT });
    expect(again).toEqual({ matched: 4, applied: [], failed: [] });
  });

  it('matches nothing for a tune no model trains', async () => {
    const result = await applyObservedTune({ pool: db.pool, service, tune: trained(999_999), source: 'webhook', now: NOW, trainingTimeoutMs: TIMEOUT });
    expect(result).toEqual({ matched: 0, applied: [], failed: [] });
  });

  it('decides again when another writer changed the model between the read and the write', async () => {
    await seedModels(db.pool, [{ id: 'at-race', status: 'PROCESSING', trainingJobId: '703', createdAt: new Date('2026-11-25T09:00:00.000Z') }]);
    let raced = false;
    // Another writer (a poll) moves PROCESSING → TRAINING just before our compare-and-set.
    const racing: StatusService = {
      async apply(transition, source) {
        if (!raced) {
          raced = true;
          await db.pool.query(`UPDATE ai_models SET status = 'TRAINING' WHERE id = 'at-race'`);
        }
        return service.apply(transition, source);
      },
      applyGeneration: (transition, source) => service.applyGeneration(transition, source),
      applyProgress: (transitions, source) => service.applyProgress(transitions, source),
    };

    const result = await applyObservedTune({ pool: db.pool, service: racing, tune: trained(703), source: 'webhook', now: NOW, trainingTimeoutMs: TIMEOUT });

    expect(result.applied).toHaveLength(1);
    expect(result.applied[0]).toMatchObject({ modelId: 'at-race', status: 'READY', previousStatus: 'TRAINING' });
    expect((await readModel(db.pool, 'at-race')).status).toBe('READY');
  });
});

describe('applyObservedTune as the app route calls it', () => {
  const arrivals = async (tuneId: number) =>
    (await db.pool.query<{ received: string }>(`SELECT received_at::text AS received FROM astria_reconciler.callbacks WHERE tune_id = $1`, [String(tuneId)])).rows;

  it("records the callback's arrival (source webhook, a model matched): lost vs late counts it, whoever received it", async () => {
    await seedModels(db.pool, [{ id: 'arrival-1', status: 'TRAINING', trainingJobId: '801' }]);
    await applyObservedTune({ pool: db.pool, service, tune: trained(801), now: NOW });
    expect(await arrivals(801)).toHaveLength(1);
    // The reconciler's own observation is no callback, and a tune no model trains leaves nothing behind.
    await seedModels(db.pool, [{ id: 'arrival-2', status: 'TRAINING', trainingJobId: '802' }]);
    await applyObservedTune({ pool: db.pool, service, tune: trained(802), now: NOW, source: 'reconciler' });
    await applyObservedTune({ pool: db.pool, service, tune: trained(803), now: NOW });
    expect([...(await arrivals(802)), ...(await arrivals(803))]).toEqual([]);
  });

  it('a row the app holds locked costs that model alone: the others sharing the tune are applied, the arrival recorded', async () => {
    await seedModels(db.pool, ['lock-a', 'lock-b', 'lock-c'].map((id) => ({ id, status: 'TRAINING' as const, trainingJobId: '804' })));
    const app = await db.pool.connect();
    try {
      await app.query('BEGIN');
      await app.query(`UPDATE ai_models SET name = 'renamed' WHERE id = 'lock-a'`);
      const result = await applyObservedTune({ pool: db.pool, service, tune: trained(804), now: NOW });
      expect(result.matched).toBe(3);
      expect(result.applied.map((event) => event.modelId).sort()).toEqual(['lock-b', 'lock-c']);
      expect(result.failed).toEqual([{ modelId: 'lock-a', reason: expect.stringMatching(/lock timeout/) }]);
    } finally {
      await app.query('ROLLBACK');
      app.release();
    }
    expect((await readModel(db.pool, 'lock-a')).status).toBe('TRAINING');
    expect((await readModel(db.pool, 'lock-b')).status).toBe('READY');
    expect(await arrivals(804)).toHaveLength(1);
    // The arrival says who received it and what it answered: two applied, one refused.
    const answer = await db.pool.query(`SELECT receiver, applied, refused FROM astria_reconciler.callbacks WHERE tune_id = '804'`);
    expect(answer.rows).toEqual([{ receiver: `${hostname()}/${process.pid}`, applied: 2, refused: 1 }]);
  }, 30_000);
});

describe('finding the models of a tune', () => {
  const noted = async (tuneId: number) =>
    (await db.pool.query<{ model_id: string }>(`SELECT model_id FROM astria_reconciler.tune_models WHERE tune_id = $1 ORDER BY model_id`, [String(tuneId)])).rows.map(
      (row) => row.model_id,
    );

  it("serves a tune the daemon's discovery noted from the lookup table, checked against the app's row", async () => {
    await seedModels(db.pool, [
      { id: 'lookup-a', status: 'TRAINING', trainingJobId: '901' },
      { id: 'lookup-b', status: 'TRAINING', trainingJobId: '902' },
    ]);
    await noteTuneModels(db.pool, 'astria_reconciler', [
      { id: 'lookup-a', remoteId: 901 },
      { id: 'lookup-b', remoteId: 902 },
    ]);
    expect(await noted(901)).toEqual(['lookup-a']);
    // A second model took the same tune after discovery noted it: the lookup names only the first,
    // so only it is applied by this callback (the reconciler's next look applies the other).
    await seedModels(db.pool, [{ id: 'lookup-a2', status: 'TRAINING', trainingJobId: '901' }]);
    const result = await applyObservedTune({ pool: db.pool, service, tune: trained(901), now: NOW });
    expect(result.applied.map((event) => event.modelId)).toEqual(['lookup-a']);
    expect((await readModel(db.pool, 'lookup-a2')).status).toBe('TRAINING');
  });

  it("falls back to the app's table for a model created since (or no daemon), and notes what it found", async () => {
    await seedModels(db.pool, [{ id: 'lookup-new', status: 'TRAINING', trainingJobId: '903' }]);
    expect(await noted(903)).toEqual([]);
    const result = await applyObservedTune({ pool: db.pool, service, tune: trained(903), now: NOW });
    expect(result.applied.map((event) => event.modelId)).toEqual(['lookup-new']);
    expect(await noted(903)).toEqual(['lookup-new']);
  });

  it('a stale note (the model retrained onto another tune) is never trusted: the app table decides', async () => {
    await seedModels(db.pool, [
      { id: 'lookup-retrained', status: 'TRAINING', trainingJobId: '905' },
      { id: 'lookup-current', status: 'TRAINING', trainingJobId: '904' },
    ]);
    // Noted while it trained 904; the app has moved it to 905 since.
    await noteTuneModels(db.pool, 'astria_reconciler', [{ id: 'lookup-retrained', remoteId: 904 }]);
    const result = await applyObservedTune({ pool: db.pool, service, tune: trained(904), now: NOW });
    expect(result.applied.map((event) => event.modelId)).toEqual(['lookup-current']);
    expect((await readModel(db.pool, 'lookup-retrained')).status).toBe('TRAINING');
  });
});
