import type pg from 'pg';

/**
 * Orphans: the app's models training at Astria whose tune id was never saved (the create call's
 * answer was lost to a timeout, a deploy or a crash before the `UPDATE`). They are outside "in
 * flight" until a tune is matched to them and its id written here.
 */

export interface OrphanRow {
  id: string;
  status: string;
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
 */
export async function selectOrphans(pool: pg.Pool, windowMs: number, modelIds: string[] | null = null): Promise<OrphanRow[]> {
  const { rows } = await pool.query<{ id: string; status: string; created_at: string }>(
    `SELECT id, status::text AS status, (extract(epoch FROM "createdAt" AT TIME ZONE 'UTC') * 1000)::bigint::text AS created_at
       FROM ai_models
      WHERE "aiProvider" = 'astria' AND "trainingJobId" IS NULL AND status IN ('PROCESSING', 'TRAINING')
        AND isfinite("createdAt")
        AND "createdAt" >= (now() AT TIME ZONE 'UTC') - $1::bigint * interval '1 millisecond'
        AND ($2::text[] IS NULL OR id = ANY($2::text[]))
      ORDER BY "createdAt" DESC, id
      LIMIT $3`,
    [windowMs, modelIds, MAX_ORPHANS],
  );
  return rows.map((row) => ({ id: row.id, status: row.status, createdAt: Number(row.created_at) }));
}

/**
 * Saves the tune id matched to an orphan, only if the row is still the orphan that was read: no tune
 * id yet (the app may have saved its own meanwhile) and the status seen. False when it was not.
 */
export async function linkOrphan(pool: pg.Pool, modelId: string, tuneId: number, seenStatus: string): Promise<boolean> {
  const result = await pool.query(
    `UPDATE ai_models SET "trainingJobId" = $2::text
      WHERE id = $1::text AND "trainingJobId" IS NULL AND status::text = $3::text`,
    [modelId, String(tuneId), seenStatus],
  );
  return result.rowCount === 1;
}
