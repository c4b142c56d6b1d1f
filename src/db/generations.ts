import type pg from 'pg';
import { GENERATION_IN_FLIGHT_STATUSES, type GenerationRow, type GenerationTransition, type UpdatedGeneration } from '../model.js';
import type { SqlExecutor } from './executor.js';
import { quoteLiteral, type GenerationTable, type HostSchema } from './host-names.js';
import { keyset, type InFlightFilter, type InFlightPage, type InFlightRef } from './inflight.js';

/**
 * The host's generations table (`generations`, or as RECONCILER_HOST_MAPPING names it: images asked of Astria as prompts): the only place their selection and
 * their write are spelled out. Only `aiProvider = 'astria'` rows with a prompt id are ours; every
 * other column of the app's table is left alone.
 */

/** Whether the app has its generations table: without one, prompts are simply not reconciled. */
export async function generationsTablePresent(db: SqlExecutor, { generations }: HostSchema): Promise<boolean> {
  const rows = await db.query<{ found: boolean }>(`SELECT to_regclass(${quoteLiteral(generations.sql)}) IS NOT NULL AS found`);
  return rows[0]?.found === true;
}

/**
 * The image URLs as text, whatever the column holds them in (`jsonb[]`, `text[]`, a `jsonb` array): an
 * element stored as another JSON value reads as its JSON text.
 */
const imageUrls = (generations: GenerationTable) =>
  `ARRAY(SELECT CASE WHEN jsonb_typeof(url) = 'string' THEN url #>> '{}' ELSE url::text END FROM jsonb_array_elements(to_jsonb(${generations.col('imageUrls')})) AS url)`;

/** The generations table's columns a `GenerationRow` holds, ids as text, timestamps read as instants (null when not finite). */
export const generationColumns = (generations: GenerationTable) => `${generations.text('id')} AS id, ${generations.text('userId')} AS "userId",
  ${generations.or('modelId', 'NULL')}::text AS "modelId", ${generations.status()} AS status, ${generations.text('jobId')} AS "jobId",
  ${imageUrls(generations)} AS "imageUrls", ${generations.or('errorMessage', 'NULL::text')} AS "errorMessage",
  ${generations.utc('completedAt')} AS "completedAt", ${generations.utc('createdAt')} AS "createdAt", ${generations.utc('updatedAt')} AS "updatedAt"`;

/**
 * The in-flight condition, narrowed by the round's filter: models an operator names select their
 * generations (and then FAILED ones too, to heal a false failure).
 */
function where({ generations }: HostSchema, filter: InFlightFilter, params: unknown[]): string {
  const param = (value: unknown) => `$${params.push(value)}`;
  const conditions = [
    ...generations.astriaRows(),
    `${generations.col('jobId')} IS NOT NULL`,
    generations.statusIn(filter.includeError ? [...GENERATION_IN_FLIGHT_STATUSES, 'FAILED'] : GENERATION_IN_FLIGHT_STATUSES),
  ];
  if (filter.modelIds) {
    conditions.push(generations.has('modelId') ? `${generations.col('modelId')} = ANY(${generations.values('modelId', `${param(filter.modelIds)}::text[]`)})` : 'false');
  }
  if (filter.stuckBefore && generations.has('updatedAt')) {
    conditions.push(`${generations.col('updatedAt')} < ${generations.value('updatedAt', `${param(filter.stuckBefore.toISOString())}::text`)}`);
  }
  return conditions.join(' AND ');
}

/**
 * Every in-flight generation, in one statement, each with the tune of its model (a prompt's single GET
 * is asked under its tune, as Astria documents it).
 */
export async function selectInFlightGenerationRefs(pool: pg.Pool, host: HostSchema, filter: InFlightFilter, page?: InFlightPage): Promise<InFlightRef<GenerationRow>[]> {
  const { generations, models } = host;
  const params: unknown[] = [];
  const conditions = where(host, filter, params);
  const tuneOfModel = generations.has('modelId')
    ? `(SELECT ${models.text('trainingJobId')} FROM ${models.sql} m
         WHERE ${[`${models.col('id', 'm')} = ${models.value('id', `${generations.col('modelId', 'g')}::text`)}`, ...models.astriaRows().map((condition) => `m.${condition}`)].join(' AND ')})`
    : 'NULL::text';
  const { after, order } = keyset(generations.text('jobId'), generations.text('id'), page, params);
  const { rows } = await pool.query<GenerationRow & { tune_id: string | null }>(
    `SELECT ${generationColumns(generations)}, ${tuneOfModel} AS tune_id FROM ${generations.sql} g WHERE ${conditions}${after}${order}`,
    params,
  );
  return rows.map(({ tune_id: tuneId, ...row }) => ({ id: row.id, remoteId: row.jobId!, updatedAt: row.updatedAt?.getTime() ?? 0, row, parentRemoteId: tuneId }));
}

