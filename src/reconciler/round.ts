import pLimit from 'p-limit';
import type pg from 'pg';
import type { AstriaClient } from '../astria/client.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { RuleOptions } from '../status/rules.js';
import type { InFlightIndex } from './inflight-index.js';
import { observe, type ObserveReport } from './observe.js';
import type { PagePlanItem } from './plan.js';
import type { HostRow, RemoteObservation, ResourceKind, StatusChange } from './resource.js';
import { settle, WRITE_EVERYTHING, type ChangeWriter, type Outcome, type WritePolicy } from './settle.js';

export interface RoundDeps<Change> {
  pool: pg.Pool;
  astria: AstriaClient;
  /** Null in a dry run: nothing is written. */
  writer: ChangeWriter<Change> | null;
  log: Logger;
  clock: Clock;
}

export interface RoundOptions<Row extends HostRow> {
  /** The Astria ids of the in-flight rows: weight 1 must be seen this round, weight 0 only if on a page anyway. */
  items: readonly PagePlanItem[];
  /** The rows settled with what is seen, by their Astria ids (kept current with the round's writes). */
  rows: InFlightIndex<Row>;
  rules: RuleOptions;
  /** Ids one list page spans, as last measured (120 when the account's objects are dense in id). */
  idsPerPage: number;
  /** Single GETs in flight at once. */
  concurrency: number;
  maxNotFoundShare: number;
  /** False: single GETs only (the benchmarks compare the two). Default true. */
  listPages?: boolean;
  /** Aborting stops the round: Astria calls under way or queued are cut short, writes under way finish, nothing more starts. */
  signal?: AbortSignal;
  /** Default: every decided change is written with the round. */
  policy?: WritePolicy;
  /** Writes the policy puts aside (a retry after failures). */
  aside?: WritesAside;
  /** Every row's outcome, as it is known (a write put aside reports when it ends). */
  onOutcome(row: Row, outcome: Outcome): void;
  /** What Astria said about when a seen row's object is due (its `eta`; null when it says nothing). */
  onDueAt?(rowId: string, dueAt: number | null): void;
}

export interface RoundReport extends ObserveReport {
  /** The signal aborted the round before it ended. */
  interrupted: boolean;
}

/**
 * Pages or GETs whose rows are still being settled before the next page is fetched: when the writes
 * are slower than Astria, the round waits for them instead of holding every page's tunes and rows.
 */
const BATCHES_AHEAD = 4;
/** Concurrent database writes of a round (the pool holds 10). */
const WRITE_CONCURRENCY = 8;
/** Writes aside at once, beside the round's 8. */
const ASIDE_WRITE_CONCURRENCY = 2;

/**
 * Writes of rows retrying after a failed write (a row the app keeps locked waits out the lock timeout
 * each time): they run beside the rounds, not in them, so they neither take a healthy row's slot nor
 * hold a round up; a row whose write is under way here is left out of the rounds until it ends. The
 * daemon keeps one for its lifetime and waits for it at shutdown.
 */
export class WritesAside {
  private readonly slots = pLimit(ASIDE_WRITE_CONCURRENCY);
  private readonly underway = new Map<string, Promise<void>>();

  has(rowId: string): boolean {
    return this.underway.has(rowId);
  }

  start(rowId: string, write: () => Promise<void>): void {
    const done = this.slots(write)
      .catch(() => undefined) // `write` reports its own outcome
      .finally(() => this.underway.delete(rowId));
    this.underway.set(rowId, done);
  }

  async settled(): Promise<void> {
    await Promise.all(this.underway.values());
  }
}

/**
 * One round of the engine: observe (observe.ts) the objects of `items`, and as each answer comes,
 * settle (settle.ts) the rows of `rows` waiting on it; the database is only written, never read per
 * page. Progress-only changes are written together at the end of the round, in one transaction.
 * Every row's outcome goes to `onOutcome`: a row whose object could not be seen is `unobserved`, a
 * write that failed is `failed`. Astria's 401 ends the round (after the writes under way) and is
 * thrown; an abort ends it quietly (`interrupted`).
 */
