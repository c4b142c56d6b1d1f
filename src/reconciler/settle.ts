import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import type { RuleOptions } from '../status/rules.js';
import type { HostRow, RemoteObservation, ResourceKind, StatusChange } from './resource.js';

/** What one look at one in-flight row came to: the one outcome type of `--once` and the daemon. */
export type Outcome =
  /** Astria answered; `to` is the row's status after this look (`from` when unchanged, the would-be status in a dry run), `wrote` what was written. */
  | { kind: 'observed'; from: string; to: string; wrote: 'status' | 'progress' | null }
  /** Another writer changed the row between our read and our write: nothing written by us. */
  | { kind: 'raced' }
  /** The row could not be checked: its Astria id is unusable, or its write failed (that row's failure alone). */
  | { kind: 'failed'; reason: string }
  /** Astria's answer for the row could not be had (its GET failed) or was held back (the not-found guard). */
  | { kind: 'unobserved'; reason: string };

/** Where a decided change is written; null in a dry run. */
export interface ChangeWriter<Change> {
  apply(change: Change, source: 'reconciler'): Promise<{ applied: boolean }>;
  /**
   * A round's progress-only changes (no status change) in one transaction: whether each was applied,
   * in order. Absent: they are written one by one with `apply`, like status changes.
   */
  applyProgress?(changes: readonly Change[], source: 'reconciler'): Promise<boolean[]>;
}

export interface SettleDeps<Change> {
  writer: ChangeWriter<Change> | null;
  clock: Clock;
  log: Logger;
}

/** The daemon's say in a row's write; `--once` writes whatever was decided. */
export interface WritePolicy {
  /** Whether a progress-only write (no status change) is due for this row now. */
  progressWriteDue(rowId: string): boolean;
  /**
   * How the row's write runs: with the round, aside from it (a retry after failures: a row the app
   * keeps locked must not hold the round up), or not at all this round (backing off after failures).
   */
  lane(rowId: string): 'round' | 'aside' | 'later';
}

export const WRITE_EVERYTHING: WritePolicy = { progressWriteDue: () => true, lane: () => 'round' };

/**
 * Settling one row: the rules decide from what Astria said, the writer applies (a compare-and-set:
 * a row changed meanwhile is `raced`). Any error of the write is that row's failure. Null when the
 * policy defers the write (the outcome comes from the later write); `progress` when the change only
 * moves progress and the writer takes those batched (the round writes them together).
 */
export function settle<Row extends HostRow, Remote, Change extends StatusChange>(
  kind: ResourceKind<Row, Remote, Change>,
  deps: SettleDeps<Change>,
  row: Row,
  observation: RemoteObservation<Remote>,
  rules: RuleOptions,
  policy: WritePolicy,
): { outcome: Outcome } | { write: () => Promise<Outcome>; lane: 'round' | 'aside'; change: Change } | { progress: Change } | null {
  const change = kind.decide(row, observation, new Date(deps.clock.now()), rules);
  const progressOnly = change !== null && change.to === change.from;
  if (change === null || (progressOnly && !policy.progressWriteDue(row.id))) {
    return { outcome: { kind: 'observed', from: row.status, to: row.status, wrote: null } };
  }
  const lane = policy.lane(row.id);
  // Riding along on a page while backing off: its write waits for the backoff to end.
  if (lane === 'later') return null;
  if (progressOnly && deps.writer?.applyProgress) return { progress: change };
  return { lane, change, write: () => write(deps, kind.rowName, row, change, progressOnly) };
}

async function write<Change extends StatusChange>(deps: SettleDeps<Change>, rowName: string, row: HostRow, change: Change, progressOnly: boolean): Promise<Outcome> {
  const { writer, log } = deps;
  const idKey = `${rowName}Id`;
  let outcome: Outcome;
  if (writer === null) outcome = { kind: 'observed', from: change.from, to: change.to, wrote: null };
  else {
    try {
      const result = await writer.apply(change, 'reconciler');
      outcome = result.applied ? { kind: 'observed', from: change.from, to: change.to, wrote: progressOnly ? 'progress' : 'status' } : { kind: 'raced' };
    } catch (error) {
      outcome = { kind: 'failed', reason: `database refused the write: ${(error as Error).message}` };
    }
  }
  if (outcome.kind === 'observed' && !progressOnly) {
    log.info({ [idKey]: row.id, from: change.from, to: change.to, dryRun: writer === null }, `${rowName} status reconciled`);
  } else if (outcome.kind === 'raced') {
    log.debug({ [idKey]: row.id, from: change.from }, `${rowName} changed meanwhile; left to the writer that won`);
  } else if (outcome.kind === 'failed') log.warn({ [idKey]: row.id, reason: outcome.reason }, `could not write ${rowName}`);
  return outcome;
}
