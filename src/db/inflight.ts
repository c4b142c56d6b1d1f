import type pg from 'pg';
import { IN_FLIGHT_STATUSES, type ModelRow } from '../model.js';
import type { HostSchema, HostTable } from './host-names.js';

/**
 * The in-flight rows of the host's models table (`ai_models`, or as RECONCILER_HOST_MAPPING names it:
 * tunes training at Astria): the only place their selection is spelled out. The daemon (each
 * discovery) and `--once` (each pass) read them the same way, in one statement: the rounds settle from
 * what was read, never reading again per list page.
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

/**
 * The models table's columns a `ModelRow` holds, ids as text, the status by its canonical name,
 * `createdAt` as an instant (null when 'infinity': pg reads that as a number). A column the app lacks
 * reads as the rules' neutral value.
 */
export function modelColumns({ models }: HostSchema): string {
  return `${models.text('id')} AS id, ${models.text('userId')} AS "userId", ${models.status()} AS status, ${models.or('progress', '0::int')} AS progress,
  ${models.text('trainingJobId')} AS "trainingJobId", ${models.or('errorMessage', 'NULL::text')} AS "errorMessage", ${models.or('estimatedTime', 'NULL::int')} AS "estimatedTime",
  ${models.utc('createdAt')} AS "createdAt"`;
}

function where({ models }: HostSchema, filter: InFlightFilter, params: unknown[]): string {
  const param = (value: unknown) => `$${params.push(value)}`;
  const conditions = [
    ...models.astriaRows(),
    `${models.col('trainingJobId')} IS NOT NULL`,
    models.statusIn(filter.includeError ? [...IN_FLIGHT_STATUSES, 'ERROR'] : IN_FLIGHT_STATUSES),
  ];
  if (filter.modelIds) conditions.push(`${models.col('id')} = ANY(${models.values('id', `${param(filter.modelIds)}::text[]`)})`);
  if (filter.stuckBefore && models.has('updatedAt')) {
    conditions.push(`${models.col('updatedAt')} < ${models.value('updatedAt', `${param(filter.stuckBefore.toISOString())}::text`)}`);
  }
  return conditions.join(' AND ');
}

/** `updatedAt` as epoch ms text; 'infinity' (valid in the column) would fail the cast for every row, and a table without the column: read as long ago. */
export function updatedAtMs(table: HostTable<string, string>): string {
  if (!table.has('updatedAt')) return `'0'`;
  const col = table.col('updatedAt');
  return `CASE WHEN isfinite(${col}) THEN (extract(epoch FROM ${col}) * 1000)::bigint::text ELSE '0' END`;
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
 * A keyset page of in-flight rows, newest Astria id first: `--once` settles a page's rows before it
 * reads the next, so its memory is one page's, and the pages' list walks follow each other down.
 */
export interface InFlightPage {
  limit: number;
  /** The last row of the page before: its Astria id as read and its id; null for the first page. */
  after: { remoteId: string; id: string } | null;
}

/**
 * The keyset condition and `ORDER BY ... LIMIT` of a page (empty without one: every row). Astria ids
 * are text here, ordered by length, then as text: numeric order for ids without leading zeros.
 */
export function keyset(remoteId: string, id: string, page: InFlightPage | undefined, params: unknown[]): { after: string; order: string } {
  if (!page) return { after: '', order: '' };
  const param = (value: unknown) => `$${params.push(value)}::text`;
  const key = (remote: string, row: string) => `(length(${remote}), ${remote}, ${row})`;
  const after = page.after === null ? '' : ` AND ${key(remoteId, id)} < ${key(param(page.after.remoteId), param(page.after.id))}`;
  return { after, order: ` ORDER BY length(${remoteId}) DESC, ${remoteId} DESC, ${id} DESC LIMIT $${params.push(page.limit)}` };
}

/**
 * The in-flight rows, in one statement: every one (one pass over what the app's table holds in flight;
 * the daemon holds them all anyway), or a keyset page of them.
 */
export async function selectInFlightRefs(pool: pg.Pool, host: HostSchema, filter: InFlightFilter, page?: InFlightPage): Promise<InFlightRef<ModelRow>[]> {
  const { models } = host;
  const params: unknown[] = [];
  const conditions = where(host, filter, params);
  const { after, order } = keyset(models.text('trainingJobId'), models.text('id'), page, params);
  const { rows } = await pool.query<ModelRow & { updated_at: string }>(
    `SELECT ${modelColumns(host)}, ${updatedAtMs(models)} AS updated_at FROM ${models.sql} WHERE ${conditions}${after}${order}`,
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