export async function runRound<Row extends HostRow, Remote, Change extends StatusChange>(
  kind: ResourceKind<Row, Remote, Change>,
  deps: RoundDeps<Change>,
  options: RoundOptions<Row>,
): Promise<RoundReport> {
  const policy = options.policy ?? WRITE_EVERYTHING;
  const writes = pLimit(WRITE_CONCURRENCY);
  const settling = new Set<Promise<void>>();
  const unobserved = new Map<string, number[]>();
  const progress: { row: Row; change: Change }[] = [];
  let fatal: { error: unknown } | null = null;
  const aborted = () => options.signal?.aborted === true;
  const track = (work: Promise<void>) => {
    const settled: Promise<void> = work.catch((error: unknown) => void (fatal ??= { error })).finally(() => settling.delete(settled));
    settling.add(settled);
  };

  const settleBatch = async (observations: Map<number, RemoteObservation<Remote>>) => {
    const writesUnderway: Promise<void>[] = [];
    for (const [id, observation] of observations) {
      for (const row of options.rows.rowsOf(id)) {
        if (options.aside?.has(row.id)) continue; // its write aside is still under way
        if (observation.kind === 'seen') options.onDueAt?.(row.id, kind.dueAtOf?.(observation.remote) ?? null);
        const settled = settle(kind, deps, row, observation, options.rules, policy);
        if (settled === null) continue;
        if ('outcome' in settled) options.onOutcome(row, settled.outcome);
        else if ('progress' in settled) progress.push({ row, change: settled.progress });
        else {
          const write = async () => {
            const outcome = await settled.write();
            if (outcome.kind === 'observed' && outcome.wrote !== null) options.rows.update(kind.after(row, settled.change));
            options.onOutcome(row, outcome);
          };
          if (settled.lane === 'aside' && options.aside) options.aside.start(row.id, write);
          else writesUnderway.push(writes(write));
        }
      }
    }
    await Promise.all(writesUnderway);
  };

  let report: ObserveReport | null = null;
  try {
    report = await observe(
      kind,
      deps.astria,
      {
        items: options.items,
        idsPerPage: options.idsPerPage,
        concurrency: options.concurrency,
        maxNotFoundShare: options.maxNotFoundShare,
        parentOf: (id) => options.rows.parentOf(id),
        listPages: options.listPages ?? true,
        signal: options.signal,
        halted: () => fatal !== null || aborted(),
      },
      {
        observed: (batch) => track(settleBatch(batch)),
        unobserved: (ids, reason) => {
          const known = unobserved.get(reason);
          if (known) known.push(...ids);
          else unobserved.set(reason, [...ids]);
        },
        ready: async () => {
          while (settling.size >= BATCHES_AHEAD) await Promise.race(settling);
        },
      },
    );
  } catch (error) {
    if (!aborted()) fatal ??= { error };
  } finally {
    await Promise.all([...settling]);
  }
  // The rows of the objects that could not be seen: each is told so (a stopped round leaves them for the next).
  if (fatal === null && !aborted()) {
    for (const [reason, ids] of unobserved) {
      for (const id of ids) for (const row of options.rows.rowsOf(id)) if (!options.aside?.has(row.id)) options.onOutcome(row, { kind: 'unobserved', reason });
    }
    if (progress.length > 0) await writeProgress(kind, deps, options, progress);
  }
  if (fatal !== null) throw (fatal as { error: unknown }).error;
  return { ...(report ?? emptyReport(options.idsPerPage)), interrupted: aborted() };
}

/**
 * The round's progress-only changes in one transaction (progress never moves down; a row another
 * writer changed or holds locked is left, `raced`). Should the database refuse, each row's write failed.
 */
async function writeProgress<Row extends HostRow, Remote, Change extends StatusChange>(
  kind: ResourceKind<Row, Remote, Change>,
  deps: RoundDeps<Change>,
  options: RoundOptions<Row>,
  progress: readonly { row: Row; change: Change }[],
): Promise<void> {
  let applied: boolean[];
  try {
    applied = await deps.writer!.applyProgress!(progress.map(({ change }) => change), 'reconciler');
  } catch (error) {
    const reason = `database refused the write: ${(error as Error).message}`;
    deps.log.warn({ [`${kind.rowName}s`]: progress.length, reason }, `could not write the progress of the round's ${kind.rowName}s`);
    for (const { row } of progress) options.onOutcome(row, { kind: 'failed', reason });
    return;
  }
  progress.forEach(({ row, change }, index) => {
    if (!applied[index]) return options.onOutcome(row, { kind: 'raced' });
    options.rows.update(kind.after(row, change));
    options.onOutcome(row, { kind: 'observed', from: change.from, to: change.to, wrote: 'progress' });
  });
}

function emptyReport(idsPerPage: number): ObserveReport {
  return { listPages: 0, singleGets: 0, calls: 0, observed: 0, retried: false, idsPerPage, incomplete: null, listFailed: null, notFoundRefused: null };
}
