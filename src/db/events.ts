import type pg from 'pg';
import type { SqlExecutor } from './executor.js';
import { quoteIdentifier } from './identifier.js';

/** An event as the log stores it: its columns, and the whole event as published (`payload`). */
export interface EventRecord {
  eventId: string;
  /** What changed: a model ('tune', the default) or a generation ('prompt'). */
  kind?: 'tune' | 'prompt';
  /** A generation's event names its generation; its model may be none. */
  generationId?: string | null;
  /** A generation's event: its Astria prompt id. */
  remoteId?: string | null;
  modelId: string | null;
  userId: string;
  fromStatus: string;
  toStatus: string;
  source: string;
  payload: unknown;
  trainedAt: string | null;
  /** The writer's time, as the event publishes it; the database stamps `recorded_at` itself. */
  occurredAt: Date;
}

/** Appends the event to the log; returns its `seq` (the order deliveries follow). */
export async function appendEvent(tx: SqlExecutor, schema: string, event: EventRecord): Promise<string> {
  const rows = await tx.query<{ seq: string }>(
    `INSERT INTO ${quoteIdentifier(schema)}.events
       (event_id, model_id, user_id, from_status, to_status, source, payload, trained_at, occurred_at, kind, generation_id, remote_id)
     VALUES ($1::uuid, $2::text, $3::text, $4::text, $5::text, $6::text, $7::jsonb, $8::timestamptz, $9::timestamptz, $10::text, $11::text, $12::text)
     RETURNING seq`,
    [
      event.eventId,
      event.modelId,
      event.userId,
      event.fromStatus,
      event.toStatus,
      event.source,
      JSON.stringify(event.payload),
      event.trainedAt,
      event.occurredAt.toISOString(),
      event.kind ?? 'tune',
      event.generationId ?? null,
      event.remoteId ?? null,
    ],
  );
  return rows[0]!.seq;
}

/** NOTIFY is queued until COMMIT: a rolled-back write sends nothing. */
export async function notifyEvent(tx: SqlExecutor, channel: string, payload: unknown): Promise<void> {
  await tx.execute('SELECT pg_notify($1::text, $2::text)', [channel, JSON.stringify(payload)]);
}

/** One NOTIFY per payload, in one statement (queued until COMMIT likewise). */
export async function notifyEvents(tx: SqlExecutor, channel: string, payloads: readonly unknown[]): Promise<void> {
  if (payloads.length === 0) return;
  await tx.execute('SELECT pg_notify($1::text, payload) FROM unnest($2::text[]) AS payload', [channel, payloads.map((payload) => JSON.stringify(payload))]);
}

/** Starts receiving the events NOTIFYed on `channel` on this connection (a dedicated one: the session keeps listening). */
export async function listenForEvents(client: pg.ClientBase, channel: string): Promise<void> {
  await client.query(`LISTEN ${quoteIdentifier(channel)}`);
}

/** A round trip: notifications committed before it have been delivered to this connection once it returns. */
export async function flushNotifications(client: pg.ClientBase): Promise<void> {
  await client.query('SELECT 1');
}

/** How our event log names each kind's row, and the status that is its failure. */
const FAILURE_OF_KIND = {
  tune: { rowColumn: 'model_id', failed: 'ERROR' },
  prompt: { rowColumn: 'generation_id', failed: 'FAILED' },
} as const;

/**
 * Whether this product set the row's failure (a model's ERROR, a generation's FAILED): the latest
 * event of our log for it is that failure, with the message the row still holds (an app rewriting
 * the message makes the failure its own).
 */
export async function latestEventIsOwnFailure(
  db: SqlExecutor,
  schema: string,
  kind: keyof typeof FAILURE_OF_KIND,
  rowId: string,
  errorMessage: string | null,
): Promise<boolean> {
  const { rowColumn, failed } = FAILURE_OF_KIND[kind];
  const rows = await db.query<{ own: boolean }>(
    `SELECT e.to_status = '${failed}' AND e.payload->'data'->>'errorMessage' IS NOT DISTINCT FROM $2::text AS own
       FROM ${quoteIdentifier(schema)}.events e WHERE e.${rowColumn} = $1::text AND e.kind = '${kind}' ORDER BY e.seq DESC LIMIT 1`,
    [rowId, errorMessage],
  );
  return rows[0]?.own === true;
}

/**
 * Deletes up to `batchSize` events older than `olderThanMs` (by `occurred_at`, against the database
 * clock) whose every delivery is done, or that never had one; rows a dispatcher holds locked are
 * skipped. Returns how many were deleted.
 */
export async function deleteDeliveredEvents(pool: pg.Pool, schema: string, olderThanMs: number, batchSize: number): Promise<number> {
  const own = quoteIdentifier(schema);
  const { rowCount } = await pool.query(
    `WITH doomed AS (
       SELECT e.seq
         FROM ${own}.events e
        WHERE e.occurred_at < now() - $1 * interval '1 millisecond'
          AND NOT EXISTS (
            SELECT 1 FROM ${own}.deliveries d WHERE d.event_seq = e.seq AND d.delivered_at IS NULL)
        ORDER BY e.occurred_at
        LIMIT $2
        FOR UPDATE OF e SKIP LOCKED
     )
     DELETE FROM ${own}.events e USING doomed WHERE e.seq = doomed.seq`,
    [olderThanMs, batchSize],
  );
  return rowCount ?? 0;
}
