import type pg from 'pg';
import { withTransaction } from './transaction.js';

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
  ];
}

export async function ensureOwnSchema(pool: pg.Pool, schema: string): Promise<void> {
  await withTransaction(pool, async (client) => {
    await client.query(`SELECT pg_advisory_xact_lock(hashtext('astria_reconciler:schema:' || $1))`, [schema]);
    for (const statement of statements(schema)) await client.query(statement);
  });
}
