import type pg from 'pg';
import { TUNE_ID_PATTERN } from '../astria/tune.js';

/** An in-flight model as the daemon schedules it: which tune, and when its status last changed. */
export interface InFlightTune {
  id: string;
  tuneId: number;
  /** `updatedAt`, epoch ms. */
  updatedAt: number;
}

/**
 * One keyset page of the in-flight models with a usable tune id, ordered by id (a `trainingJobId` that
 * is not a tune id is never sent to Astria; `--once` reports those).
 */
export async function selectInFlightTunesPage(pool: pg.Pool, afterId: string | null, limit: number): Promise<InFlightTune[]> {
  const params: unknown[] = [limit];
  const after = afterId === null ? '' : `AND id > $${params.push(afterId)}`;
  const { rows } = await pool.query<{ id: string; tune_id: string; updated_at: string }>(
    `SELECT id, "trainingJobId" AS tune_id, 
            -- 'infinity' (valid in the column) would fail the cast for every row: read as long ago.
            CASE WHEN isfinite("updatedAt") THEN (extract(epoch FROM "updatedAt" AT TIME ZONE 'UTC') * 1000)::bigint::text ELSE '0' END AS updated_at
       FROM ai_models
      WHERE "aiProvider" = 'astria' AND status IN ('PROCESSING', 'TRAINING') AND "trainingJobId" ~ '${TUNE_ID_PATTERN}' ${after}
      ORDER BY id LIMIT $1`,
    params,
  );
  return rows.map((row) => ({ id: row.id, tuneId: Number(row.tune_id), updatedAt: Number(row.updated_at) }));
}
