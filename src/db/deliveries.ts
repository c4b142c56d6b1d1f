import type pg from 'pg';
import type { SqlExecutor } from './executor.js';
import { quoteIdentifier } from './identifier.js';

/** One pending delivery per asynchronous transport, committed (or rolled back) with the event. */
export async function enqueueDeliveries(tx: SqlExecutor, schema: string, seq: string, transports: readonly string[]): Promise<void> {
  await tx.execute(`INSERT INTO ${quoteIdentifier(schema)}.deliveries (event_seq, transport) SELECT $1::bigint, unnest($2::text[])`, [seq, transports]);
}

export interface ClaimedDelivery<Payload> {
  seq: string;
  attempts: number;
  payload: Payload;
}

/**
 * Claims up to `batchSize` due deliveries of `transport`, each the earliest undelivered one of its
 * model, and reserves them for `leaseMs`; in `seq` order.
 *
 * The heads (one per model) come from one scan and a sort; only the first few due ones, in `seq`
 * order, are handed to the locking scan, so its filter stays cheap however long the backlog. The
 * conditions are repeated there: a row another dispatcher claimed meanwhile is re-checked on its
 * latest version when it is locked. (FOR UPDATE cannot be combined with DISTINCT ON.)
 */
export async function claimDeliveries<Payload>(
  pool: pg.Pool,
  schema: string,
  transport: string,
  batchSize: number,
  leaseMs: number,
): Promise<ClaimedDelivery<Payload>[]> {
  const own = quoteIdentifier(schema);
  const { rows } = await pool.query<ClaimedDelivery<Payload>>(
    `WITH claimable AS (
      SELECT d.event_seq
        FROM ${own}.deliveries d
       WHERE d.transport = $1
         AND d.event_seq = ANY (ARRAY(
               SELECT h.event_seq
                 -- One head per object, in order: a model's events, or a generation's.
                 FROM (SELECT DISTINCT ON (e.kind, COALESCE(e.generation_id, e.model_id)) hd.event_seq, hd.next_attempt_at
                         FROM ${own}.deliveries hd
                         JOIN ${own}.events e ON e.seq = hd.event_seq
                        WHERE hd.transport = $1 AND hd.delivered_at IS NULL AND hd.dead_at IS NULL
                        ORDER BY e.kind, COALESCE(e.generation_id, e.model_id), hd.event_seq) AS h
                WHERE h.next_attempt_at <= now()
                ORDER BY h.event_seq
                -- Room for the rows other replicas hold locked right now.
                LIMIT $2 * 4))
         AND d.delivered_at IS NULL
         AND d.dead_at IS NULL
         AND d.next_attempt_at <= now()
       ORDER BY d.event_seq
       LIMIT $2
       FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE ${own}.deliveries d
       SET attempts = d.attempts + 1,
           first_attempt_at = COALESCE(d.first_attempt_at, now()),
           last_attempt_at = now(),
           next_attempt_at = now() + $3 * interval '1 millisecond'
      FROM claimable c, ${own}.events e
     WHERE d.transport = $1 AND d.event_seq = c.event_seq AND e.seq = d.event_seq
    RETURNING d.event_seq::text AS seq, d.attempts, e.payload`,
    [transport, batchSize, leaseMs],
  );
  return rows.sort((a, b) => (BigInt(a.seq) < BigInt(b.seq) ? -1 : 1));
}

export interface DeliveryFailure {
  transport: string;
  seq: string;
  /** The attempt that failed: a row claimed again since (the lease ran out) is left to its new claim. */
  attempts: number;
  retryInMs: number;
  error: string;
  /** Park it once `attempts` reached `deadAfterAttempts` (the peer rejected it). */
  parksByAttempts: boolean;
  /** Park it once it was queued `deadAfterMs` ago (the peer rejected or failed on it). */
  parksByAge: boolean;
  deadAfterAttempts: number;
  deadAfterMs: number;
}

