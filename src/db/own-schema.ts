import type pg from 'pg';
import { executorFor, type Database } from './executor.js';
import { assertHostTable } from './host-check.js';
import { quoteIdentifier } from './identifier.js';

/**
 * Tables of our own, in a schema of our own so the app's `prisma migrate` never sees them. Every
 * statement is idempotent, and the whole set runs under a transaction-scoped advisory lock, so any
 * number of replicas can start at once.
 */
function statements(schema: string): string[] {
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

/** A name in `statements`: a table qualified by the quoted schema (which may hold spaces, dots, `""`), or an index's. */
const NAME = String.raw`((?:"(?:[^"]|"")*"\.)?\w+)`;

/** The relations `statements` create (tables and indexes), schema-qualified. */
function relations(schema: string): string[] {
  return statements(schema).flatMap((statement) => {
    const name = new RegExp(`^CREATE (?:TABLE|INDEX) IF NOT EXISTS ${NAME}`).exec(statement)?.[1];
    if (!name) return [];
    return [name.startsWith(`${schema}.`) ? name : `${schema}.${name}`];
  });
}

/** The columns `statements` add to existing tables, as [table, column] pairs. */
function addedColumns(schema: string): [string, string][] {
  return statements(schema).flatMap((statement): [string, string][] => {
    const match = new RegExp(`^ALTER TABLE ${NAME} ADD COLUMN IF NOT EXISTS (\\w+)`).exec(statement);
    return match ? [[match[1]!, match[2]!]] : [];
  });
}

/**
 * Creates our schema if anything of it is missing (a column added since included), but only beside
 * the app's `ai_models`: a wrong `DATABASE_URL` fails with HostTableMissingError and gets nothing of
 * ours. When it is all there nothing is run: PostgreSQL checks privileges before `IF NOT EXISTS`, so
 * a role that may only use the schema (created once by an administrator) could not even run the
 * no-op DDL.
 */
export async function ensureOwnSchema(database: pg.Pool | Database, schema: string): Promise<void> {
  // A bare pool (the sidecar's callers), or `{ pool }` / `{ prisma }` as the other entry points take.
  const db = executorFor('pool' in database || 'prisma' in database ? (database as Database) : { pool: database as pg.Pool });
  await assertHostTable(db);
  const quoted = quoteIdentifier(schema);
  const columns = addedColumns(quoted);
  const rows = await db.query<{ complete: boolean }>(
    `SELECT (SELECT bool_and(to_regclass(name) IS NOT NULL) FROM unnest($1::text[]) AS name)
        AND (SELECT coalesce(bool_and(EXISTS (
               SELECT 1 FROM pg_attribute a WHERE a.attrelid = to_regclass(c.tbl) AND a.attname = c.col AND NOT a.attisdropped)), true)
               FROM unnest($2::text[], $3::text[]) AS c(tbl, col)) AS complete`,
    [relations(quoted), columns.map(([table]) => table), columns.map(([, column]) => column)],
  );
  if (rows[0]?.complete) return;
  await db.transaction(async (client) => {
    await client.execute(`SELECT pg_advisory_xact_lock(hashtext('astria_reconciler:schema:' || $1::text))`, [schema]);
    for (const statement of statements(quoted)) await client.execute(statement);
  });
}
