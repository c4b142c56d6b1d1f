import type pg from 'pg';
import type { SqlExecutor } from './executor.js';
import { quoteIdentifier } from './identifier.js';

/** A lookup entry older than this is dropped: by then its model settled long ago, and a miss only costs a scan. */
const KEEP_NOTES_MS = 7 * 24 * 3_600_000;

/** One model training one tune, as the lookup table holds it. */
export interface TuneModel {
  /** The model's id in the app's table. */
  id: string;
  /** The tune it trains. */
  remoteId: number | string;
}

/** Pairs each pool has written already, so a discovery every few seconds writes only the new ones. */
const noted = new WeakMap<pg.Pool, Map<string, Set<string>>>();

/**
 * Notes which models train which tune in our own lookup table (`tune_models`), so a callback without
 * `&model=` finds its models without scanning the app's table. The daemon's discovery calls this with
 * every in-flight row it re-read: only pairs this pool has not written yet are written (none at all
 * while nothing new appears), and writing new ones also drops notes older than a week. A failure is
 * logged and changes nothing else: the lookup is a hint, the app's table stays the truth.
 */
export async function noteTuneModels(
  pool: pg.Pool,
  schema: string,
  rows: readonly TuneModel[],
  log?: { warn(object: object, message: string): void },
): Promise<void> {
  let bySchema = noted.get(pool);
  if (!bySchema) noted.set(pool, (bySchema = new Map()));
  const before = bySchema.get(schema) ?? new Set<string>();
  const current = new Set(rows.map((row) => `${row.remoteId} ${row.id}`));
  const fresh = rows.filter((row) => !before.has(`${row.remoteId} ${row.id}`));
  if (fresh.length === 0) {
    bySchema.set(schema, current);
    return;
  }
  const own = quoteIdentifier(schema);
  try {
    await pool.query(
      `WITH dropped AS (DELETE FROM ${own}.tune_models WHERE noted_at < now() - $3 * interval '1 millisecond')
       INSERT INTO ${own}.tune_models (tune_id, model_id)
       SELECT * FROM unnest($1::text[], $2::text[]) ON CONFLICT DO NOTHING`,
      [fresh.map((row) => String(row.remoteId)), fresh.map((row) => row.id), KEEP_NOTES_MS],
    );
    bySchema.set(schema, current);
  } catch (error) {
    log?.warn({ err: (error as Error).message }, 'could not note the in-flight tunes; callbacks without &model= scan the app table meanwhile');
  }
}

/** Notes the models a scan of the app's table found for a tune (a callback's own write to the lookup table). */
export async function noteModelsOfTune(
  db: SqlExecutor,
  schema: string,
  tuneId: string,
  modelIds: readonly string[],
  log?: { warn(object: object, message: string): void },
): Promise<void> {
  try {
    await db.execute(
      `INSERT INTO ${quoteIdentifier(schema)}.tune_models (tune_id, model_id) SELECT $1::text, unnest($2::text[]) ON CONFLICT DO NOTHING`,
      [tuneId, modelIds],
    );
  } catch (error) {
    log?.warn({ tuneId, err: (error as Error).message }, 'could not note the models of the tune');
  }
}
