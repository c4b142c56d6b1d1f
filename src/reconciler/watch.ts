import type pg from 'pg';
import type { AstriaClient } from '../astria/client.js';
import type { Clock } from '../clock.js';
import { ALL_IN_FLIGHT } from '../db/inflight.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { AstriaUnavailableError } from './loop-errors.js';
import { DENSE_IDS_PER_PAGE } from './plan.js';
import type { HostRow, ResourceKind, StatusChange } from './resource.js';
import { InFlightIndex, type IndexedRow } from './inflight-index.js';
import { runRound, WritesAside, type RoundDeps } from './round.js';
import { ObservationSchedule, type ScheduledRow } from './schedule.js';
import type { Outcome } from './settle.js';

export interface WatchOptions {
  /** How often the in-flight rows are re-read (capped at 5 s); the longest wait between two looks at a row. */
  intervalMs: number;
  stuckAfterMs: number;
  /** How often in-flight objects are observed (`RECONCILER_OBSERVE_EVERY`). */
  observeEveryMs: number;
  trainingTimeoutMs: number;
  concurrency: number;
  maxNotFoundShare: number;
  /** Told how many rows are in flight after each discovery and round (the models' gauge). */
  onInFlight?: (count: number) => void;
}

/**
 * In-flight rows are re-read at least this often (or every `RECONCILER_INTERVAL` when shorter): a row
 * already past its grace when it appears (written without bumping `updatedAt`) is seen within seconds.
 */
const MAX_DISCOVERY_EVERY_MS = 5_000;
/** A failing list is logged at most this often (rounds come every few seconds). */
const LIST_FAILURE_LOG_EVERY_MS = 60_000;

/**
 * The leader's watch over one resource kind's in-flight rows: discovery (the rows, re-read every few
 * seconds into the schedule and the in-memory index the rounds settle from: the only read of the
 * in-flight rows, however many pages a round fetches), and rounds of the engine over the rows the
 * schedule says are due, whose outcomes feed the schedule back. Rounds run one after the other, so
 * no row is checked twice at once. A row another writer changed (our compare-and-set lost) is dropped
 * until the next re-read brings it back as it is then, for a first look at once.
 */
export class InFlightWatch<Row extends HostRow, Remote, Change extends StatusChange> {
  private readonly schedule: ObservationSchedule;
  private readonly aside = new WritesAside();
  private readonly rows = new InFlightIndex<Row>();
  private idsPerPage = DENSE_IDS_PER_PAGE;
  private listFailureLoggedAt = -Infinity;
  /** When the rows are re-read next. */
  nextDiscoveryAt = 0;
  /** Whether the latest round of this term saw every object it had to. */
  completed = true;

  constructor(
    private readonly kind: ResourceKind<Row, Remote, Change>,
    private readonly deps: RoundDeps<Change> & {
      pool: pg.Pool;
      astria: AstriaClient;
      log: Logger;
      clock: Clock;
      metrics: Metrics;
      /** Told every in-flight row each discovery read (the tune lookup table is kept so). */
      discovered?: (rows: readonly ScheduledRow[]) => Promise<void>;
    },
    private readonly options: WatchOptions,
  ) {
    this.schedule = new ObservationSchedule({
      observeEveryMs: options.observeEveryMs,
      longestWaitMs: Math.max(options.intervalMs, options.observeEveryMs),
      stuckAfterMs: kind.waitsForWebhook ? options.stuckAfterMs : 0,
    });
  }

  /** When the next round is due; null when nothing is in flight. */
  nextRoundAt(): number | null {
    return this.schedule.nextRoundAt();
  }

  /** Brings the schedule and the index in line with the database (one read of the in-flight rows). */
  async discover(now: number): Promise<void> {
    const inFlight: ScheduledRow[] = [];
    const indexed: IndexedRow<Row>[] = [];
    for (const ref of await this.kind.inFlight.refs(this.deps.pool, ALL_IN_FLIGHT)) {
      // An unusable id is never sent to Astria; `--once` reports those.
      const remoteId = this.kind.parseRemoteId(ref.remoteId);
      if (remoteId === null) continue;
      inFlight.push({ id: ref.id, remoteId, updatedAt: ref.updatedAt, estimatedDueAt: this.kind.estimatedDueAtOf?.(ref.row, ref.updatedAt) ?? null });
      indexed.push({ row: ref.row, remoteId, parentRemoteId: ref.parentRemoteId ?? null });
    }
    await this.deps.discovered?.(inFlight);
    this.schedule.sync(inFlight, now);
    this.rows.replace(indexed);
    this.options.onInFlight?.(inFlight.length);
    this.nextDiscoveryAt = now + Math.min(this.options.intervalMs, MAX_DISCOVERY_EVERY_MS);
  }

