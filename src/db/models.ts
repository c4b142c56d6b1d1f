import type { ModelChanges, ModelRow, Transition, UpdatedModel } from '../model.js';
import type pg from 'pg';
import type { SqlExecutor } from './executor.js';
import { quoteIdentifier } from './identifier.js';
import { isNotOfColumnType, type HostSchema, type ModelColumn, type ModelTable } from './host-names.js';
import { modelColumns } from './inflight.js';
import { noteModelsOfTune } from './tune-models.js';

/**
 * The app's models of one Astria tune (only `modelId` when given, by its primary key), in any status,
 * as the rules read them. Without `modelId` the tune's models are looked up in our own `tune_models`
 * first (kept by the daemon's discovery and by this function), each checked against the app's table
 * (still an Astria model, still on this tune); when that finds none (a model created seconds ago, no
 * daemon running, an entry gone stale, the table unreadable) the app's table is searched by
 * `trainingJobId`, and what it found is noted for next time. The lookup only saves the search: what
 * is returned always comes from the app's table.
 */
export async function selectModelsOfTune(
  db: SqlExecutor,
  host: HostSchema,
  schema: string,
  tuneId: string,
  modelId: string | null,
  log?: { warn(object: object, message: string): void },
): Promise<ModelRow[]> {
  const { models } = host;
  if (modelId === null) {
    const noted = await selectNotedModelsOfTune(db, host, schema, tuneId, log);
    if (noted.length > 0) return noted;
  }
  const rows = await db
    .query<ModelRow>(
      `SELECT ${modelColumns(host)} FROM ${models.sql}
        WHERE ${[...models.astriaRows(), `${models.col('trainingJobId')} = ${models.value('trainingJobId', '$1::text')}`].join(' AND ')}
          AND ($2::text IS NULL OR ${models.col('id')} = ${models.value('id', '$2::text')}) ORDER BY ${models.col('id')}`,
      [tuneId, modelId],
    )
    .catch((error: unknown) => {
      if (isNotOfColumnType(error)) return [];
      throw error;
    });
  if (modelId === null && rows.length > 0) await noteModelsOfTune(db, schema, tuneId, rows.map((row) => row.id), log);
  return rows;
}

async function selectNotedModelsOfTune(db: SqlExecutor, host: HostSchema, schema: string, tuneId: string, log?: { warn(object: object, message: string): void }): Promise<ModelRow[]> {
  const { models } = host;
  try {
    return await db.query<ModelRow>(
      `SELECT ${modelColumns(host)} FROM ${models.sql}
        WHERE ${models.col('id')} = ANY (${models.values('id', `ARRAY(SELECT model_id FROM ${quoteIdentifier(schema)}.tune_models WHERE tune_id = $1::text)`)})
          AND ${[...models.astriaRows(), `${models.col('trainingJobId')} = ${models.value('trainingJobId', '$1::text')}`].join(' AND ')} ORDER BY ${models.col('id')}`,
      [tuneId],
    );
  } catch (error) {
    log?.warn({ tuneId, err: (error as Error).message }, 'could not read the tune lookup table; searching the app table');
    return [];
  }
}

/** The model read again, if it still trains this tune (a retrain re-points it to another). */
export async function selectModelOfTune(db: SqlExecutor, host: HostSchema, modelId: string, tuneId: string): Promise<ModelRow | undefined> {
  const { models } = host;
  const rows = await db.query<ModelRow>(
    `SELECT ${modelColumns(host)} FROM ${models.sql}
      WHERE ${models.col('id')} = ${models.value('id', '$1::text')} AND ${models.col('trainingJobId')} = ${models.value('trainingJobId', '$2::text')}`,
    [modelId, tuneId],
  );
  return rows[0];
}

/**
 * Columns a transition may write, with the SQL that assigns a parameter (text or null) to each. A
 * column the app lacks is not written: the event reports the value decided instead.
 */
const COLUMN_ASSIGNMENTS: { [K in keyof Required<ModelChanges>]: (models: ModelTable, param: string) => string } = {
  // GREATEST: two racing writers can never move progress down.
  progress: (models, param) => `${models.col('progress')} = GREATEST(${models.col('progress')}, ${models.value('progress', param)})`,
  estimatedTime: (models, param) => `${models.col('estimatedTime')} = ${models.value('estimatedTime', param)}`,
  trainedAt: (models, param) => `${models.col('trainedAt')} = ${models.value('trainedAt', param)}`,
  modelUrl: (models, param) => `${models.col('modelUrl')} = ${models.value('modelUrl', param)}`,
  errorMessage: (models, param) => `${models.col('errorMessage')} = ${models.value('errorMessage', param)}`,
};

/**
 * `UPDATE ... WHERE id = $1 AND status = $from AND "trainingJobId" = $expected ...`: zero rows means
 * another writer got there first (a status change, a retrain onto another tune, a new error message).
 * A status change stamps `updatedAt` (Prisma's `@updatedAt` lives in the client, not the database);
 * a progress-only update leaves it, so it keeps meaning "last status change". Values are converted to
 * each column's own type by the database (an enum status by its label, a text one as it is).
 */
