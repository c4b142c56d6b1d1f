/**
 * What keeps the database's work in step with the work to do, not with the history, and the facts an
 * operator asks about one callback or delivery:
 * - the leader judges lost callbacks from `judged_from` on (the database's time before which every
 *   reconciler recovery has its verdict), over an index of reconciler recoveries (a model's READY, a
 *   generation's COMPLETED) only;
 * - `tune_models` maps a tune id to the models training it, so a callback without `&model=` finds its
 *   model without scanning the app's table (a hint only: every hit is checked against `ai_models`);
 * - each callback arrival says which process received it and what it changed;
 * - each delivery says when it was first and last tried.
 */
export function costFollowsWork(schema: string): string[] {
  return [
    `ALTER TABLE ${schema}.callback_recording ADD COLUMN judged_from timestamptz`,
    `UPDATE ${schema}.callback_recording SET judged_from = started_at`,
    `ALTER TABLE ${schema}.callback_recording ALTER COLUMN judged_from SET DEFAULT now()`,
    `ALTER TABLE ${schema}.callback_recording ALTER COLUMN judged_from SET NOT NULL`,
    `CREATE INDEX events_reconciler_ready_idx ON ${schema}.events (recorded_at) WHERE source = 'reconciler' AND to_status IN ('READY', 'COMPLETED')`,
    `CREATE TABLE ${schema}.tune_models (
       tune_id text NOT NULL,
       model_id text NOT NULL,
       noted_at timestamptz NOT NULL DEFAULT now(),
       PRIMARY KEY (tune_id, model_id)
     )`,
    `CREATE INDEX tune_models_noted_at_idx ON ${schema}.tune_models (noted_at)`,
    // Null on arrivals recorded before this migration: unknown.
    `ALTER TABLE ${schema}.callbacks ADD COLUMN receiver text`,
    `ALTER TABLE ${schema}.callbacks ADD COLUMN applied int`,
    `ALTER TABLE ${schema}.callbacks ADD COLUMN refused int`,
    `ALTER TABLE ${schema}.deliveries ADD COLUMN first_attempt_at timestamptz`,
    `ALTER TABLE ${schema}.deliveries ADD COLUMN last_attempt_at timestamptz`,
  ];
}
