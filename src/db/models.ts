import type { ModelChanges, ModelRow, Transition, UpdatedModel } from '../model.js';
import type pg from 'pg';
import type { SqlExecutor } from './executor.js';
import { MODEL_COLUMNS } from './inflight.js';

/** The app's models of one Astria tune (only `modelId` when given), in any status, as the rules read them. */
export async function selectModelsOfTune(db: SqlExecutor, tuneId: string, modelId: string | null): Promise<ModelRow[]> {
  return db.query<ModelRow>(
    `SELECT ${MODEL_COLUMNS} FROM ai_models
      WHERE "aiProvider" = 'astria' AND "trainingJobId" = $1::text AND ($2::text IS NULL OR id = $2::text) ORDER BY id`,
    [tuneId, modelId],
  );
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

/** Every model with the columns a person looks at first (the demo's before and after), by id. */
export async function listModels(pool: pg.Pool): Promise<Record<string, unknown>[]> {
  const { rows } = await pool.query(
    `SELECT id, status::text, progress, "trainingJobId" AS tune, "estimatedTime" AS eta_min,
            "modelUrl", left("errorMessage", 48) AS "errorMessage"
       FROM ai_models ORDER BY id`,
  );
  return rows;
}
