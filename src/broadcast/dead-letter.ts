import type pg from 'pg';
import type { AsyncBroadcastTransport } from '../config.js';
import { quoteIdentifier } from '../db/identifier.js';

/** A delivery the dispatcher parked after the receiver kept rejecting or failing on it. */
export interface DeadDelivery {
  transport: string;
  eventId: string;
  modelId: string;
  attempts: number;
  lastError: string | null;
  deadAt: string;
}

export interface DeadDeliveries {
  /** Parked deliveries per transport, every async transport listed (0 when none). */
  byTransport: Record<AsyncBroadcastTransport, number>;
  total: number;
  /** The most recently parked ones, newest first. */
  recent: DeadDelivery[];
}

const RECENT = 10;

async function deliveriesTableExists(db: pg.Pool, schema: string): Promise<boolean> {
  const { rows } = await db.query<{ found: boolean }>(
    `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($1) AND attname = 'dead_at' AND NOT attisdropped) AS found`,
    [`${quoteIdentifier(schema)}.deliveries`],
  );
  return rows[0]?.found ?? false;
}

/** What `report` lists: counts per transport and the latest parked deliveries with their last error. */
export async function listDeadDeliveries(db: pg.Pool, schema: string): Promise<DeadDeliveries> {
  const result: DeadDeliveries = { byTransport: { http: 0, redis: 0 }, total: 0, recent: [] };
  // A database the daemon never ran on (or ran on before dead letters existed) has none.
  if (!(await deliveriesTableExists(db, schema))) return result;
  const counts = await db.query<{ transport: AsyncBroadcastTransport; n: number }>(
    `SELECT transport, count(*)::int AS n FROM ${quoteIdentifier(schema)}.deliveries WHERE dead_at IS NOT NULL AND delivered_at IS NULL GROUP BY transport`,
  );
  for (const { transport, n } of counts.rows) {
    result.byTransport[transport] = n;
    result.total += n;
  }
  const recent = await db.query<{ transport: string; event_id: string; model_id: string; attempts: number; last_error: string | null; dead_at: string }>(
    `SELECT d.transport, e.event_id::text, e.model_id, d.attempts, d.last_error,
            to_char(d.dead_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS dead_at
       FROM ${quoteIdentifier(schema)}.deliveries d JOIN ${quoteIdentifier(schema)}.events e ON e.seq = d.event_seq
      WHERE d.dead_at IS NOT NULL AND d.delivered_at IS NULL
      ORDER BY d.dead_at DESC, d.event_seq DESC
      LIMIT ${RECENT}`,
  );
  result.recent = recent.rows.map((row) => ({
    transport: row.transport,
    eventId: row.event_id,
    modelId: row.model_id,
    attempts: row.attempts,
    lastError: row.last_error,
    deadAt: row.dead_at,
  }));
  return result;
}

/**
 * `requeue-dead`: parked deliveries (of one transport, or all) become pending again with a fresh
 * attempt count and age, so the dispatchers of running daemons send them within a poll. Returns how
 * many were re-queued per transport.
 */
export async function requeueDeadDeliveries(
  db: pg.Pool,
  schema: string,
  transport: AsyncBroadcastTransport | null,
): Promise<Record<AsyncBroadcastTransport, number>> {
  const requeued: Record<AsyncBroadcastTransport, number> = { http: 0, redis: 0 };
  if (!(await deliveriesTableExists(db, schema))) return requeued;
  const { rows } = await db.query<{ transport: AsyncBroadcastTransport; n: number }>(
    `WITH requeued AS (
       UPDATE ${quoteIdentifier(schema)}.deliveries
          SET dead_at = NULL, attempts = 0, next_attempt_at = now(), queued_at = now()
        WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND ($1::text IS NULL OR transport = $1)
       RETURNING transport)
     SELECT transport, count(*)::int AS n FROM requeued GROUP BY transport`,
    [transport],
  );
  for (const row of rows) requeued[row.transport] = row.n;
  return requeued;
}
