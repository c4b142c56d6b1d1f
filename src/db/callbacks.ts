import type pg from 'pg';
import { quoteIdentifier } from './identifier.js';

/** Anything that runs one statement: a `pg.Pool`, a client, or the app's own database seam. */
export interface Queryable {
  query(sql: string, params?: unknown[]): Promise<unknown>;
}

/**
 * A callback that arrived at most this long before the reconciler's write raced it (both saw the
 * trained tune; the reconciler's compare-and-set won): it was not lost, so it counts late.
 */
const RACE_SLACK_MS = 60_000;
/** `RECONCILER_CALLBACK_GRACE`'s default. */
export const DEFAULT_CALLBACK_GRACE_MS = 10 * 60_000;

/**
 * Records that Astria's callback for this tune reached us, whoever received it (the sidecar's webhook
 * or the app's route). The leader compares these with the reconciler's transitions. A failure to
 * record is logged, never the callback's failure: the status change matters more than the statistic.
 */
export async function recordCallbackArrival(
  db: Queryable,
  schema: string,
  tuneId: number | string,
  receivedAt: Date,
  log?: { warn(object: object, message: string): void },
): Promise<boolean> {
  try {
    await db.query(`INSERT INTO ${quoteIdentifier(schema)}.callbacks (tune_id, received_at) VALUES ($1::text, $2::timestamptz)`, [String(tuneId), receivedAt.toISOString()]);
    return true;
  } catch (error) {
    log?.warn({ tuneId: String(tuneId), err: (error as Error).message }, 'could not record the callback arrival');
    return false;
  }
}

/**
 * The first callback for the tune of event `e` that arrived from `RACE_SLACK_MS` before its write to
 * the grace after it, as `cb.first` (null when none): what makes a reconciler READY late, not lost.
 */
function firstCallbackFor(schema: string, graceParam: string, slackParam: string): string {
  return `LEFT JOIN LATERAL (
         SELECT min(c.received_at) AS first FROM ${quoteIdentifier(schema)}.callbacks c
          WHERE c.tune_id = e.payload->'data'->>'modelUrl'
            AND c.received_at >= e.occurred_at - ${slackParam} * interval '1 millisecond'
            AND c.received_at <= e.occurred_at + ${graceParam} * interval '1 millisecond'
       ) cb ON e.source = 'reconciler'`;
}

/**
 * Gives every reconciler READY not yet judged its verdict, once, in the database (so a failover never
 * counts one twice): `late` as soon as a callback for its tune arrived (from a minute before the
 * write to `graceMs` after it), `lost` once `graceMs` passed without one. Transitions from before
 * callbacks were recorded are left alone. Returns how many of each were judged now.
 */
export async function classifyReconcilerRecoveries(
  pool: pg.Pool,
  schema: string,
  graceMs: number,
  now: Date,
): Promise<{ lost: number; late: number }> {
  const { rows } = await pool.query<{ outcome: 'lost' | 'late' }>(
    `INSERT INTO ${quoteIdentifier(schema)}.callback_outcomes (event_seq, outcome, classified_at)
     SELECT e.seq, CASE WHEN cb.first IS NULL THEN 'lost' ELSE 'late' END, $3::timestamptz
       FROM ${quoteIdentifier(schema)}.events e
       ${firstCallbackFor(schema, '$1', '$2')}
      WHERE e.source = 'reconciler' AND e.to_status = 'READY'
        AND e.occurred_at >= (SELECT started_at FROM ${quoteIdentifier(schema)}.callback_recording)
        AND NOT EXISTS (SELECT 1 FROM ${quoteIdentifier(schema)}.callback_outcomes o WHERE o.event_seq = e.seq)
        AND (cb.first IS NOT NULL OR e.occurred_at + $1 * interval '1 millisecond' <= $3::timestamptz)
     ON CONFLICT (event_seq) DO NOTHING
     RETURNING outcome`,
    [graceMs, RACE_SLACK_MS, now.toISOString()],
  );
  return { lost: rows.filter((row) => row.outcome === 'lost').length, late: rows.filter((row) => row.outcome === 'late').length };
}

export interface CallbackCounts {
  /** Reconciler recoveries whose callback never came within the grace. */
  lost: number;
  /** Reconciler recoveries whose callback came after (the reconciler was first). */
  late: number;
  /** READY applied by a callback: the webhook was first, nothing was lost. */
  webhookFirst: number;
  /** Reconciler recoveries whose grace is still running, with no callback yet. */
  pending: number;
  /** Reconciler recoveries from before callbacks were recorded: neither lost nor late. */
  unrecorded: number;
}

/**
 * The verdicts on READY transitions applied in `[since, until]`, for `report`. Those no leader judged
 * yet (a `--once` with no daemon running, or a leader judging next interval) are judged here the same
 * way, as of `until`, without writing: the leader's counters stay its own.
 */
export async function countCallbackOutcomes(pool: pg.Pool, schema: string, since: Date, until: Date, graceMs: number): Promise<CallbackCounts> {
  const window = [since.toISOString(), until.toISOString()];
  const recorded = await pool.query<{ found: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS found`, [`${quoteIdentifier(schema)}.callback_outcomes`]);
  if (!recorded.rows[0]?.found) {
    // A log written before callbacks were recorded: every reconciler recovery is of unknown verdict.
    const { rows } = await pool.query<{ webhook: number; reconciler: number }>(
      `SELECT count(*) FILTER (WHERE source = 'webhook')::int AS webhook, count(*) FILTER (WHERE source = 'reconciler')::int AS reconciler
         FROM ${quoteIdentifier(schema)}.events WHERE to_status = 'READY' AND occurred_at >= $1 AND occurred_at <= $2`,
      window,
    );
    return { lost: 0, late: 0, webhookFirst: rows[0]!.webhook, pending: 0, unrecorded: rows[0]!.reconciler };
  }
  const { rows } = await pool.query<CallbackCounts>(
    `SELECT count(*) FILTER (WHERE verdict = 'lost')::int AS lost,
            count(*) FILTER (WHERE verdict = 'late')::int AS late,
            count(*) FILTER (WHERE source = 'webhook')::int AS "webhookFirst",
            count(*) FILTER (WHERE verdict = 'pending')::int AS pending,
            count(*) FILTER (WHERE verdict = 'unrecorded')::int AS unrecorded
       FROM (
         SELECT e.source, CASE
                  WHEN e.source <> 'reconciler' THEN NULL
                  WHEN o.outcome IS NOT NULL THEN o.outcome
                  WHEN e.occurred_at < r.started_at THEN 'unrecorded'
                  WHEN cb.first IS NOT NULL THEN 'late'
                  WHEN e.occurred_at + $3 * interval '1 millisecond' <= $2::timestamptz THEN 'lost'
                  ELSE 'pending'
                END AS verdict
           FROM ${quoteIdentifier(schema)}.events e
           CROSS JOIN ${quoteIdentifier(schema)}.callback_recording r
           LEFT JOIN ${quoteIdentifier(schema)}.callback_outcomes o ON o.event_seq = e.seq
           ${firstCallbackFor(schema, '$3', '$4')}
          WHERE e.to_status = 'READY' AND e.occurred_at >= $1 AND e.occurred_at <= $2
       ) verdicts`,
    [...window, graceMs, RACE_SLACK_MS],
  );
  return rows[0]!;
}
