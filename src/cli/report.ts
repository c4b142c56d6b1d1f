import type pg from 'pg';
import { quoteIdentifier } from '../db/identifier.js';
import { UsageError } from './args.js';
import { listDeadDeliveries, type DeadDeliveries } from '../broadcast/dead-letter.js';
import { countCallbackOutcomes, DEFAULT_CALLBACK_GRACE_MS, type CallbackCounts } from '../db/callbacks.js';

/** One slow recovery: Astria finished training long before the reconciler applied READY. */
export interface SlowRecovery {
  modelId: string;
  /** The Astria tune id (`modelUrl` of the READY event), when known. */
  tuneId: string | null;
  lagSeconds: number;
  trainedAt: string;
  occurredAt: string;
}

/** `report --json`: the event log's counts and lags over `since`..`until`, `total` and the `slowest` recoveries. */
export interface Report {
  since: string;
  until: string;
  /** Status changes applied, by target status and by who applied them. */
  transitions: Record<string, { webhook: number; reconciler: number }>;
  total: number;
  /** Reconciler recoveries to READY: Astria's `trained_at` → applied. Null when there were none. */
  lagSeconds: { p50: number | null; p90: number | null; p99: number | null; max: number | null };
  /** How many recoveries the lag figures cover. */
  recoveries: number;
  /** The 10 slowest of them, slowest first. */
  slowest: SlowRecovery[];
  /** Broadcast deliveries parked as dead (whenever they were), re-queued by `requeue-dead`. */
  deadDeliveries: DeadDeliveries;
  /**
   * Lost means lost: reconciler recoveries to READY whose callback never came within
   * RECONCILER_CALLBACK_GRACE (`lost`) or came after (`late`); READY the callback applied itself
   * (`webhookFirst`). `pending`: grace still running, no callback yet; `unrecorded`: from before callbacks were recorded.
   */
  callbacks: CallbackCounts;
}

const SLOWEST = 10;
/** Always listed, even at zero: the two outcomes an operator asks about. */
const ALWAYS_LISTED = ['READY', 'ERROR'];
const STATUS_ORDER = ['READY', 'ERROR', 'TRAINING', 'PROCESSING', 'UPLOADING', 'DELETED'];

const round = (value: number | null) => (value === null ? null : Math.round(value * 1000) / 1000);

