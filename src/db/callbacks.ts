import { hostname } from 'node:os';
import type pg from 'pg';
import type { SqlExecutor } from './executor.js';
import { quoteIdentifier } from './identifier.js';

/**
 * A callback that arrived at most this long before the reconciler's write raced it (both saw the
 * trained tune; the reconciler's compare-and-set won): it was not lost, so it counts late.
 */
const RACE_SLACK_MS = 60_000;
/** `RECONCILER_CALLBACK_GRACE`'s default. */
export const DEFAULT_CALLBACK_GRACE_MS = 10 * 60_000;

/** This process, as callback arrivals name their receiver: host and pid, what an operator greps logs by. */
const THIS_PROCESS = `${hostname()}/${process.pid}`;

/** What a callback changed where it was received: models whose change was applied, and whose write the database refused. */
export interface CallbackAnswer {
  applied: number;
  refused: number;
}

/**
 * Records that Astria's callback for this tune reached us, whoever received it (the sidecar's webhook
 * or the app's route), stamped by the database's clock: the leader compares it with the database's
 * stamp of the reconciler's write, so replicas whose clocks disagree still agree on what came first.
 * `receivedAt` is that clock as the callback came in (`databaseClock`), before the writes it caused;
 * null stamps it now. The arrival names the process that received it and, when given, what it changed
 * (for `diagnose`). A failure to record is logged, never the callback's failure: the status change
 * matters more than the statistic.
 */
export async function recordCallbackArrival(
  db: SqlExecutor,
  schema: string,
  tuneId: number | string,
  receivedAt: string | null = null,
  answer: CallbackAnswer | null = null,
  log?: { warn(object: object, message: string): void },
  kind: 'tune' | 'prompt' = 'tune',
): Promise<boolean> {
  try {
    await db.execute(
      `INSERT INTO ${quoteIdentifier(schema)}.callbacks (tune_id, received_at, receiver, applied, refused, kind)
       VALUES ($1::text, COALESCE($2::timestamptz, clock_timestamp()), $3::text, $4::int, $5::int, $6::text)`,
      [String(tuneId), receivedAt, THIS_PROCESS, answer?.applied ?? null, answer?.refused ?? null, kind],
    );
    return true;
  } catch (error) {
    log?.warn({ kind, id: String(tuneId), err: (error as Error).message }, 'could not record the callback arrival');
    return false;
  }
}

/** The kinds of object a callback is about: a tune (models) or a prompt (generations). */
export const CALLBACK_KINDS = ['tune', 'prompt'] as const;
export type CallbackKind = (typeof CALLBACK_KINDS)[number];

/** An event `e` that a callback would have applied: a model's READY, a generation's COMPLETED. */
export const RECOVERY = `((e.kind = 'tune' AND e.to_status = 'READY') OR (e.kind = 'prompt' AND e.to_status = 'COMPLETED'))`;

/**
 * The first callback for the object of event `e` that arrived from `RACE_SLACK_MS` before the database
 * wrote it to the grace after, as `cb.first` (null when none): what makes a reconciler READY late, not lost.
 */
function firstCallbackFor(schema: string, graceParam: string, slackParam: string): string {
  return `LEFT JOIN LATERAL (
         SELECT min(c.received_at) AS first FROM ${quoteIdentifier(schema)}.callbacks c
          WHERE c.kind = e.kind AND c.tune_id = CASE WHEN e.kind = 'prompt' THEN e.remote_id ELSE e.payload->'data'->>'modelUrl' END
            AND c.received_at >= e.recorded_at - ${slackParam} * interval '1 millisecond'
            AND c.received_at <= e.recorded_at + ${graceParam} * interval '1 millisecond'
       ) cb ON e.source = 'reconciler'`;
}

/**
 * How long after the database stamped an event its transaction may still commit: the judging window
 * reaches this far behind the grace, so such an event, invisible when its time passed, is still judged.
 * Reconciler READYs are written by our own connections, whose statements time out after 30 s, in a
 * transaction of a few statements: ten minutes covers it with room.
 */
const COMMIT_SLACK_MS = 10 * 60_000;
/**
 * The most of the log one judgement reads: a leader catching up on weeks (after an upgrade, or a long
 * stop) does it a day a judgement, each well inside the statement timeout, never one statement that
 * times out again every interval.
 */
const CATCH_UP_SPAN_MS = 24 * 3_600_000;

/**
 * Gives every reconciler READY not yet judged its verdict, once, in the database (so a failover never
 * counts one twice): `late` as soon as a callback for its tune arrived (from a minute before the
 * write to `graceMs` after it), `lost` once `graceMs` passed without one. Every time compared is the
 * database's (its stamps, its `now()`): no replica's clock decides. Transitions from before callbacks
 * were recorded are left alone. Only READYs from `judged_from` on are read (over the index of
 * reconciler READYs, at most a day of them), and the same statement moves `judged_from` up to the grace
 * and the commit slack before now (or a day on, catching up): every READY older than that has its
 * verdict, so a run reads the last minutes of the log whatever its length. Returns how many of each were judged now.
 */
