import type pg from 'pg';
import { TUNE_ID_PATTERN } from '../astria/tune.js';
import type { ModelRow } from '../model.js';

/** Which in-flight models a pass looks at. */
export interface InFlightFilter {
  /** Only models whose `updatedAt` is older than this (the webhook's grace); null = all. */
  stuckBefore: Date | null;
  /** Only these models; null = all. */
  modelIds: string[] | null;
  /** Models in ERROR too: an operator naming a model to heal a false failure. */
  includeError: boolean;
}

/**
 * The filter of a pass run by an operator: named models are taken whatever their `updatedAt`, and may
 * be in ERROR; otherwise every in-flight model past the webhook's grace.
 */
export function operatorFilter(now: number, stuckAfterMs: number, modelIds: string[]): InFlightFilter {
  if (modelIds.length > 0) return { stuckBefore: null, modelIds, includeError: true };
  return { stuckBefore: stuckAfterMs > 0 ? new Date(now - stuckAfterMs) : null, modelIds: null, includeError: false };
}

/** The `ai_models` columns a `ModelRow` holds, `createdAt` read as UTC (null when 'infinity': pg reads that as a number). */
export const MODEL_COLUMNS = `id, "userId", status::text AS status, progress, "trainingJobId", "errorMessage", "estimatedTime",
  CASE WHEN isfinite("createdAt") THEN ("createdAt" AT TIME ZONE 'UTC') END AS "createdAt"`;

function where(filter: InFlightFilter, params: unknown[]): string {
  const param = (value: unknown) => `$${params.push(value)}`;
  const statuses = filter.includeError ? `('PROCESSING', 'TRAINING', 'ERROR')` : `('PROCESSING', 'TRAINING')`;
  const conditions = [`"aiProvider" = 'astria'`, `"trainingJobId" IS NOT NULL`, `status IN ${statuses}`];
  if (filter.modelIds) conditions.push(`id = ANY(${param(filter.modelIds)}::text[])`);
  if (filter.stuckBefore) {
    conditions.push(`"updatedAt" < (${param(filter.stuckBefore.toISOString())}::timestamptz AT TIME ZONE 'UTC')`);
  }
  return conditions.join(' AND ');
}

export interface InFlightSummary {
  /** Models selected. */
  count: number;
  /** Those with a usable tune id. */
  checkable: number;
  /** Lowest tune id among them: how far down a list scan must page. */
  oldestTuneId: number | null;
}

export async function summarizeInFlight(pool: pg.Pool, filter: InFlightFilter): Promise<InFlightSummary> {
  const params: unknown[] = [];
  const { rows } = await pool.query<{ count: string; checkable: string; oldest: string | null }>(
    `SELECT count(*) AS count,
            count(*) FILTER (WHERE "trainingJobId" ~ '${TUNE_ID_PATTERN}') AS checkable,
            min("trainingJobId"::bigint) FILTER (WHERE "trainingJobId" ~ '${TUNE_ID_PATTERN}') AS oldest
       FROM ai_models WHERE ${where(filter, params)}`,
    params,
  );
  const row = rows[0]!;
  return { count: Number(row.count), checkable: Number(row.checkable), oldestTuneId: row.oldest === null ? null : Number(row.oldest) };
}

/** One keyset page of in-flight models, ordered by id: the table is never held in memory whole. */
export async function selectInFlightPage(
  pool: pg.Pool,
  filter: InFlightFilter,
  afterId: string | null,
  limit: number,
): Promise<ModelRow[]> {
  const params: unknown[] = [];
  const conditions = where(filter, params);
  const after = afterId === null ? '' : `AND id > $${params.push(afterId)}`;
  const { rows } = await pool.query<ModelRow>(
    `SELECT ${MODEL_COLUMNS} FROM ai_models WHERE ${conditions} ${after} ORDER BY id LIMIT $${params.push(limit)}`,
    params,
  );
  return rows;
}

/** The in-flight models training these tunes (one page of a list scan). */
export async function selectInFlightByTuneIds(pool: pg.Pool, filter: InFlightFilter, tuneIds: number[]): Promise<ModelRow[]> {
  if (tuneIds.length === 0) return [];
  const params: unknown[] = [];
  const conditions = where(filter, params);
  const { rows } = await pool.query<ModelRow>(
    `SELECT ${MODEL_COLUMNS} FROM ai_models
      WHERE ${conditions} AND "trainingJobId" = ANY($${params.push(tuneIds.map(String))}::text[])`,
    params,
  );
  return rows;
}