/** Reads the event log from `now - sinceMs` to now. */
export async function buildReport(
  pool: pg.Pool,
  schema: string,
  sinceMs: number,
  now: Date | number,
  callbackGraceMs = DEFAULT_CALLBACK_GRACE_MS,
): Promise<Report> {
  const until = new Date(now);
  const since = new Date(until.getTime() - sinceMs);
  const window = [since.toISOString(), until.toISOString()];
  const empty: Report = {
    since: since.toISOString(),
    until: until.toISOString(),
    transitions: zeroTransitions(),
    total: 0,
    lagSeconds: { p50: null, p90: null, p99: null, max: null },
    recoveries: 0,
    slowest: [],
    deadDeliveries: await listDeadDeliveries(pool, schema),
    callbacks: { lost: 0, late: 0, webhookFirst: 0, pending: 0, unrecorded: 0 },
  };
  const events = `${quoteIdentifier(schema)}.events`;
  // A database the daemon never ran on has no event log yet: nothing was applied. (A report writes nothing.)
  const exists = await pool.query<{ found: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS found`, [events]);
  if (!exists.rows[0]?.found) return empty;

  const counts = await pool.query<{ to_status: string; source: string; n: number }>(
    `SELECT to_status, source, count(*)::int AS n
       FROM ${events}
      WHERE occurred_at >= $1 AND occurred_at <= $2
      GROUP BY to_status, source`,
    window,
  );
  const transitions = zeroTransitions();
  let total = 0;
  for (const row of counts.rows) {
    const entry = (transitions[row.to_status] ??= { webhook: 0, reconciler: 0 });
    if (row.source === 'webhook' || row.source === 'reconciler') entry[row.source] += row.n;
    total += row.n;
  }

  const recoveries = `
    FROM ${events}
   WHERE occurred_at >= $1 AND occurred_at <= $2
     AND source = 'reconciler' AND to_status = 'READY' AND trained_at IS NOT NULL`;
  const lagExpression = `GREATEST(0, extract(epoch FROM occurred_at - trained_at))::float8`;
  const lag = await pool.query<{ n: number; p50: number | null; p90: number | null; p99: number | null; max: number | null }>(
    `SELECT count(*)::int AS n,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY ${lagExpression}) AS p50,
            percentile_cont(0.9) WITHIN GROUP (ORDER BY ${lagExpression}) AS p90,
            percentile_cont(0.99) WITHIN GROUP (ORDER BY ${lagExpression}) AS p99,
            max(${lagExpression}) AS max
     ${recoveries}`,
    window,
  );
  const slowest = await pool.query<{ model_id: string; tune_id: string | null; lag: number; trained_at: Date; occurred_at: Date }>(
    `SELECT model_id, payload->'data'->>'modelUrl' AS tune_id, ${lagExpression} AS lag, trained_at, occurred_at
     ${recoveries}
     ORDER BY lag DESC, occurred_at DESC
     LIMIT ${SLOWEST}`,
    window,
  );

  const stats = lag.rows[0]!;
  const callbacks = await countCallbackOutcomes(pool, schema, since, until, callbackGraceMs);
  return {
    since: since.toISOString(),
    until: until.toISOString(),
    transitions: Object.fromEntries(Object.entries(transitions).sort(([a], [b]) => statusRank(a) - statusRank(b))),
    total,
    lagSeconds: { p50: round(stats.p50), p90: round(stats.p90), p99: round(stats.p99), max: round(stats.max) },
    recoveries: stats.n,
    slowest: slowest.rows.map((row) => ({
      modelId: row.model_id,
      tuneId: row.tune_id,
      lagSeconds: round(row.lag)!,
      trainedAt: row.trained_at.toISOString(),
      occurredAt: row.occurred_at.toISOString(),
    })),
    deadDeliveries: empty.deadDeliveries,
    callbacks,
  };
}

function zeroTransitions(): Report['transitions'] {
  return Object.fromEntries(ALWAYS_LISTED.map((status) => [status, { webhook: 0, reconciler: 0 }]));
}

function statusRank(status: string): number {
  const index = STATUS_ORDER.indexOf(status);
  return index === -1 ? STATUS_ORDER.length : index;
}

/** `12.3s`, `4m 05s`, `2h 03m`, `1d 04h`. */
function formatSeconds(seconds: number | null): string {
  if (seconds === null) return '-';
  if (seconds < 60) return `${seconds < 10 ? seconds.toFixed(1) : Math.round(seconds)}s`;
  const s = Math.round(seconds);
  const pad = (n: number) => String(n).padStart(2, '0');
  if (s < 3_600) return `${Math.floor(s / 60)}m ${pad(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3_600)}h ${pad(Math.floor((s % 3_600) / 60))}m`;
  return `${Math.floor(s / 86_400)}d ${pad(Math.floor((s % 86_400) / 3_600))}h`;
}

function table(rows: string[][], rightAligned: boolean[]): string[] {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  return rows.map((row) =>
    row
      .map((cell, column) => (rightAligned[column] ? cell.padStart(widths[column]!) : cell.padEnd(widths[column]!)))
      .join('  ')
      .trimEnd(),
  );
}

/** The human form of the report: small tables, one screen. */
export function formatReport(report: Report): string {
  const lines: string[] = [`Status changes applied from ${report.since} to ${report.until}`, ''];
  const statusRows = Object.entries(report.transitions).map(([status, by]) => [
    status,
    String(by.webhook),
    String(by.reconciler),
    String(by.webhook + by.reconciler),
  ]);
  lines.push(...table([['to', 'webhook', 'reconciler', 'total'], ...statusRows], [false, true, true, true]).map((l) => `  ${l}`));
  lines.push('');
  if (report.recoveries === 0) {
    lines.push('Recovered by the reconciler (trained_at -> READY applied): none');
  } else {
    const { p50, p90, p99, max } = report.lagSeconds;
    lines.push(
      `Recovered by the reconciler (trained_at -> READY applied): ${report.recoveries}`,
      `  detection lag  p50 ${formatSeconds(p50)}  p90 ${formatSeconds(p90)}  p99 ${formatSeconds(p99)}  max ${formatSeconds(max)}`,
      '',
      `Slowest recoveries:`,
      ...table(
        [
          ['model', 'tune', 'lag', 'applied at'],
          ...report.slowest.map((slow) => [slow.modelId, slow.tuneId ?? '-', formatSeconds(slow.lagSeconds), slow.occurredAt]),
        ],
        [false, false, true, false],
      ).map((l) => `  ${l}`),
    );
  }
  lines.push('', ...formatCallbacks(report.callbacks));
  lines.push('', ...formatDeadDeliveries(report.deadDeliveries));
  return `${lines.join('\n')}\n`;
}

function formatCallbacks({ lost, late, webhookFirst, pending, unrecorded }: CallbackCounts): string[] {
  const lines = [`Astria callbacks (READY): lost ${lost}, late ${late}, webhook first ${webhookFirst}`];
  if (lost > 0) lines.push('  lost: the reconciler applied READY and no callback came within RECONCILER_CALLBACK_GRACE: check the callback URL');
  if (pending > 0) lines.push(`  ${pending} recent recoveries not judged yet (their grace is still running)`);
  if (unrecorded > 0) lines.push(`  ${unrecorded} recoveries from before callbacks were recorded: neither lost nor late`);
  return lines;
}

function formatDeadDeliveries(dead: DeadDeliveries): string[] {
  if (dead.total === 0) return ['Dead broadcast deliveries: none'];
  const byTransport = Object.entries(dead.byTransport).map(([transport, n]) => `${transport} ${n}`).join(', ');
  return [
    `Dead broadcast deliveries: ${dead.total} (${byTransport}); send them again with: astria-reconciler requeue-dead`,
    ...table(
      [
        ['transport', 'model', 'event', 'attempts', 'parked at', 'last error'],
        ...dead.recent.map((d) => [d.transport, d.modelId, d.eventId, String(d.attempts), d.deadAt, (d.lastError ?? '-').slice(0, 80)]),
      ],
      [false, false, false, true, false, false],
    ).map((l) => `  ${l}`),
  ];
}

/**
 * The `report` subcommand: builds the report from the event log and prints it (JSON or tables) on
 * `stdout`. Returns the exit code.
 */
export async function runReport(
  pool: pg.Pool,
  schema: string,
  options: { sinceMs: number; json: boolean; now?: Date | number; stdout: NodeJS.WritableStream; callbackGraceMs?: number },
): Promise<number> {
  const now = new Date(options.now ?? Date.now()).getTime();
  // No event is older than the epoch; a window reaching further is a typo (and no valid Date).
  if (options.sinceMs > now) {
    throw new UsageError(`--since reaches back before 1970, older than any event: use at most ${Math.floor(now / 86_400_000)}d`);
  }
  const report = await buildReport(pool, schema, options.sinceMs, now, options.callbackGraceMs);
  options.stdout.write(options.json ? `${JSON.stringify(report)}\n` : formatReport(report));
  return 0;
}
