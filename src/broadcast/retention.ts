import type pg from 'pg';
import { quoteIdentifier } from '../db/identifier.js';

/**
 * Deletes events older than `olderThanMs` (by `occurred_at`, against the database clock) whose every
 * delivery is done, or that never had one (`pg` only). An event some transport still owes stays,
 * whatever its age: retention never loses a broadcast. Works in batches of `batchSize`, each its own
 * short statement, so it never holds many locks or a long transaction on the app's database; rows a
 * dispatcher has locked are skipped until the next run. Returns how many events were deleted.
 */
export async function pruneDeliveredEvents(
  pool: pg.Pool,
  schema: string,
  olderThanMs: number,
  batchSize = 500,
): Promise<number> {
  return deleteInBatches(
    pool,
    `WITH doomed AS (
       SELECT e.seq
         FROM ${quoteIdentifier(schema)}.events e
        WHERE e.occurred_at < now() - $1 * interval '1 millisecond'
          AND NOT EXISTS (
            SELECT 1 FROM ${quoteIdentifier(schema)}.deliveries d WHERE d.event_seq = e.seq AND d.delivered_at IS NULL)
        ORDER BY e.occurred_at
        LIMIT $2
        FOR UPDATE OF e SKIP LOCKED
     )
     DELETE FROM ${quoteIdentifier(schema)}.events e USING doomed WHERE e.seq = doomed.seq`,
    olderThanMs,
    batchSize,
  );
}

/**
 * Deletes the record of callback arrivals older than `olderThanMs` (by `received_at`, against the
 * database clock), in batches like the events: the lost/late verdict needs only the minutes around a
 * transition, and the table grows with every callback. Walks the primary key (ids rise with arrival),
 * so a batch reads little beyond the rows it deletes. Returns how many were deleted.
 */
export async function pruneCallbackArrivals(pool: pg.Pool, schema: string, olderThanMs: number, batchSize = 500): Promise<number> {
  return deleteInBatches(
    pool,
    `DELETE FROM ${quoteIdentifier(schema)}.callbacks c
      WHERE c.id IN (
        SELECT id FROM ${quoteIdentifier(schema)}.callbacks
         WHERE received_at < now() - $1 * interval '1 millisecond'
         ORDER BY id
         LIMIT $2
         FOR UPDATE SKIP LOCKED)`,
    olderThanMs,
    batchSize,
  );
}

/** Runs a `DELETE` taking ($1 age in ms, $2 batch size) until a batch comes back short; the total deleted. */
async function deleteInBatches(pool: pg.Pool, sql: string, olderThanMs: number, batchSize: number): Promise<number> {
  let total = 0;
  for (;;) {
    const { rowCount } = await pool.query(sql, [olderThanMs, batchSize]);
    const deleted = rowCount ?? 0;
    total += deleted;
    if (deleted < batchSize) return total;
  }
}
