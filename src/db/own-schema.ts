import type pg from 'pg';
import { executorFor, type Database } from './executor.js';

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
    // What the dispatcher scans: only undelivered rows, so the index stays small however long the log.
    `CREATE INDEX IF NOT EXISTS deliveries_pending_idx ON ${schema}.deliveries (transport, next_attempt_at)
       WHERE delivered_at IS NULL`,
    // Retention asks "has this event an undelivered row?" per event.
    `CREATE INDEX IF NOT EXISTS deliveries_undelivered_event_idx ON ${schema}.deliveries (event_seq)
       WHERE delivered_at IS NULL`,
  ];
}

/** The relations `statements` create (tables and indexes), schema-qualified. */
function relations(schema: string): string[] {
  return statements(schema).flatMap((statement) => {
    const name = /^CREATE (?:TABLE|INDEX) IF NOT EXISTS (\S+)/.exec(statement)?.[1];
    if (!name) return [];
    return [name.includes('.') ? name : `${schema}.${name}`];
  });
}

/**
 * Creates our schema if anything of it is missing. When it is all there nothing is run: PostgreSQL
 * checks privileges before `IF NOT EXISTS`, so a role that may only use the schema (created once by
 * an administrator) could not even run the no-op DDL.
 */
export async function ensureOwnSchema(database: pg.Pool | Database, schema: string): Promise<void> {
  // A bare pool (the sidecar's callers), or `{ pool }` / `{ prisma }` as the other entry points take.
  const db = executorFor('pool' in database || 'prisma' in database ? (database as Database) : { pool: database as pg.Pool });
  const rows = await db.query<{ complete: boolean }>(
    'SELECT bool_and(to_regclass(name) IS NOT NULL) AS complete FROM unnest($1::text[]) AS name',
    [relations(schema)],
  );
  if (rows[0]?.complete) return;
  await db.transaction(async (client) => {
    await client.execute(`SELECT pg_advisory_xact_lock(hashtext('astria_reconciler:schema:' || $1))`, [schema]);
    for (const statement of statements(schema)) await client.execute(statement);
  });
}