export async function compareAndSetModel(tx: SqlExecutor, host: HostSchema, transition: Transition, now: Date): Promise<UpdatedModel | null> {
  const { models } = host;
  const params: unknown[] = [];
  const param = (value: unknown) => `$${params.push(value)}::text`;
  const conditions = [
    `${models.col('id')} = ${models.value('id', param(transition.modelId))}`,
    `${models.col('status')}::text = ${param(models.statusValue(transition.from))}`,
    `${models.text('trainingJobId')} IS NOT DISTINCT FROM ${param(transition.expected.trainingJobId)}`,
    ...(models.has('errorMessage') ? [`${models.col('errorMessage')} IS NOT DISTINCT FROM ${param(transition.expected.errorMessage)}`] : []),
  ];
  const assignments: string[] = [];
  const returned = { ...NOTHING_RETURNED };
  if (transition.to !== transition.from) {
    assignments.push(`${models.col('status')} = ${models.value('status', param(models.statusValue(transition.to)))}`);
    if (models.has('updatedAt')) assignments.push(`${models.col('updatedAt')} = ${models.value('updatedAt', param(now.toISOString()))}`);
  }
  for (const [column, value] of Object.entries(transition.changes) as [keyof ModelChanges, unknown][]) {
    if (value === undefined) continue;
    const text = value instanceof Date ? value.toISOString() : value === null ? null : String(value);
    if (models.has(column)) assignments.push(COLUMN_ASSIGNMENTS[column](models, param(text)));
    else returned[column] = param(text);
  }
  if (assignments.length === 0) return null;
  const rows = await tx.query<UpdatedModel>(`UPDATE ${models.sql} SET ${assignments.join(', ')} WHERE ${conditions.join(' AND ')} ${returningModel(models, returned)}`, params);
  return rows[0] ?? null;
}

/** The updated row as an `UpdatedModel`; a column the app lacks returns the SQL value `returned` gives it. */
function returningModel(models: ModelTable, returned: Record<keyof ModelChanges, string>): string {
  const column = (name: keyof ModelChanges, type: string) => `${models.or(name, returned[name])}::${type} AS "${name}"`;
  return `RETURNING ${models.text('id')} AS id, ${models.text('userId')} AS "userId", ${models.status()} AS status, ${column('progress', 'int')},
        ${column('modelUrl', 'text')}, ${models.has('trainedAt') ? models.utc('trainedAt') : `${returned.trainedAt}::timestamptz`} AS "trainedAt",
        ${column('errorMessage', 'text')}, ${column('estimatedTime', 'int')}`;
}

const NOTHING_RETURNED: Record<keyof ModelChanges, string> = { progress: '0', estimatedTime: 'NULL', trainedAt: 'NULL', modelUrl: 'NULL', errorMessage: 'NULL' };

/**
 * Many models' progress-only changes in one statement, each a compare-and-set like
 * `compareAndSetModel`'s (status, tune and message as decided); progress never moves down, and a row
 * another transaction holds locked is skipped, not waited for (one locked row must not hold the
 * others). `updatedAt` is left. Returns the rows updated.
 */
export async function updateModelsProgress(tx: SqlExecutor, host: HostSchema, transitions: readonly Transition[]): Promise<UpdatedModel[]> {
  const { models } = host;
  const assignments = [
    // GREATEST: two racing writers can never move progress down.
    ...(models.has('progress') ? [`${models.col('progress')} = GREATEST(${models.col('progress')}, coalesce(${models.value('progress', 'locked.new_progress')}, ${models.col('progress')}))`] : []),
    ...(models.has('estimatedTime')
      ? [`${models.col('estimatedTime')} = CASE WHEN locked.sets_estimate THEN ${models.value('estimatedTime', 'locked.new_estimated_time')} ELSE ${models.col('estimatedTime')} END`]
      : []),
  ];
  if (transitions.length === 0 || assignments.length === 0) return [];
  const column = <T>(pick: (transition: Transition) => T) => transitions.map(pick);
  const m = (name: ModelColumn) => models.col(name, 'm');
  return tx.query<UpdatedModel>(
    `WITH wanted AS (
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::boolean[])
         AS w(id, status, training_job_id, error_message, progress, estimated_time, sets_estimate)
     ), locked AS (
       SELECT ${m('id')} AS model_id, w.progress AS new_progress, w.estimated_time AS new_estimated_time, w.sets_estimate
         FROM ${models.sql} m JOIN wanted w ON ${m('id')} = ${models.value('id', 'w.id')}
        WHERE ${m('status')}::text = w.status AND ${m('trainingJobId')}::text IS NOT DISTINCT FROM w.training_job_id
          ${models.has('errorMessage') ? `AND ${m('errorMessage')} IS NOT DISTINCT FROM w.error_message` : ''}
          FOR UPDATE OF m SKIP LOCKED
     )
     UPDATE ${models.sql} SET ${assignments.join(', ')}
       FROM locked WHERE ${models.col('id')} = locked.model_id
     ${returningModel(models, NOTHING_RETURNED)}`,
    [
      column((t) => t.modelId),
      column((t) => models.statusValue(t.from)),
      column((t) => t.expected.trainingJobId),
      column((t) => t.expected.errorMessage),
      column((t) => t.changes.progress ?? null),
      column((t) => t.changes.estimatedTime ?? null),
      column((t) => t.changes.estimatedTime !== undefined),
    ],
  );
}

/** Every model with the columns a person looks at first (the demo's before and after), by id. */
export async function listModels(pool: pg.Pool): Promise<Record<string, unknown>[]> {
  const { rows } = await pool.query(
    `SELECT id, status::text, progress, "trainingJobId" AS tune, "estimatedTime" AS eta_min,
            "modelUrl", left("errorMessage", 48) AS "errorMessage"
       FROM ai_models ORDER BY id`,
  );
  return rows;
}
