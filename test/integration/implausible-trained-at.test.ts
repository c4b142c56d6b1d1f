/**
 * A `trained_at` that cannot be the training's end (1970, year 1, before the tune was created, in the
 * future) still makes the model READY, but must not become its `trainedAt` nor a detection-lag sample:
 * one such tune used to make `report`'s p99 1.6e9 s. On real PostgreSQL, through the status service
 * as the reconciler applies it.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tuneSchema } from '../../src/astria/tune.js';
import { buildReport } from '../../src/cli/report.js';
import { seedModels } from '../../dev/host-schema.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { applyObservedTune } from '../../src/status/apply-tune.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';

const NOW = new Date('2026-11-25T10:00:00.000Z');
const CREATED = '2026-11-25T09:00:00.000Z';
const clock = { now: () => NOW.getTime(), sleep: async () => undefined };

/** [model, tune id, Astria's trained_at] */
const CASES = [
  ['plausible', 9001, '2026-11-25T09:59:30.000Z'],
  ['epoch', 9002, '1970-01-01T00:00:00.000Z'],
  ['year-one', 9003, '0001-01-01T00:00:00.000Z'],
  ['before-created', 9004, '2026-11-25T08:58:00.000Z'],
  ['future', 9005, '2026-11-25T10:30:00.000Z'],
  ['leap-second', 9006, '2026-11-24T23:59:60Z'],
] as const;

let db: TestDatabase;
let metrics: Metrics;
const warnings: { object: Record<string, unknown>; message: string }[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
  metrics = createMetrics();
  const log = { warn: (object: object, message: string) => warnings.push({ object: object as Record<string, unknown>, message }) };
  const service = createStatusService({ pool: db.pool, clock, metrics, log });
  await seedModels(db.pool, CASES.map(([id, tuneId]) => ({ id, status: 'TRAINING' as const, trainingJobId: String(tuneId), createdAt: new Date(CREATED) })));
  for (const [, tuneId, trainedAt] of CASES) {
    // The leap-second tune was created before its (plausible) trained_at; the others with their models.
    const createdAt = tuneId === 9006 ? '2026-11-24T23:30:00.000Z' : CREATED;
    const tune = tuneSchema.parse({ id: tuneId, created_at: createdAt, started_training_at: createdAt, trained_at: trainedAt });
    const result = await applyObservedTune({ pool: db.pool, service, tune, source: 'reconciler', now: NOW });
    expect(result.applied).toHaveLength(1);
  }
});
afterAll(() => db.drop());

const IMPLAUSIBLE = ['epoch', 'year-one', 'before-created', 'future'];

describe('an implausible trained_at', () => {
  it('the model still becomes READY; its trainedAt is when the tune was observed, not what Astria said', async () => {
    for (const [id, tuneId, trainedAt] of CASES) {
      const model = await readModel(db.pool, id);
      expect(model).toMatchObject({ status: 'READY', progress: 100, modelUrl: String(tuneId), errorMessage: null });
      const expected = IMPLAUSIBLE.includes(id) ? NOW.toISOString() : id === 'leap-second' ? '2026-11-24T23:59:59.999Z' : trainedAt;
      expect(model.trainedAt?.toISOString(), id).toBe(expected);
    }
  });

  it('the broadcast carries the same trainedAt the row holds', async () => {
    const { rows } = await db.pool.query<{ model_id: string; trained_at: string }>(
      `SELECT model_id, payload->'data'->>'trainedAt' AS trained_at FROM astria_reconciler.events ORDER BY model_id`,
    );
    for (const row of rows) expect(row.trained_at, row.model_id).toBe((await readModel(db.pool, row.model_id)).trainedAt?.toISOString());
  });

  it('records no detection-lag sample: neither in the histogram nor in report', async () => {
    const histogram = (await metrics.detectionLag.get()).values;
    const count = histogram.find((value) => value.metricName === 'astria_reconciler_detection_lag_seconds_count')?.value;
    const sum = histogram.find((value) => value.metricName === 'astria_reconciler_detection_lag_seconds_sum')?.value;
    // Only the plausible tune (30 s) and the leap second (10 h: trained the night before it was seen).
    expect(count).toBe(2);
    expect(sum).toBeCloseTo(30 + 36_000.001, 3);

    // The log is stamped by the database's clock; these transitions were applied at the test's NOW.
    await db.pool.query('UPDATE astria_reconciler.events SET recorded_at = occurred_at');
    const report = await buildReport(db.pool, 'astria_reconciler', 7 * 86_400_000, new Date(NOW.getTime() + 1_000));
    expect(report.transitions.READY).toEqual({ webhook: 0, reconciler: CASES.length });
    expect(report.recoveries).toBe(2);
    expect(report.slowest.map((slow) => slow.modelId).sort()).toEqual(['leap-second', 'plausible']);
  });

  it('a warning names each implausible tune and what Astria said', () => {
    expect(warnings.map((warning) => warning.object.tuneId).sort()).toEqual(['9002', '9003', '9004', '9005']);
    const epoch = warnings.find((warning) => warning.object.tuneId === '9002')!;
    expect(epoch.object).toMatchObject({ modelId: 'epoch', trainedAt: '1970-01-01T00:00:00.000Z', observedAt: NOW.toISOString() });
    expect(epoch.message).toContain('Astria tune 9002');
    expect(epoch.message).toContain('implausible');
  });
});
