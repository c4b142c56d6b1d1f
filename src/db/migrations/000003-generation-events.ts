/**
 * The event log and the callback arrivals hold a second kind of object, the app's generations (Astria
 * prompts): `kind` says which ('tune' for every row written before), a generation's event names its
 * generation and the model it may belong to (none: `model_id` NULL). Prompt ids and tune ids are
 * separate sequences, so a callback's id is only ever read with its kind.
 */
export function generationEvents(schema: string): string[] {
  return [
    `ALTER TABLE ${schema}.events ADD COLUMN kind text NOT NULL DEFAULT 'tune'`,
    `ALTER TABLE ${schema}.events ADD COLUMN generation_id text`,
    // The Astria object the event's change came from (a generation's prompt id): lost and late
    // callbacks are judged by it. A tune event keeps it in its payload, as before.
    `ALTER TABLE ${schema}.events ADD COLUMN remote_id text`,
    `ALTER TABLE ${schema}.events ALTER COLUMN model_id DROP NOT NULL`,
    `CREATE INDEX events_generation_idx ON ${schema}.events (generation_id, seq) WHERE generation_id IS NOT NULL`,
    // `tune_id` holds the Astria id of the callback's object, of this kind.
    `ALTER TABLE ${schema}.callbacks ADD COLUMN kind text NOT NULL DEFAULT 'tune'`,
    `CREATE INDEX callbacks_kind_idx ON ${schema}.callbacks (kind, tune_id, received_at)`,
  ];
}
