/**
 * Our schema as the release before numbered migrations created it (its own-schema.ts, word for word):
 * what a database upgraded to this release holds, with no migrations table.
 */
export function ownSchemaBeforeMigrations(schema: string): string[] {
  return [
    `CREATE SCHEMA IF NOT EXISTS ${schema}`,
    `CREATE TABLE IF NOT EXISTS ${schema}.events (
       seq bigserial PRIMARY KEY,
       event_id uuid NOT NULL UNIQUE,
       model_id text NOT NULL,
       user_id text NOT NULL,
       from_status text NOT NULL,
       to_status text NOT NULL,
       source text NOT NULL,
       payload jsonb NOT NULL,
       trained_at timestamptz,
       occurred_at timestamptz NOT NULL
     )`,
    `CREATE INDEX IF NOT EXISTS events_occurred_at_idx ON ${schema}.events (occurred_at)`,
    `CREATE INDEX IF NOT EXISTS events_model_idx ON ${schema}.events (model_id, seq)`,
    // The outbox of the asynchronous transports (http, redis): one row per event per transport, written
    // in the same transaction as the event. `pg` needs none: its NOTIFY is part of that transaction.
    `CREATE TABLE IF NOT EXISTS ${schema}.deliveries (
       event_seq bigint NOT NULL REFERENCES ${schema}.events (seq) ON DELETE CASCADE,
       transport text NOT NULL,
       attempts int NOT NULL DEFAULT 0,
       next_attempt_at timestamptz NOT NULL DEFAULT now(),
       delivered_at timestamptz,
       last_error text,
       PRIMARY KEY (transport, event_seq)
     )`,
    // Dead letter (added after the first release, so ALTERed in): `queued_at` starts the age limit and
    // restarts when an operator re-queues; `dead_at` parks a delivery the receiver kept rejecting.
    `ALTER TABLE ${schema}.deliveries ADD COLUMN IF NOT EXISTS queued_at timestamptz NOT NULL DEFAULT now()`,
    `ALTER TABLE ${schema}.deliveries ADD COLUMN IF NOT EXISTS dead_at timestamptz`,
    `CREATE INDEX IF NOT EXISTS deliveries_dead_idx ON ${schema}.deliveries (transport, dead_at) WHERE dead_at IS NOT NULL`,
    // What the dispatcher scans: only undelivered rows, so the index stays small however long the log.
    `CREATE INDEX IF NOT EXISTS deliveries_pending_idx ON ${schema}.deliveries (transport, next_attempt_at)
       WHERE delivered_at IS NULL`,
    // Retention asks "has this event an undelivered row?" per event.
    `CREATE INDEX IF NOT EXISTS deliveries_undelivered_event_idx ON ${schema}.deliveries (event_seq)
       WHERE delivered_at IS NULL`,
    // Every Astria callback that reached us (sidecar webhook or the app's route), so the leader can tell
    // a lost callback from a late one (src/db/callbacks.ts).
    `CREATE TABLE IF NOT EXISTS ${schema}.callbacks (
       id bigserial PRIMARY KEY,
       tune_id text NOT NULL,
       received_at timestamptz NOT NULL
     )`,
    `CREATE INDEX IF NOT EXISTS callbacks_tune_idx ON ${schema}.callbacks (tune_id, received_at)`,
    // The verdict on each reconciler READY: 'lost' or 'late', written once by the leader.
    `CREATE TABLE IF NOT EXISTS ${schema}.callback_outcomes (
       event_seq bigint PRIMARY KEY REFERENCES ${schema}.events (seq) ON DELETE CASCADE,
       outcome text NOT NULL CHECK (outcome IN ('lost', 'late')),
       classified_at timestamptz NOT NULL
     )`,
    // When callbacks began to be recorded: older reconciler transitions are neither lost nor late.
    `CREATE TABLE IF NOT EXISTS ${schema}.callback_recording (
       singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
       started_at timestamptz NOT NULL DEFAULT now()
     )`,
    `INSERT INTO ${schema}.callback_recording DEFAULT VALUES ON CONFLICT DO NOTHING`,
  ];
}
