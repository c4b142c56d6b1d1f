import type { ModelChanges, ModelRow, Transition, UpdatedModel } from '../model.js';
import type pg from 'pg';
import type { SqlExecutor } from './executor.js';
import { quoteIdentifier } from './identifier.js';
import { MODEL_COLUMNS } from './inflight.js';
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
  schema: string,
  tuneId: string,
  modelId: string | null,
  log?: { warn(object: object, message: string): void },
): Promise<ModelRow[]> {
  if (modelId === null) {
    const noted = await selectNotedModelsOfTune(db, schema, tuneId, log);
    if (noted.length > 0) return noted;
  }
  const rows = await db.query<ModelRow>(
    `SELECT ${MODEL_COLUMNS} FROM ai_models
      WHERE "aiProvider" = 'astria' AND "trainingJobId" = $1::text AND ($2::text IS NULL OR id = $2::text) ORDER BY id`,
    [tuneId, modelId],
  );
  if (modelId === null && rows.length > 0) await noteModelsOfTune(db, schema, tuneId, rows.map((row) => row.id), log);
  return rows;
}

async function selectNotedModelsOfTune(db: SqlExecutor, schema: string, tuneId: string, log?: { warn(object: object, message: string): void }): Promise<ModelRow[]> {
  try {
    return await db.query<ModelRow>(
      `SELECT ${MODEL_COLUMNS} FROM ai_models
        WHERE id = ANY (ARRAY(SELECT model_id FROM ${quoteIdentifier(schema)}.tune_models WHERE tune_id = $1::text))
          AND "aiProvider" = 'astria' AND "trainingJobId" = $1::text ORDER BY id`,
      [tuneId],
    );
  } catch (error) {
    log?.warn({ tuneId, err: (error as Error).message }, 'could not read the tune lookup table; searching the app table');
    return [];
  }
}

/** The model read again, if it still trains this tune (a retrain re-points it to another). */
export async function selectModelOfTune(db: SqlExecutor, modelId: string, tuneId: string): Promise<ModelRow | undefined> {
  const rows = await db.query<ModelRow>(`SELECT ${MODEL_COLUMNS} FROM ai_models WHERE id = $1::text AND "trainingJobId" = $2::text`, [modelId, tuneId]);
  return rows[0];
}

/** Columns a transition may write, with the SQL that assigns a parameter to each. */
const COLUMN_ASSIGNMENTS: { [K in keyof Required<ModelChanges>]: (param: string) => string } = {
  // GREATEST: two racing writers can never move progress down.
  progress: (param) => `progress = GREATEST(progress, ${param}::int)`,
  estimatedTime: (param) => `"estimatedTime" = ${param}::int`,
  trainedAt: (param) => `"trainedAt" = (${param}::timestamptz AT TIME ZONE 'UTC')`,
  modelUrl: (param) => `"modelUrl" = ${param}::text`,
  errorMessage: (param) => `"errorMessage" = ${param}::text`,
};

const RETURNING = `RETURNING id, "userId", status::text AS status, progress, "modelUrl",
  ("trainedAt" AT TIME ZONE 'UTC') AS "trainedAt", "errorMessage", "estimatedTime"`;

/**
 * `UPDATE ... WHERE id = $1 AND status = $from AND "trainingJobId" = $expected ...`: zero rows means
 * another writer got there first (a status change, a retrain onto another tune, a new error message).
 * A status change stamps `updatedAt` (Prisma's `@updatedAt` lives in the client, not the database);
 * a progress-only update leaves it, so it keeps meaning "last status change".
 */
export async function compareAndSetModel(tx: SqlExecutor, transition: Transition, now: Date): Promise<UpdatedModel | null> {
  const params: unknown[] = [transition.modelId, transition.from, transition.expected.trainingJobId, transition.expected.errorMessage];
  const param = (value: unknown) => `$${params.push(value)}`;
  const assignments: string[] = [];
  if (transition.to !== transition.from) {
    // The enum's value by its label, whatever the enum type is named: a parameter typed `text` (Prisma
    // before 7 types every string so) is not assignable to an enum column.
    assignments.push(
      `status = (SELECT label FROM unnest(enum_range(status)) AS label WHERE label::text = ${param(transition.to)}::text)`,
      `"updatedAt" = (${param(now.toISOString())}::timestamptz AT TIME ZONE 'UTC')`,
    );
  }
  for (const [column, value] of Object.entries(transition.changes) as [keyof ModelChanges, unknown][]) {
    if (value === undefined) continue;
    assignments.push(COLUMN_ASSIGNMENTS[column](param(value instanceof Date ? value.toISOString() : value)));
  }
  if (assignments.length === 0) return null;
  const rows = await tx.query<UpdatedModel>(
    `UPDATE ai_models SET ${assignments.join(', ')}
      WHERE id = $1::text AND status::text = $2::text AND "trainingJobId" IS NOT DISTINCT FROM $3::text AND "errorMessage" IS NOT DISTINCT FROM $4::text
      ${RETURNING}`,
    params,
  );
  return rows[0] ?? null;
}

/**
 * Many models' progress-only changes in one statement, each a compare-and-set like
 * `compareAndSetModel`'s (status, tune and message as decided); progress never moves down, and a row
 * another transaction holds locked is skipped, not waited for (one locked row must not hold the
 * others). `updatedAt` is left. Returns the rows updated.
 */
export async function updateModelsProgress(tx: SqlExecutor, transitions: readonly Transition[]): Promise<UpdatedModel[]> {
  if (transitions.length === 0) return [];
  const column = <T>(pick: (transition: Transition) => T) => transitions.map(pick);
  return tx.query<UpdatedModel>(
    `WITH wanted AS (
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[], $7::boolean[])
         AS w(id, status, training_job_id, error_message, progress, estimated_time, sets_estimate)
     ), locked AS (
       SELECT m.id AS model_id, w.progress AS new_progress, w.estimated_time AS new_estimated_time, w.sets_estimate
         FROM ai_models m JOIN wanted w ON m.id = w.id
        WHERE m.status::text = w.status AND m."trainingJobId" IS NOT DISTINCT FROM w.training_job_id
          AND m."errorMessage" IS NOT DISTINCT FROM w.error_message
          FOR UPDATE OF m SKIP LOCKED
     )
     UPDATE ai_models SET progress = GREATEST(progress, coalesce(new_progress, progress)),
            "estimatedTime" = CASE WHEN sets_estimate THEN new_estimated_time ELSE "estimatedTime" END
       FROM locked WHERE id = model_id
     ${RETURNING}`,
    [
      column((t) => t.modelId),
      column((t) => t.from),
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
