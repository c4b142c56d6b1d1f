import type pg from 'pg';
import { deleteCallbackArrivals } from '../db/callbacks.js';
import { deleteDeliveredEvents } from '../db/events.js';

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
  return deleteInBatches((batch) => deleteDeliveredEvents(pool, schema, olderThanMs, batch), batchSize);
}

/**
 * Deletes the record of callback arrivals older than `olderThanMs` (by `received_at`, against the
 * database clock), in batches like the events: the lost/late verdict needs only the minutes around a
 * transition, and the table grows with every callback. Walks the primary key (ids rise with arrival),
 * so a batch reads little beyond the rows it deletes. Returns how many were deleted.
 */
export async function pruneCallbackArrivals(pool: pg.Pool, schema: string, olderThanMs: number, batchSize = 500): Promise<number> {
  return deleteInBatches((batch) => deleteCallbackArrivals(pool, schema, olderThanMs, batch), batchSize);
}

/** Deletes batch after batch until one comes back short; the total deleted. */
async function deleteInBatches(deleteBatch: (batchSize: number) => Promise<number>, batchSize: number): Promise<number> {
  let total = 0;
  for (;;) {
    const deleted = await deleteBatch(batchSize);
    total += deleted;
    if (deleted < batchSize) return total;
  }
}
