import type pg from 'pg';
import type { GenerationRow, GenerationTransition, UpdatedGeneration } from '../model.js';
import type { SqlExecutor } from './executor.js';
import type { InFlightFilter, InFlightRef } from './inflight.js';

/**
 * The host's `generations` (images asked of Astria as prompts): the only place their selection and
 * their write are spelled out. Only `aiProvider = 'astria'` rows with a prompt id are ours; every
 * other column of the app's table is left alone.
 */

/** Whether the app has a `generations` table: without one, prompts are simply not reconciled. */
export async function generationsTablePresent(db: SqlExecutor): Promise<boolean> {
  const rows = await db.query<{ found: boolean }>(`SELECT to_regclass('generations') IS NOT NULL AS found`);
  return rows[0]?.found === true;
}

/** The image URLs as text: an element the app stored as another JSON value reads as its JSON text. */
const IMAGE_URLS = `ARRAY(SELECT CASE WHEN jsonb_typeof(url) = 'string' THEN url #>> '{}' ELSE url::text END FROM unnest("imageUrls") AS url)`;

/** The `generations` columns a `GenerationRow` holds, timestamps read as UTC (null when not finite). */
const GENERATION_COLUMNS = `id, "userId", "modelId", status::text AS status, "jobId", ${IMAGE_URLS} AS "imageUrls", "errorMessage",
  CASE WHEN isfinite("completedAt") THEN ("completedAt" AT TIME ZONE 'UTC') END AS "completedAt",
  CASE WHEN isfinite("createdAt") THEN ("createdAt" AT TIME ZONE 'UTC') END AS "createdAt",
  CASE WHEN isfinite("updatedAt") THEN ("updatedAt" AT TIME ZONE 'UTC') END AS "updatedAt"`;

/**
 * The in-flight condition, narrowed by the round's filter: models an operator names select their
 * generations (and then FAILED ones too, to heal a false failure).
 */
function where(filter: InFlightFilter, params: unknown[]): string {
  const param = (value: unknown) => `$${params.push(value)}`;
  const statuses = filter.includeError ? `('PENDING', 'PROCESSING', 'FAILED')` : `('PENDING', 'PROCESSING')`;
  const conditions = [`"aiProvider" = 'astria'`, `"jobId" IS NOT NULL`, `status IN ${statuses}`];
  if (filter.modelIds) conditions.push(`"modelId" = ANY(${param(filter.modelIds)}::text[])`);
  if (filter.stuckBefore) conditions.push(`"updatedAt" < (${param(filter.stuckBefore.toISOString())}::timestamptz AT TIME ZONE 'UTC')`);
  return conditions.join(' AND ');
}

/**
 * Every in-flight generation, in one statement, each with the tune of its model (a prompt's single GET
 * is asked under its tune, as Astria documents it).
 */
export async function selectInFlightGenerationRefs(pool: pg.Pool, filter: InFlightFilter): Promise<InFlightRef<GenerationRow>[]> {
  const params: unknown[] = [];
  const conditions = where(filter, params);
  const { rows } = await pool.query<GenerationRow & { tune_id: string | null }>(
    `SELECT ${GENERATION_COLUMNS},
            (SELECT m."trainingJobId" FROM ai_models m WHERE m.id = generations."modelId" AND m."aiProvider" = 'astria') AS tune_id
       FROM generations WHERE ${conditions}`,
    params,
  );
  return rows.map(({ tune_id: tuneId, ...row }) => ({ id: row.id, remoteId: row.jobId!, updatedAt: row.updatedAt?.getTime() ?? 0, row, parentRemoteId: tuneId }));
}

/** The app's Astria generations of one prompt, in any status, as the rules read them. */
export async function selectGenerationsOfPrompt(db: SqlExecutor, promptId: string): Promise<GenerationRow[]> {
  return db.query<GenerationRow>(
    `SELECT ${GENERATION_COLUMNS} FROM generations WHERE "aiProvider" = 'astria' AND "jobId" = $1::text ORDER BY id`,
    [promptId],
  );
}

/** The generation read again, if it still waits on this prompt. */
export async function selectGenerationOfPrompt(db: SqlExecutor, generationId: string, promptId: string): Promise<GenerationRow | undefined> {
  const rows = await db.query<GenerationRow>(`SELECT ${GENERATION_COLUMNS} FROM generations WHERE id = $1::text AND "jobId" = $2::text`, [generationId, promptId]);
  return rows[0];
}

/**
 * `UPDATE ... WHERE id = $1 AND status = $from AND "jobId" = $expected ...`: zero rows means another
 * writer got there first (a status change, a resubmission under another prompt, a new message). A
 * status change stamps `updatedAt` (Prisma's `@updatedAt` lives in the client). `imageUrls` is
 * `jsonb[]`: each URL is stored as a jsonb string, one element per image, as the app writes them.
 */
export async function compareAndSetGeneration(tx: SqlExecutor, transition: GenerationTransition, now: Date): Promise<UpdatedGeneration | null> {
  const params: unknown[] = [transition.generationId, transition.from, transition.expected.jobId, transition.expected.errorMessage];
  const param = (value: unknown) => `$${params.push(value)}`;
  const assignments: string[] = [];
  if (transition.to !== transition.from) {
    assignments.push(
      `status = (SELECT label FROM unnest(enum_range(status)) AS label WHERE label::text = ${param(transition.to)}::text)`,
      `"updatedAt" = (${param(now.toISOString())}::timestamptz AT TIME ZONE 'UTC')`,
    );
  }
  const { imageUrls, completedAt, errorMessage } = transition.changes;
  if (imageUrls !== undefined) assignments.push(`"imageUrls" = ARRAY(SELECT to_jsonb(url) FROM unnest(${param(imageUrls)}::text[]) AS url)`);
  if (completedAt !== undefined) assignments.push(`"completedAt" = (${param(completedAt?.toISOString() ?? null)}::timestamptz AT TIME ZONE 'UTC')`);
  if (errorMessage !== undefined) assignments.push(`"errorMessage" = ${param(errorMessage)}::text`);
  if (assignments.length === 0) return null;
  const rows = await tx.query<UpdatedGeneration>(
    `UPDATE generations SET ${assignments.join(', ')}
      WHERE id = $1::text AND status::text = $2::text AND "jobId" IS NOT DISTINCT FROM $3::text AND "errorMessage" IS NOT DISTINCT FROM $4::text
      RETURNING id, "userId", "modelId", status::text AS status, ${IMAGE_URLS} AS "imageUrls",
                CASE WHEN isfinite("completedAt") THEN ("completedAt" AT TIME ZONE 'UTC') END AS "completedAt", "errorMessage"`,
    params,
  );
  return rows[0] ?? null;
}
