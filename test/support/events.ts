import type pg from 'pg';
import { tuneSchema } from '../../src/astria/tune.js';
import { seedModels } from '../../dev/host-schema.js';
import { applyObservedTune } from '../../src/status/apply-tune.js';
import type { EventSource, ModelEvent } from '../../src/status/event.js';
import type { StatusService } from '../../src/status/service.js';

/** One model per tune id, PROCESSING on Astria; returns `[modelId, tuneId]` pairs. */
export async function seedProcessing(pool: pg.Pool, prefix: string, count: number, firstTuneId: number): Promise<[string, number][]> {
  const models = Array.from({ length: count }, (_, i) => [`${prefix}-${i}`, firstTuneId + i] as [string, number]);
  await seedModels(
    pool,
    models.map(([id, tuneId], i) => ({ id, userId: `user-${i % 3}`, status: 'PROCESSING' as const, trainingJobId: String(tuneId) })),
  );
  return models;
}

/**
 * The three status changes a model can go through, in order: PROCESSING → TRAINING (started),
 * TRAINING → ERROR (Astria says failed), ERROR → READY (a false failure healed).
 */
export const STAGES = ['started', 'failed', 'trained'] as const;

export async function advance(
  pool: pg.Pool,
  service: StatusService,
  tuneId: number,
  stage: (typeof STAGES)[number],
  /** `schema`: the service's own schema, whose event log tells the ERRORs it set (for `trained` after `failed`). */
  options: { source?: EventSource; now?: Date; trainedAt?: Date; schema?: string } = {},
): Promise<ModelEvent[]> {
  const now = options.now ?? new Date();
  const tune = tuneSchema.parse({
    id: tuneId,
    started_training_at: new Date(now.getTime() - 60_000).toISOString(),
    ...(stage === 'failed' ? { status: 'failed', error_message: 'GPU exploded' } : {}),
    ...(stage === 'trained' ? { trained_at: (options.trainedAt ?? now).toISOString() } : {}),
  });
  const result = await applyObservedTune({
    pool,
    service,
    tune,
    source: options.source ?? 'reconciler',
    now,
    trainingTimeoutMs: 24 * 3_600_000,
    schema: options.schema,
  });
  // The library makes a refused write that model's failure; to the tests here it is an error.
  if (result.failed.length > 0) throw new Error(result.failed.map((failure) => failure.reason).join('; '));
  return result.applied;
}

/** The event log as written: `eventId` → payload, and per model the eventIds in `seq` order. */
export async function readEventLog(pool: pg.Pool, schema = 'astria_reconciler') {
  const { rows } = await pool.query<{ event_id: string; model_id: string; payload: Record<string, unknown> }>(
    `SELECT event_id, model_id, payload FROM ${schema}.events ORDER BY seq`,
  );
  const payloads = new Map(rows.map((row) => [row.event_id, row.payload]));
  const byModel = new Map<string, string[]>();
  for (const row of rows) byModel.set(row.model_id, [...(byModel.get(row.model_id) ?? []), row.event_id]);
  return { payloads, byModel };
}
