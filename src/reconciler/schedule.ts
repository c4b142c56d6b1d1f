import type { ModelOutcome } from './pass.js';

/**
 * When to look at each in-flight model next, like a controller's requeue-after. Pure bookkeeping:
 * the daemon feeds it what the database and Astria said, and asks which models are due.
 *
 * - New stuck models are due at once.
 * - A tune still training is looked at every interval, and just after its `eta` when that comes
 *   sooner: Astria's `eta` is only an estimate and tunes often finish before it, so waiting for it
 *   would let the lag grow past one interval. Due models are checked together, so the list scan
 *   usually makes that one call per page, not one per model.
 * - Past its `eta` (or with none) it is looked at every interval at first, then less often the longer
 *   Astria keeps saying "still training".
 * - A model Astria could not answer for backs off exponentially, up to `maxBackoffMs`.
 */
export interface ScheduleOptions {
  intervalMs: number;
  /** Look this long after `eta`: Astria sets `trained_at` a moment after it. */
  etaGraceMs?: number;
  /** Longest wait between two looks at one model. */
  maxBackoffMs?: number;
  /** Looks past `eta` at the interval before backing off. */
  overdueChecksAtInterval?: number;
}

interface Entry {
  dueAt: number;
  /** Consecutive looks with no news (still training past eta, or Astria failing). */
  streak: number;
}

export class Schedule {
  private readonly entries = new Map<string, Entry>();
  private readonly intervalMs: number;
  private readonly etaGraceMs: number;
  private readonly maxBackoffMs: number;
  private readonly overdueChecksAtInterval: number;

  constructor(options: ScheduleOptions) {
    this.intervalMs = options.intervalMs;
    this.etaGraceMs = options.etaGraceMs ?? 2_000;
    this.maxBackoffMs = options.maxBackoffMs ?? Math.max(options.intervalMs, 10 * 60_000);
    this.overdueChecksAtInterval = options.overdueChecksAtInterval ?? 4;
  }

  get size(): number {
    return this.entries.size;
  }

  /**
   * Brings the schedule in line with the database: models no longer in flight are forgotten, stuck
   * ones not yet known are due now. Known models keep their schedule even if their `updatedAt` moved
   * (a PROCESSING → TRAINING write must not restart the webhook's grace).
   */
  sync(inFlight: Iterable<{ id: string; stuck: boolean }>, now: number): void {
    const present = new Set<string>();
    for (const model of inFlight) {
      present.add(model.id);
      if (model.stuck && !this.entries.has(model.id)) this.entries.set(model.id, { dueAt: now, streak: 0 });
    }
    for (const id of this.entries.keys()) if (!present.has(id)) this.entries.delete(id);
  }

  due(now: number): string[] {
    const ids: string[] = [];
    for (const [id, entry] of this.entries) if (entry.dueAt <= now) ids.push(id);
    return ids;
  }

  dueAt(id: string): number | undefined {
    return this.entries.get(id)?.dueAt;
  }

  /** The earliest time any model is due, or null when none is scheduled. */
  nextDueAt(): number | null {
    let next: number | null = null;
    for (const entry of this.entries.values()) if (next === null || entry.dueAt < next) next = entry.dueAt;
    return next;
  }

  /** Moves these models one interval ahead; a check's outcome then sets the real next time. */
  postpone(ids: string[], now: number): void {
    for (const id of ids) {
      const entry = this.entries.get(id);
      if (entry) entry.dueAt = now + this.intervalMs;
    }
  }

  record(id: string, outcome: ModelOutcome, now: number): void {
    const entry = this.entries.get(id);
    if (!entry) return;
    if (outcome.kind === 'transitioned' && outcome.to !== 'TRAINING') {
      this.entries.delete(id);
      return;
    }
    if (outcome.kind === 'failed') {
      entry.streak += 1;
      entry.dueAt = now + this.backoff(entry.streak, 1);
      return;
    }
    const eta = outcome.kind === 'unchanged' ? outcome.tune?.eta?.getTime() : undefined;
    if (eta !== undefined && eta + this.etaGraceMs > now) {
      entry.streak = 0;
      entry.dueAt = Math.min(eta + this.etaGraceMs, now + this.intervalMs);
      return;
    }
    entry.streak += 1;
    entry.dueAt = now + this.backoff(entry.streak, this.overdueChecksAtInterval);
  }

  clear(): void {
    this.entries.clear();
  }

  /** The interval for the first `flat` looks, then doubling up to the cap. */
  private backoff(streak: number, flat: number): number {
    const doublings = Math.max(0, streak - flat);
    return Math.min(this.maxBackoffMs, this.intervalMs * 2 ** Math.min(doublings, 20));
  }
}
