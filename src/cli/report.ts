import type pg from 'pg';
import { UsageError } from './args.js';
import { listDeadDeliveries, type DeadDeliveries } from '../broadcast/dead-letter.js';
import { countCallbackOutcomes, DEFAULT_CALLBACK_GRACE_MS, type CallbackCounts } from '../db/callbacks.js';
import { DEFAULT_HOST_SCHEMA, type HostSchema } from '../db/host-names.js';
import { ownSchemaReady } from '../db/own-schema.js';
import { DEFAULT_ORPHAN_WINDOW_MS, selectOrphans } from '../db/orphans.js';
import { countTransitions, databaseNow, recoveryLag, slowestRecoveries } from '../db/report.js';

/** One slow recovery: Astria finished training long before the reconciler applied READY. */
export interface SlowRecovery {
  modelId: string;
  /** The Astria tune id (`modelUrl` of the READY event), when known. */
  tuneId: string | null;
  lagSeconds: number;
  trainedAt: string;
  /** When the database wrote the READY. */
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
  /**
   * Models training at Astria whose tune id the app never saved, created within RECONCILER_ORPHAN_WINDOW,
   * as they are now (whatever `since`): no tune matched them yet, or several did (the daemon's log
   * names the tunes). `models`: the newest 10.
   */
  orphans: { total: number; models: { modelId: string; status: string; createdAt: string }[] };
  /**
   * The app's generations (Astria prompts): status changes as `transitions`, and the verdicts on
   * COMPLETED as `callbacks`. Every key above is the models' (tunes').
   */
  generations: { transitions: Record<string, { webhook: number; reconciler: number }>; total: number; callbacks: CallbackCounts };
}

const SLOWEST = 10;
const ORPHANS_LISTED = 10;
/** Always listed, even at zero: the two outcomes an operator asks about. */
const ALWAYS_LISTED = ['READY', 'ERROR'];
const STATUS_ORDER = ['READY', 'ERROR', 'TRAINING', 'PROCESSING', 'UPLOADING', 'DELETED'];

const round = (value: number | null) => (value === null ? null : Math.round(value * 1000) / 1000);

/**
 * Reads the event log from `until - sinceMs` to `until`, times of the database's clock (`until`
 * defaults to the database's now): the transitions, the detection lag and the callback verdicts all
 * on the one clock the daemons' verdicts use, whatever the clock of the machine running the report.
 */
export async function buildReport(
  pool: pg.Pool,
  schema: string,
  sinceMs: number,
  until?: Date | number,
  callbackGraceMs = DEFAULT_CALLBACK_GRACE_MS,
  orphanWindowMs = DEFAULT_ORPHAN_WINDOW_MS,
  host: HostSchema = DEFAULT_HOST_SCHEMA,
): Promise<Report> {
  const range = { until: until === undefined ? await databaseNow(pool) : new Date(until), since: new Date(0) };
  // No event is older than the epoch; a window reaching further is a typo (and no valid Date).
  if (sinceMs > range.until.getTime()) {
    throw new UsageError(`--since reaches back before 1970, older than any event: use at most ${Math.floor(range.until.getTime() / 86_400_000)}d`);
  }
  range.since = new Date(range.until.getTime() - sinceMs);
  const report: Report = {
    since: range.since.toISOString(),
    until: range.until.toISOString(),
    transitions: zeroTransitions(),
    total: 0,
    lagSeconds: { p50: null, p90: null, p99: null, max: null },
    recoveries: 0,
    slowest: [],
    deadDeliveries: await listDeadDeliveries(pool, schema),
    callbacks: { lost: 0, late: 0, webhookFirst: 0, pending: 0, unrecorded: 0 },
    orphans: await currentOrphans(pool, host, orphanWindowMs),
    generations: { transitions: {}, total: 0, callbacks: { lost: 0, late: 0, webhookFirst: 0, pending: 0, unrecorded: 0 } },
  };
  // A database the daemon never ran on has no event log yet: nothing was applied. (A report writes nothing.)
  if (!(await ownSchemaReady(pool, schema))) return report;

  for (const row of await countTransitions(pool, schema, range)) {
    const entry = (report.transitions[row.to_status] ??= { webhook: 0, reconciler: 0 });
    if (row.source === 'webhook' || row.source === 'reconciler') entry[row.source] += row.n;
    report.total += row.n;
  }
  report.transitions = Object.fromEntries(Object.entries(report.transitions).sort(([a], [b]) => statusRank(a) - statusRank(b)));
  const lag = await recoveryLag(pool, schema, range);
  report.lagSeconds = { p50: round(lag.p50), p90: round(lag.p90), p99: round(lag.p99), max: round(lag.max) };
  report.recoveries = lag.n;
  report.slowest = (await slowestRecoveries(pool, schema, range, SLOWEST)).map((row) => ({
    modelId: row.model_id,
    tuneId: row.tune_id,
    lagSeconds: round(row.lag)!,
    trainedAt: row.trained_at.toISOString(),
    occurredAt: row.recorded_at.toISOString(),
  }));
  report.callbacks = await countCallbackOutcomes(pool, schema, range.since, range.until, callbackGraceMs);
  for (const row of await countTransitions(pool, schema, range, 'prompt')) {
    const entry = (report.generations.transitions[row.to_status] ??= { webhook: 0, reconciler: 0 });
    if (row.source === 'webhook' || row.source === 'reconciler') entry[row.source] += row.n;
    report.generations.total += row.n;
  }
  report.generations.callbacks = await countCallbackOutcomes(pool, schema, range.since, range.until, callbackGraceMs, 'prompt');
  return report;
}