/** The app's Astria generations of one prompt, in any status, as the rules read them. */
export async function selectGenerationsOfPrompt(db: SqlExecutor, { generations }: HostSchema, promptId: string): Promise<GenerationRow[]> {
  const conditions = [...generations.astriaRows(), `${generations.col('jobId')} = ${generations.value('jobId', '$1::text')}`];
  return db.query<GenerationRow>(`SELECT ${generationColumns(generations)} FROM ${generations.sql} WHERE ${conditions.join(' AND ')} ORDER BY ${generations.col('id')}`, [promptId]);
}

/** The generation read again, if it still waits on this prompt. */
export async function selectGenerationOfPrompt(db: SqlExecutor, { generations }: HostSchema, generationId: string, promptId: string): Promise<GenerationRow | undefined> {
  const rows = await db.query<GenerationRow>(
    `SELECT ${generationColumns(generations)} FROM ${generations.sql}
      WHERE ${generations.col('id')} = ${generations.value('id', '$1::text')} AND ${generations.col('jobId')} = ${generations.value('jobId', '$2::text')}`,
    [generationId, promptId],
  );
  return rows[0];
}

/**
 * `UPDATE ... WHERE id = $1 AND status = $from AND "jobId" = $expected ...`: zero rows means another
 * writer got there first (a status change, a resubmission under another prompt, a new message). A
 * status change stamps `updatedAt` (Prisma's `@updatedAt` lives in the client). The image URLs are
 * stored in the column's own type: in vibephoto's `jsonb[]` each URL is a jsonb string, one element
 * per image, as the app writes them. A column the app lacks is not written: the event reports the
 * value decided instead.
 */
export async function compareAndSetGeneration(tx: SqlExecutor, { generations }: HostSchema, transition: GenerationTransition, now: Date): Promise<UpdatedGeneration | null> {
  const params: unknown[] = [];
  const at = (value: unknown) => `$${params.push(value)}`;
  const param = (value: unknown) => `${at(value)}::text`;
  const conditions = [
    `${generations.col('id')} = ${generations.value('id', param(transition.generationId))}`,
    `${generations.col('status')}::text = ${param(generations.statusValue(transition.from))}`,
    `${generations.text('jobId')} IS NOT DISTINCT FROM ${param(transition.expected.jobId)}`,
    ...(generations.has('errorMessage') ? [`${generations.col('errorMessage')} IS NOT DISTINCT FROM ${param(transition.expected.errorMessage)}`] : []),
  ];
  const assignments: string[] = [];
  if (transition.to !== transition.from) {
    assignments.push(`${generations.col('status')} = ${generations.value('status', param(generations.statusValue(transition.to)))}`);
    if (generations.has('updatedAt')) assignments.push(`${generations.col('updatedAt')} = ${generations.value('updatedAt', param(now.toISOString()))}`);
  }
  const { imageUrls: urls, completedAt, errorMessage } = transition.changes;
  if (urls !== undefined) assignments.push(`${generations.col('imageUrls')} = ${generations.value('imageUrls', `to_json(${at(urls)}::text[])`)}`);
  let returnedCompletedAt = 'NULL::text';
  let returnedError = 'NULL::text';
  if (completedAt !== undefined) {
    const value = param(completedAt?.toISOString() ?? null);
    if (generations.has('completedAt')) assignments.push(`${generations.col('completedAt')} = ${generations.value('completedAt', value)}`);
    else returnedCompletedAt = value;
  }
  if (errorMessage !== undefined) {
    const value = param(errorMessage);
    if (generations.has('errorMessage')) assignments.push(`${generations.col('errorMessage')} = ${generations.value('errorMessage', value)}`);
    else returnedError = value;
  }
  if (assignments.length === 0) return null;
  const rows = await tx.query<UpdatedGeneration>(
    `UPDATE ${generations.sql} SET ${assignments.join(', ')}
      WHERE ${conditions.join(' AND ')}
      RETURNING ${generations.text('id')} AS id, ${generations.text('userId')} AS "userId",
                ${generations.or('modelId', 'NULL')}::text AS "modelId", ${generations.status()} AS status,
                ${imageUrls(generations)} AS "imageUrls",
                ${generations.has('completedAt') ? generations.utc('completedAt') : `${returnedCompletedAt}::timestamptz`} AS "completedAt",
                ${generations.or('errorMessage', returnedError)} AS "errorMessage"`,
    params,
  );
  return rows[0] ?? null;
}