  /**
   * One round over what is due at `now` (it stays the round's time, so a look late in the round still
   * keeps the next one on the cadence). `astriaCalled` is told when a request went out and none was
   * refused for the key. Throws when
   * the round as a whole failed: Astria answered nothing, or its list is missing (a wrong base URL),
   * or the signal aborted (its reason).
   */
  async round(now: number, signal: AbortSignal, astriaCalled: () => void): Promise<void> {
    const { schedule, deps } = this;
    this.completed = false;
    schedule.roundStarted(now);
    const unobserved: { rowId: string; reason: string }[] = [];
    const report = await runRound(this.kind, deps, {
      items: schedule.roundItems(now),
      rows: this.rows,
      rules: { trainingTimeoutMs: this.options.trainingTimeoutMs },
      idsPerPage: this.idsPerPage,
      concurrency: this.options.concurrency,
      maxNotFoundShare: this.options.maxNotFoundShare,
      // Stops on shutdown, and when leadership is lost mid-round (another replica now polls).
      signal,
      policy: {
        progressWriteDue: (rowId) => schedule.progressWriteDue(rowId, deps.clock.now()),
        lane: (rowId) => ({ none: 'round', retry: 'aside', 'backing-off': 'later' } as const)[schedule.failureState(rowId, now)],
      },
      aside: this.aside,
      onOutcome: (row, outcome) => (outcome.kind === 'unobserved' ? unobserved.push({ rowId: row.id, reason: outcome.reason }) : this.record(now, row.id, outcome)),
      onDueAt: (rowId, dueAt) => schedule.dueAt(rowId, dueAt),
    });
    if (report.interrupted) throw signal.reason;
    deps.metrics.passDuration.observe((deps.clock.now() - now) / 1000);
    this.options.onInFlight?.(schedule.size);
    this.idsPerPage = report.idsPerPage;
    schedule.roundFinished({ retried: report.retried || report.incomplete !== null || report.listFailed !== null });
    if (report.listFailed !== null && now - this.listFailureLoggedAt >= LIST_FAILURE_LOG_EVERY_MS) {
      this.listFailureLoggedAt = now;
      deps.log.warn({ reason: report.listFailed, singleGets: report.singleGets }, `${this.kind.name} list failed; its ${this.kind.name}s were fetched one by one`);
    }
    deps.log.debug({ ...report, inFlight: schedule.size, cadenceMs: schedule.cadenceMs }, 'observation round');
    if (report.calls > 0) astriaCalled();
    if (report.incomplete !== null) throw new AstriaUnavailableError(`${this.kind.name} list failed: ${report.incomplete}`);
    // Astria answered nothing (down, or failing every request): the round failed, not its rows, so
    // none backs off on its own (the loop's backoff spares Astria) and all are due once it answers.
    if (report.observed === 0 && unobserved.length > 0) {
      throw new AstriaUnavailableError(`Astria answered none of the round's requests (${report.listFailed ?? unobserved[0]!.reason})`);
    }
    // Not seen, or its 404 held back: that row backs off like any row whose look failed.
    for (const { rowId, reason } of unobserved) {
      deps.log.warn({ [`${this.kind.rowName}Id`]: rowId, reason }, `could not observe ${this.kind.name}`);
      schedule.failed(rowId, now);
    }
    if (report.notFoundRefused !== null) {
      deps.log.warn({ reason: report.notFoundRefused.reason, [`${this.kind.name}s`]: report.notFoundRefused.ids.length }, '404s not applied');
    }
    this.completed = report.notFoundRefused === null;
  }

  /** The next discovery comes at once (after a failure: what the database says may have changed). */
  rediscoverSoon(): void {
    this.nextDiscoveryAt = 0;
  }

  /** A follower forgets: if it becomes leader it starts from what the database says then. */
  forget(): void {
    this.schedule.clear();
    this.rows.replace([]);
    this.nextDiscoveryAt = 0;
    this.completed = true;
  }

  /** Waits for the writes put aside. */
  async settled(): Promise<void> {
    await this.aside.settled();
  }

  private record(now: number, rowId: string, outcome: Exclude<Outcome, { kind: 'unobserved' }>): void {
    const { schedule, deps } = this;
    // A write aside may end after its round: its backoff starts from when it failed.
    if (outcome.kind === 'failed') return schedule.failed(rowId, deps.clock.now());
    if (outcome.kind === 'raced') {
      // Another writer changed it (or holds it): what we hold is stale until the next re-read, which
      // brings it back as it is then. Its schedule is kept: a row the app keeps writing is not new
      // each time (a first look again, a grace restarted, would follow).
      this.rows.delete(rowId);
      return schedule.stillTraining(rowId, now);
    }
    if (!this.kind.inFlightStatuses.includes(outcome.to)) {
      this.rows.delete(rowId);
      return schedule.forget(rowId);
    }
    if (outcome.wrote === 'progress') schedule.progressWritten(rowId, deps.clock.now());
    schedule.stillTraining(rowId, now);
  }
}
