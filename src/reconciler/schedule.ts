import type { PagePlanItem } from './plan.js';

/** An in-flight row as the schedule knows it: which Astria object, and when the row last changed. */
export interface ScheduledRow {
  id: string;
  remoteId: number;
  /** `updatedAt`, epoch ms. */
  updatedAt: number;
  /** When the row itself says its object is due (the app's `estimatedTime`), epoch ms; null when it does not. */
  estimatedDueAt: number | null;
}

/**
 * When the daemon looks at in-flight rows (of one resource kind). Pure bookkeeping: the daemon feeds it the in-flight models
 * (from the database) and what each observation said, and asks when the next round is and which tunes
 * it must see.
 *
 * - A model is *stuck* once the webhook's grace is over: `RECONCILER_STUCK_AFTER` after its `updatedAt`
 *   or after this leader first saw it in flight, whichever comes first (an app that keeps touching the
 *   row cannot postpone it forever; a failover restarts that clock, and it still ends).
 * - A stuck model is looked at every `observeEveryMs` (a round) from a minute before its `eta` for as
 *   long as Astria says "still training" (tunes finish after their eta as often as not), and every
 *   round when there is no eta; while the eta is more than a minute away, at most every
 *   `longestWaitMs` (a tune finishing well before its eta waits that long at most). The eta is
 *   Astria's; when Astria gives none, the row's own estimate (the app's `estimatedTime` minutes after
 *   its `updatedAt`) stands in for it.
 * - A model's first look is at once, whatever its age: a tune trained at creation (FaceID, `gemini-2`,
 *   `fast`, reference tunes) is applied within a round. After that look, a model in its grace only
 *   rides along: a tune on a page fetched anyway costs nothing more to apply.
 * - A round that needed retries (429s, 5xx) doubles the cadence, up to `longestWaitMs`; a clean round
 *   halves it back. The request budget still caps every call on top of this.
 * - A model whose write or observation failed (a row the app keeps locked, a tune whose GET fails) is
 *   that model's failure: it backs off, `observeEveryMs` doubling per failure up to `maxBackoffMs`,
 *   and is neither looked at nor written meanwhile; one that succeeds again is back on the cadence.
 */
export interface ScheduleOptions {
  observeEveryMs: number;
  /** Longest wait between two looks at a stuck model (`RECONCILER_INTERVAL`). */
  longestWaitMs: number;
  stuckAfterMs: number;
  /** Longest wait after failures of the same model (default 5 min). */
  maxBackoffMs?: number;
}

/** Where a model stands after failures: `retry` once its backoff is over, `backing-off` until then. */
export type FailureState = 'none' | 'retry' | 'backing-off';

interface Entry {
  remoteId: number;
  updatedAt: number;
  firstSeenAt: number;
  nextLookAt: number;
  lastProgressWriteAt: number;
  /** When Astria expects its tune done (epoch ms), null when unknown. */
  dueAt: number | null;
  /** When the row itself expects it done (the app's estimate), the fallback when Astria gives no eta. */
  estimatedDueAt: number | null;
  /** Astria was asked about it at least once by this leader (its first look ignores the grace). */
  looked: boolean;
  /** Failed writes or observations in a row. */
  failures: number;
}

const DEFAULT_MAX_BACKOFF_MS = 5 * 60_000;
/** From this long before a tune's eta (and after it, and without one) it is looked at every round. */
export const DUE_MARGIN_MS = 60_000;
/** A model's progress-only writes (a NOTIFY each, batched per round) come at most this often. */
export const PROGRESS_WRITE_EVERY_MS = 60_000;

export class ObservationSchedule {
  private readonly entries = new Map<string, Entry>();
  private readonly maxBackoffMs: number;
  private slowdown = 1;
  private lastRoundAt = -Infinity;

  constructor(private readonly options: ScheduleOptions) {
    this.maxBackoffMs = options.maxBackoffMs ?? DEFAULT_MAX_BACKOFF_MS;
  }

  get size(): number {
    return this.entries.size;
  }

  /** The wait between two rounds now: the setting, slowed after rate limiting. */
  get cadenceMs(): number {
    return Math.min(this.options.longestWaitMs, this.options.observeEveryMs * this.slowdown);
  }