/** Records a failed attempt: retried after `retryInMs`, or parked as dead. Returns whether it was parked. */
export async function recordDeliveryFailure(pool: pg.Pool, schema: string, failure: DeliveryFailure): Promise<boolean> {
  const { rows } = await pool.query<{ dead: boolean }>(
    `UPDATE ${quoteIdentifier(schema)}.deliveries
        SET next_attempt_at = now() + $3 * interval '1 millisecond', last_error = $4,
            dead_at = CASE WHEN ($8 AND attempts >= $6) OR ($9 AND queued_at <= now() - $7 * interval '1 millisecond') THEN now() END
      WHERE transport = $1 AND event_seq = $2 AND delivered_at IS NULL AND attempts = $5
     RETURNING dead_at IS NOT NULL AS dead`,
    [
      failure.transport,
      failure.seq,
      failure.retryInMs,
      failure.error,
      failure.attempts,
      failure.deadAfterAttempts,
      failure.deadAfterMs,
      failure.parksByAttempts,
      failure.parksByAge,
    ],
  );
  return rows[0]?.dead === true;
}

export async function recordDelivered(pool: pg.Pool, schema: string, transport: string, seq: string): Promise<void> {
  await pool.query(
    `UPDATE ${quoteIdentifier(schema)}.deliveries SET delivered_at = now(), last_error = NULL
      WHERE transport = $1 AND event_seq = $2 AND delivered_at IS NULL`,
    [transport, seq],
  );
}

/** Pending deliveries of one transport (dead ones left out) and the age of the oldest in seconds, by the database clock. */
export async function pendingDeliveries(pool: pg.Pool, schema: string, transport: string): Promise<{ pending: number; oldestSeconds: number }> {
  const { rows } = await pool.query<{ pending: number; oldest: number }>(
    `SELECT count(*)::int AS pending, coalesce(extract(epoch FROM now() - min(queued_at)), 0)::float8 AS oldest
       FROM ${quoteIdentifier(schema)}.deliveries
      WHERE transport = $1 AND delivered_at IS NULL AND dead_at IS NULL`,
    [transport],
  );
  return { pending: rows[0]!.pending, oldestSeconds: Math.max(0, rows[0]!.oldest) };
}

export async function countDeadDeliveries(pool: pg.Pool, schema: string): Promise<{ transport: string; n: number }[]> {
  const { rows } = await pool.query<{ transport: string; n: number }>(
    `SELECT transport, count(*)::int AS n FROM ${quoteIdentifier(schema)}.deliveries WHERE dead_at IS NOT NULL AND delivered_at IS NULL GROUP BY transport`,
  );
  return rows;
}

export interface DeadDeliveryRow {
  transport: string;
  event_id: string;
  model_id: string;
  attempts: number;
  last_error: string | null;
  /** ISO 8601 in UTC, milliseconds. */
  dead_at: string;
}

/** The most recently parked deliveries, newest first, with their event. */
export async function recentDeadDeliveries(pool: pg.Pool, schema: string, limit: number): Promise<DeadDeliveryRow[]> {
  const own = quoteIdentifier(schema);
  const { rows } = await pool.query<DeadDeliveryRow>(
    `SELECT d.transport, e.event_id::text, e.model_id, d.attempts, d.last_error,
            to_char(d.dead_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS dead_at
       FROM ${own}.deliveries d JOIN ${own}.events e ON e.seq = d.event_seq
      WHERE d.dead_at IS NOT NULL AND d.delivered_at IS NULL
      ORDER BY d.dead_at DESC, d.event_seq DESC
      LIMIT $1`,
    [limit],
  );
  return rows;
}

/** Parked deliveries (of `transport`, or all) pending again with a fresh attempt count and age; how many per transport. */
export async function requeueDead(pool: pg.Pool, schema: string, transport: string | null): Promise<{ transport: string; n: number }[]> {
  const { rows } = await pool.query<{ transport: string; n: number }>(
    `WITH requeued AS (
       UPDATE ${quoteIdentifier(schema)}.deliveries
          SET dead_at = NULL, attempts = 0, first_attempt_at = NULL, next_attempt_at = now(), queued_at = now()
        WHERE dead_at IS NOT NULL AND delivered_at IS NULL AND ($1::text IS NULL OR transport = $1)
       RETURNING transport)
     SELECT transport, count(*)::int AS n FROM requeued GROUP BY transport`,
    [transport],
  );
  return rows;
}