async function currentOrphans(pool: pg.Pool, host: HostSchema, windowMs: number): Promise<Report['orphans']> {
  const orphans = await selectOrphans(pool, host, windowMs);
  return {
    total: orphans.length,
    models: orphans.slice(0, ORPHANS_LISTED).map((orphan) => ({ modelId: orphan.id, status: orphan.status, createdAt: new Date(orphan.createdAt).toISOString() })),
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
  lines.push('', ...formatCallbacks(report.callbacks, 'READY'));
  if (report.generations.total > 0) {
    const changes = Object.entries(report.generations.transitions).map(([status, { webhook, reconciler }]) => `${status} ${webhook + reconciler} (reconciler ${reconciler})`);
    lines.push('', `Generations: ${report.generations.total} status changes: ${changes.join(', ')}`, ...formatCallbacks(report.generations.callbacks, 'COMPLETED'));
  }
  lines.push('', ...formatDeadDeliveries(report.deadDeliveries));
  lines.push('', ...formatOrphans(report.orphans));
  return `${lines.join('\n')}\n`;
}

function formatCallbacks({ lost, late, webhookFirst, pending, unrecorded }: CallbackCounts, status: 'READY' | 'COMPLETED'): string[] {
  const lines = [`Astria callbacks (${status}): lost ${lost}, late ${late}, webhook first ${webhookFirst}`];
  if (lost > 0) lines.push(`  lost: the reconciler applied ${status} and no callback came within RECONCILER_CALLBACK_GRACE: check the callback URL`);
  if (pending > 0) lines.push(`  ${pending} recent recoveries not judged yet (their grace is still running)`);
  if (unrecorded > 0) lines.push(`  ${unrecorded} recoveries from before callbacks were recorded: neither lost nor late`);
  return lines;
}

function formatOrphans(orphans: Report['orphans']): string[] {
  if (orphans.total === 0) return ['Models without a tune id: none'];
  return [
    `Models without a tune id: ${orphans.total} (no tune matched them yet, or several did: the daemon's log names the tunes)`,
    ...table(
      [['model', 'status', 'created at'], ...orphans.models.map((orphan) => [orphan.modelId, orphan.status, orphan.createdAt])],
      [false, false, false],
    ).map((l) => `  ${l}`),
  ];
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
  options: { sinceMs: number; json: boolean; stdout: NodeJS.WritableStream; callbackGraceMs?: number; orphanWindowMs?: number; host?: HostSchema },
): Promise<number> {
  const report = await buildReport(pool, schema, options.sinceMs, undefined, options.callbackGraceMs, options.orphanWindowMs, options.host);
  options.stdout.write(options.json ? `${JSON.stringify(report)}\n` : formatReport(report));
  return 0;
}
