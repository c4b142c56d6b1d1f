import type pg from 'pg';
import type { ModelRow } from '../model.js';

/**
 * The in-flight rows of the host's `ai_models` (tunes training at Astria): the only place their
 * selection is spelled out. The daemon (each discovery) and `--once` (each pass) read them the same
 * way, in one statement: the rounds settle from what was read, never reading again per list page.
 */

/** Which in-flight models a round looks at. */
export interface InFlightFilter {
  /** Only models whose `updatedAt` is older than this (the webhook's grace); null = all. */
  stuckBefore: Date | null;
  /** Only these models; null = all. */
  modelIds: string[] | null;
  /** Models in ERROR too: an operator naming a model to heal a false failure. */
  includeError: boolean;
}

/** Every model in flight: what the daemon watches (it judges the webhook's grace itself). */
export const ALL_IN_FLIGHT: InFlightFilter = { stuckBefore: null, modelIds: null, includeError: false };

/**
 * The filter of a round run by an operator: named models are taken whatever their `updatedAt`, and may
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

/**
 * An in-flight row as a round plans and settles it: its id, the Astria id it names (unchecked text),
 * when it last changed, and the row the rules read.
 */
export interface InFlightRef<Row> {
  id: string;
  remoteId: string;
  /** `updatedAt`, epoch ms. */
  updatedAt: number;
  row: Row;
  /** The Astria object the remote one lives under, when the read knows it (a prompt's tune). */
  parentRemoteId?: string | null;
}

/**
 * Every in-flight row, in one statement: one pass over what the app's table holds in flight (keyset
 * pages would each sort the in-flight rows again). They are all held in memory anyway.
 */
export async function selectInFlightRefs(pool: pg.Pool, filter: InFlightFilter): Promise<InFlightRef<ModelRow>[]> {
  const params: unknown[] = [];
  const conditions = where(filter, params);
  const { rows } = await pool.query<ModelRow & { updated_at: string }>(
    `SELECT ${MODEL_COLUMNS},
            -- 'infinity' (valid in the column) would fail the cast for every row: read as long ago.
            CASE WHEN isfinite("updatedAt") THEN (extract(epoch FROM "updatedAt" AT TIME ZONE 'UTC') * 1000)::bigint::text ELSE '0' END AS updated_at
       FROM ai_models WHERE ${conditions}`,
    params,
  );
  return rows.map(({ updated_at: updatedAt, ...row }) => ({ id: row.id, remoteId: row.trainingJobId!, updatedAt: Number(updatedAt), row }));
}

/**
 * Throws when the database cannot answer. Leadership reports a database that is away as "not the
 * leader"; the daemon asks this to tell the two apart.
 */
export async function pingDatabase(pool: pg.Pool): Promise<void> {
  await pool.query('SELECT 1');
}