export async function classifyReconcilerRecoveries(pool: pg.Pool, schema: string, graceMs: number): Promise<Record<CallbackKind, { lost: number; late: number }>> {
  const own = quoteIdentifier(schema);
  const { rows } = await pool.query<{ outcome: 'lost' | 'late'; kind: CallbackKind }>(
    `WITH judged AS (
       INSERT INTO ${own}.callback_outcomes (event_seq, outcome, classified_at)
       SELECT e.seq, CASE WHEN cb.first IS NULL THEN 'lost' ELSE 'late' END, now()
         FROM ${own}.events e
         ${firstCallbackFor(schema, '$1', '$2')}
        WHERE e.source = 'reconciler' AND e.to_status IN ('READY', 'COMPLETED') AND ${RECOVERY}
          AND e.recorded_at >= (SELECT GREATEST(started_at, judged_from) FROM ${own}.callback_recording)
          AND e.recorded_at < (SELECT GREATEST(started_at, judged_from) FROM ${own}.callback_recording) + $4 * interval '1 millisecond'
          AND (cb.first IS NOT NULL OR e.recorded_at + $1 * interval '1 millisecond' <= now())
       -- A recovery judged already keeps its verdict. (No anti-join on the verdicts: planned while the
       -- table looks empty, it would scan it once per recovery of a catch-up.)
       ON CONFLICT (event_seq) DO NOTHING
       RETURNING event_seq, outcome
     ), advanced AS (
       UPDATE ${own}.callback_recording
          SET judged_from = GREATEST(judged_from, LEAST(GREATEST(started_at, judged_from) + $4 * interval '1 millisecond', now() - ($1 + $3) * interval '1 millisecond'))
     )
     SELECT judged.outcome, e.kind FROM judged JOIN ${own}.events e ON e.seq = judged.event_seq`,
    [graceMs, RACE_SLACK_MS, COMMIT_SLACK_MS, CATCH_UP_SPAN_MS],
  );
  const count = (kind: CallbackKind, outcome: 'lost' | 'late') => rows.filter((row) => row.kind === kind && row.outcome === outcome).length;
  return { tune: { lost: count('tune', 'lost'), late: count('tune', 'late') }, prompt: { lost: count('prompt', 'lost'), late: count('prompt', 'late') } };
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
 * The verdicts on READY transitions the database wrote in `[since, until]` (its times, as `report`
 * reads them). Those no leader judged yet (a `--once` with no daemon running, or a leader judging next
 * interval) are judged here the same way, as of `until`, without writing: the leader's counters stay
 * its own.
 */
export async function countCallbackOutcomes(pool: pg.Pool, schema: string, since: Date, until: Date, graceMs: number, kind: CallbackKind = 'tune'): Promise<CallbackCounts> {
  const own = quoteIdentifier(schema);
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
                  WHEN e.recorded_at < r.started_at THEN 'unrecorded'
                  WHEN cb.first IS NOT NULL THEN 'late'
                  WHEN e.recorded_at + $3 * interval '1 millisecond' <= $2::timestamptz THEN 'lost'
                  ELSE 'pending'
                END AS verdict
           FROM ${own}.events e
           CROSS JOIN ${own}.callback_recording r
           LEFT JOIN ${own}.callback_outcomes o ON o.event_seq = e.seq
           ${firstCallbackFor(schema, '$3', '$4')}
          WHERE ${RECOVERY} AND e.kind = $5::text AND e.recorded_at >= $1 AND e.recorded_at <= $2
       ) verdicts`,
    [since.toISOString(), until.toISOString(), graceMs, RACE_SLACK_MS, kind],
  );
  return rows[0]!;
}

/**
 * The database's clock, as ISO text (a driver adapter would shift a timestamptz read in another time
 * zone): a callback's arrival is stamped with it as it comes in, before the writes it causes.
 */
export async function databaseClock(db: SqlExecutor): Promise<string> {
  const rows = await db.query<{ now: string }>(`SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS now`);
  return rows[0]!.now;
}

/**
 * Deletes up to `batchSize` callback arrivals older than `olderThanMs` (by `received_at`, against the
 * database clock), walking the primary key (ids rise with arrival) so a batch reads little beyond the
 * rows it deletes. Returns how many were deleted.
 */
export async function deleteCallbackArrivals(pool: pg.Pool, schema: string, olderThanMs: number, batchSize: number): Promise<number> {
  const own = quoteIdentifier(schema);
  const { rowCount } = await pool.query(
    `DELETE FROM ${own}.callbacks c
      WHERE c.id IN (
        SELECT id FROM ${own}.callbacks
         WHERE received_at < now() - $1 * interval '1 millisecond'
         ORDER BY id
         LIMIT $2
         FOR UPDATE SKIP LOCKED)`,
    [olderThanMs, batchSize],
  );
  return rowCount ?? 0;
}
