import type pg from 'pg';
import { IN_FLIGHT_STATUSES, type ModelStatus } from '../model.js';
import type { HostSchema } from './host-names.js';

/**
 * Orphans: the app's models training at Astria whose tune id was never saved (the create call's
 * answer was lost to a timeout, a deploy or a crash before the `UPDATE`). They are outside "in
 * flight" until a tune is matched to them and its id written here.
 */

export interface OrphanRow {
  id: string;
  status: ModelStatus;
  /** `createdAt`, epoch ms. */
  createdAt: number;
}

/** `RECONCILER_ORPHAN_WINDOW`'s default: the app's own recovery jobs look two days back. */
export const DEFAULT_ORPHAN_WINDOW_MS = 48 * 3_600_000;

/** Orphans read at once at most: a backlog larger than this is matched in later runs, newest first. */
export const MAX_ORPHANS = 1_000;

/**
 * The orphans created within `windowMs` of the database's now (only `modelIds` when given), newest
 * first. Older ones are left alone: their tune, if any, is long off the recent pages of Astria's list.
 * A models table without `createdAt` has none: their age cannot be told.
 */
export async function selectOrphans(pool: pg.Pool, { models }: HostSchema, windowMs: number, modelIds: string[] | null = null): Promise<OrphanRow[]> {
  if (!models.has('createdAt')) return [];
  const createdAt = models.col('createdAt');
  const conditions = [
    ...models.astriaRows(),
    `${models.col('trainingJobId')} IS NULL`,
    models.statusIn(IN_FLIGHT_STATUSES),
    `isfinite(${createdAt})`,
    // The cutoff as UTC ISO text: a timestamp column takes its wall-clock time, a timestamptz its instant.
    `${createdAt} >= ${models.value('createdAt', `to_char((now() - $1::bigint * interval '1 millisecond') AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')`)}`,
    `($2::text[] IS NULL OR ${models.col('id')} = ANY(${models.values('id', '$2::text[]')}))`,
  ];
  const { rows } = await pool.query<{ id: string; status: ModelStatus; created_at: string }>(
    `SELECT ${models.text('id')} AS id, ${models.status()} AS status, (extract(epoch FROM ${createdAt}) * 1000)::bigint::text AS created_at
       FROM ${models.sql}
      WHERE ${conditions.join(' AND ')}
      ORDER BY ${createdAt} DESC, ${models.col('id')}
      LIMIT $3`,
    [windowMs, modelIds, MAX_ORPHANS],
  );
  return rows.map((row) => ({ id: row.id, status: row.status, createdAt: Number(row.created_at) }));
}

/**
 * Which of `tuneIds` some model already holds as its tune id, and which model: a tune is one model's
 * training, so another's is no candidate. The app's table has no index on the tune id (we add none):
 * this reads it once per matching run that found candidates, and runs only while orphans exist.
 */
export async function modelsHoldingTunes(pool: pg.Pool, { models }: HostSchema, tuneIds: number[]): Promise<Map<number, string>> {
  if (tuneIds.length === 0) return new Map();
  const { rows } = await pool.query<{ tune_id: string; model_id: string }>(
    `SELECT ${models.text('trainingJobId')} AS tune_id, ${models.text('id')} AS model_id
       FROM ${models.sql}
      WHERE ${models.col('trainingJobId')} = ANY(${models.values('trainingJobId', '$1::text[]')})`,
    [tuneIds.map(String)],
  );
  return new Map(rows.map((row) => [Number(row.tune_id), row.model_id]));
}

/**
 * Saves the tune id matched to an orphan, only if the row is still the orphan that was read: no tune
 * id yet (the app may have saved its own meanwhile) and the status seen (canonical), and no other model
 * holds that tune (saved meanwhile). False when it was not.
 */
export async function linkOrphan(pool: pg.Pool, { models }: HostSchema, modelId: string, tuneId: number, seenStatus: ModelStatus): Promise<boolean> {
  const result = await pool.query(
    `UPDATE ${models.sql} SET ${models.col('trainingJobId')} = ${models.value('trainingJobId', '$2::text')}
      WHERE ${models.col('id')} = ${models.value('id', '$1::text')} AND ${models.col('trainingJobId')} IS NULL AND ${models.col('status')}::text = $3::text
        AND NOT EXISTS (SELECT 1 FROM ${models.sql} AS holder WHERE ${models.col('trainingJobId', 'holder')} = ${models.value('trainingJobId', '$2::text')})`,
    [modelId, String(tuneId), models.statusValue(seenStatus)],
  );
  return result.rowCount === 1;
}
