/**
 * Lost and late callbacks are judged on one clock, the database's: replicas' clocks may disagree by
 * minutes. `recorded_at` is when the database wrote the event (`occurred_at` stays the writer's own
 * time, as published in the event); a callback's `received_at` is stamped by the database too. Events
 * written before this migration take their `occurred_at`, the best time known for them.
 */
export function databaseClock(schema: string): string[] {
  return [
    `ALTER TABLE ${schema}.events ADD COLUMN recorded_at timestamptz`,
    // New rows get the database's time, a previous release's too (it never names the column).
    `ALTER TABLE ${schema}.events ALTER COLUMN recorded_at SET DEFAULT clock_timestamp()`,
    `UPDATE ${schema}.events SET recorded_at = occurred_at WHERE recorded_at IS NULL`,
    `ALTER TABLE ${schema}.events ALTER COLUMN recorded_at SET NOT NULL`,
    `ALTER TABLE ${schema}.callbacks ALTER COLUMN received_at SET DEFAULT clock_timestamp()`,
  ];
}
