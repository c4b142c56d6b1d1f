import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tuneSchema } from '../../src/astria/tune.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { createMetrics } from '../../src/metrics.js';
import { modelStatusChangedEventSchema } from '../../src/status/event.js';
import { decide, type ModelRow } from '../../src/status/rules.js';
import { createStatusService as createService } from '../../src/status/service.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { listen } from '../support/listen.js';
import { HOST_FIXTURES } from '../support/renamed-host-schema.js';

const NOW = new Date('2026-11-25T10:00:00.000Z');
const clock = { now: () => NOW.getTime(), sleep: async () => undefined };
const RULES = { trainingTimeoutMs: 24 * 3_600_000 };

const trained = tuneSchema.parse({ id: 4242, title: 'x', trained_at: '2026-11-25T09:58:30.123Z', started_training_at: '2026-11-25T09:30:00Z' });

describe.each(HOST_FIXTURES)('status service on $name', (fixture) => {
  let db: TestDatabase;
  beforeAll(async () => {
    db = await createTestDatabase();
    await fixture.install(db.pool);
    await ensureOwnSchema(db.pool, 'astria_reconciler', fixture.host);
  });
  afterAll(() => db.drop());

  async function model(id: string, overrides: Partial<Parameters<typeof fixture.seedModels>[1][number]> = {}): Promise<ModelRow> {
    await fixture.seedModels(db.pool, [
      { id, status: 'TRAINING', trainingJobId: '4242', updatedAt: new Date('2026-11-25T09:00:00.000Z'), ...overrides },
    ]);
    return fixture.readModel(db.pool, id);
  }
  const readModel = (pool: TestDatabase['pool'], id: string) => fixture.readModel(pool, id);
  const createStatusService = (options: Parameters<typeof createService>[0]) => createService({ ...options, host: fixture.host });

  it('applies 20 concurrent identical transitions exactly once, with exactly one event and one NOTIFY', async () => {
    const row = await model('race-1');
    const listener = await listen(db.url);
    const metrics = createMetrics();
    const service = createStatusService({ pool: db.pool, clock, metrics });
    const transition = decide(row, { kind: 'tune', tune: trained }, NOW, RULES)!;

    const results = await Promise.all(Array.from({ length: 20 }, () => service.apply(transition, 'reconciler')));

    expect(results.filter((result) => result.applied)).toHaveLength(1);
    const notifications = await listener.settle();
    await listener.close();
    expect(notifications).toHaveLength(1);
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM astria_reconciler.events WHERE model_id = 'race-1'`);
    expect(rows[0].n).toBe(1);
    // Every series exists from the start at 0; only the one that counted is above it.
    expect((await metrics.transitions.get()).values.filter((series) => series.value > 0)).toEqual([
      { labels: { to: 'READY', source: 'reconciler' }, value: 1 },
    ]);
  });

  it('writes READY with the columns of SPEC.md and broadcasts the SPEC.md payload', async () => {
    const row = await model('ready-1', { userId: 'user-7', progress: 40, estimatedTime: 12, errorMessage: 'stale' });
    const listener = await listen(db.url);
    const service = createStatusService({ pool: db.pool, clock });

    const result = await service.apply(decide(row, { kind: 'tune', tune: trained }, NOW, RULES)!, 'webhook');
    const [payload] = await listener.waitFor(1);
    await listener.close();

    const after = await readModel(db.pool, 'ready-1');
    expect(after).toMatchObject({
      status: 'READY',
      progress: 100,
      modelUrl: '4242',
      errorMessage: null,
      estimatedTime: null,
    });
    expect(after.trainedAt?.toISOString()).toBe('2026-11-25T09:58:30.123Z');
    expect(after.updatedAt.toISOString()).toBe(NOW.toISOString());

    const event = modelStatusChangedEventSchema.parse(payload);
    expect(event).toEqual({
      type: 'model_status_changed',
      eventId: expect.any(String),
      modelId: 'ready-1',
      userId: 'user-7',
      status: 'READY',
      previousStatus: 'TRAINING',
      progress: 100,
      source: 'webhook',
      occurredAt: NOW.toISOString(),
      data: { modelUrl: '4242', trainedAt: '2026-11-25T09:58:30.123Z', errorMessage: null },
    });
    expect(result).toEqual({ applied: true, event });
    const { rows } = await db.pool.query(`SELECT payload FROM astria_reconciler.events WHERE event_id = $1`, [event.eventId]);
    expect(rows[0].payload).toEqual(event);
  });

  it('leaves updatedAt alone on a progress-only update and never lowers progress', async () => {
    const updatedAt = new Date('2026-11-25T09:00:00.000Z');
    const row = await model('progress-1', { progress: 10 });
    const listener = await listen(db.url);
    const service = createStatusService({ pool: db.pool, clock });
    const tune = tuneSchema.parse({ id: 4242, started_training_at: '2026-11-25T09:00:00Z', eta: '2026-11-25T11:00:00Z' });

    const transition = decide(row, { kind: 'tune', tune }, NOW, RULES)!;
    expect(transition.to).toBe(transition.from);
    await service.apply(transition, 'reconciler');
    // A stale writer that still thinks progress is lower cannot move it down.
    await service.apply({ ...transition, changes: { progress: 20 } }, 'reconciler');

    const after = await readModel(db.pool, 'progress-1');
    expect(after).toMatchObject({ status: 'TRAINING', progress: 50, estimatedTime: 60 });
    expect(after.updatedAt.toISOString()).toBe(updatedAt.toISOString());
    const payloads = await listener.settle();
    await listener.close();
    expect(payloads.map((p) => (p as { type: string }).type)).toEqual(['model_progress', 'model_progress']);
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM astria_reconciler.events WHERE model_id = 'progress-1'`);
    expect(rows[0].n).toBe(0);
  });

  it('writes nothing when the row moved on since it was read (compare-and-set)', async () => {
    const row = await model('cas-1');
    await fixture.setModelStatus(db.pool, 'cas-1', 'DELETED');
    const service = createStatusService({ pool: db.pool, clock });

    const result = await service.apply(decide(row, { kind: 'gone', tuneId: '4242' }, NOW, RULES)!, 'reconciler');

    expect(result).toEqual({ applied: false });
    expect((await readModel(db.pool, 'cas-1')).status).toBe('DELETED');
  });

  it('rolls the status write back when the event cannot be recorded: no write without its event', async () => {
    const row = await model('rollback-1');
    const listener = await listen(db.url);
    // A schema without the event table: the UPDATE succeeds, the event INSERT fails after it.
    const service = createStatusService({ pool: db.pool, clock, schema: 'no_such_schema' });

    await expect(service.apply(decide(row, { kind: 'gone', tuneId: '4242' }, NOW, RULES)!, 'reconciler')).rejects.toThrow(
      /no_such_schema/,
    );

    expect(await listener.settle()).toEqual([]);
    await listener.close();
    expect((await readModel(db.pool, 'rollback-1')).status).toBe('TRAINING');
  });
});