  /** Brings the schedule in line with the database: new models are due once stuck, gone ones are forgotten. */
  sync(inFlight: Iterable<ScheduledRow>, now: number): void {
    const present = new Set<string>();
    for (const model of inFlight) {
      present.add(model.id);
      const entry = this.entries.get(model.id);
      if (!entry || entry.remoteId !== model.remoteId) {
        this.entries.set(model.id, {
          remoteId: model.remoteId,
          updatedAt: model.updatedAt,
          firstSeenAt: now,
          nextLookAt: now,
          lastProgressWriteAt: -Infinity,
          dueAt: null,
          estimatedDueAt: model.estimatedDueAt,
          looked: false,
          failures: 0,
        });
      } else {
        entry.updatedAt = model.updatedAt;
        entry.estimatedDueAt = model.estimatedDueAt;
      }
    }
    for (const id of this.entries.keys()) if (!present.has(id)) this.entries.delete(id);
  }

  /** The Astria ids of every row, weight 1 for those stuck and due now, 0 for those that only ride along. */
  roundItems(now: number): PagePlanItem[] {
    const byRemote = new Map<number, 0 | 1>();
    for (const entry of this.entries.values()) {
      const weight = this.lookDueAt(entry) <= now ? 1 : 0;
      byRemote.set(entry.remoteId, Math.max(byRemote.get(entry.remoteId) ?? 0, weight) as 0 | 1);
    }
    return [...byRemote].map(([id, weight]) => ({ id, weight }));
  }

  /** When the next round should start; null when no model is scheduled (nothing in flight: no calls). */
  nextRoundAt(): number | null {
    let due = Infinity;
    for (const entry of this.entries.values()) due = Math.min(due, this.lookDueAt(entry));
    if (due === Infinity) return null;
    return Math.max(due, this.lastRoundAt + this.cadenceMs);
  }

  roundStarted(now: number): void {
    this.lastRoundAt = now;
  }

  /** After a round: slower while Astria needed retries (429s, errors), back toward the setting when not. */
  roundFinished(options: { retried: boolean }): void {
    const most = Math.max(1, this.options.longestWaitMs / this.options.observeEveryMs);
    this.slowdown = options.retried ? Math.min(most, this.slowdown * 2) : Math.max(1, this.slowdown / 2);
  }

  /** What Astria said about when the model's tune is due (its `eta`); null when it says nothing. */
  dueAt(id: string, dueAt: number | null): void {
    const entry = this.entries.get(id);
    if (entry) entry.dueAt = dueAt;
  }

  /**
   * Astria says the tune is still training: looked at again next round, or, while its eta is more
   * than a minute away, at most every `longestWaitMs` until a minute before it (it only rides along
   * meanwhile).
   */
  stillTraining(id: string, now: number): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    entry.failures = 0;
    entry.looked = true;
    const next = now + this.cadenceMs;
    const dueAt = entry.dueAt ?? entry.estimatedDueAt;
    const watchFrom = dueAt === null ? -Infinity : dueAt - DUE_MARGIN_MS;
    entry.nextLookAt = watchFrom <= next ? next : Math.max(next, Math.min(now + this.options.longestWaitMs, watchFrom));
  }

  /** Its write or observation failed: it waits `observeEveryMs` doubled per failure in a row, up to `maxBackoffMs`. */
  failed(id: string, now: number): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    entry.failures += 1;
    entry.looked = true;
    entry.nextLookAt = now + Math.min(this.maxBackoffMs, this.options.observeEveryMs * 2 ** Math.min(entry.failures - 1, 20));
  }

  failureState(id: string, now: number): FailureState {
    const entry = this.entries.get(id);
    if (!entry || entry.failures === 0) return 'none';
    return entry.nextLookAt > now ? 'backing-off' : 'retry';
  }

  /** The model left flight (our transition, the webhook's, the app's). */
  forget(id: string): void {
    this.entries.delete(id);
  }

  /** A progress-only write (no status change) at most once a minute per model (the rules write only a step). */
  progressWriteDue(id: string, now: number): boolean {
    const entry = this.entries.get(id);
    return entry === undefined || now - entry.lastProgressWriteAt >= PROGRESS_WRITE_EVERY_MS;
  }

  progressWritten(id: string, now: number): void {
    const entry = this.entries.get(id);
    if (entry) entry.lastProgressWriteAt = now;
  }

  /** A follower forgets: if it becomes leader it starts from what the database says then. */
  clear(): void {
    this.entries.clear();
    this.slowdown = 1;
    this.lastRoundAt = -Infinity;
  }

  /** A row's first look is at once (a tune trained at creation is applied within a round); later ones wait out the grace. */
  private lookDueAt(entry: Entry): number {
    return entry.looked ? Math.max(entry.nextLookAt, this.graceEnd(entry)) : entry.nextLookAt;
  }

  private graceEnd(entry: Entry): number {
    return Math.min(entry.updatedAt, entry.firstSeenAt) + this.options.stuckAfterMs;
  }
}
