import type pg from 'pg';
import type { AsyncBroadcastTransport } from '../config.js';
import { countDeadDeliveries, recentDeadDeliveries, requeueDead } from '../db/deliveries.js';
import { ownSchemaReady } from '../db/own-schema.js';

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

/** What `report` lists: counts per transport and the latest parked deliveries with their last error. */
export async function listDeadDeliveries(db: pg.Pool, schema: string): Promise<DeadDeliveries> {
  const result: DeadDeliveries = { byTransport: { http: 0, redis: 0 }, total: 0, recent: [] };
  // A database the daemon never ran on has none.
  if (!(await ownSchemaReady(db, schema))) return result;
  for (const { transport, n } of await countDeadDeliveries(db, schema)) {
    result.byTransport[transport as AsyncBroadcastTransport] = n;
    result.total += n;
  }
  result.recent = (await recentDeadDeliveries(db, schema, RECENT)).map((row) => ({
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
  if (!(await ownSchemaReady(db, schema))) return requeued;
  for (const row of await requeueDead(db, schema, transport)) requeued[row.transport as AsyncBroadcastTransport] = row.n;
  return requeued;
}
