import { describe, expect, it } from 'vitest';
import { ObservationSchedule, type ScheduledRow } from '../../src/reconciler/schedule.js';

const EVERY = 2_000;
const LONGEST = 30_000;
const STUCK_AFTER = 120_000;
const T0 = Date.parse('2025-01-01T00:00:00.000Z');
const HOUR = 3_600_000;

function schedule(stuckAfterMs = STUCK_AFTER): ObservationSchedule {
  return new ObservationSchedule({ observeEveryMs: EVERY, longestWaitMs: LONGEST, stuckAfterMs });
}

const model = (id: string, remoteId: number, updatedAt = T0 - HOUR, estimatedDueAt: number | null = null): ScheduledRow => ({ id, remoteId, updatedAt, estimatedDueAt });

/** Runs rounds as the daemon would, the tune still training with this eta; returns when each round started. */
function roundsWhileTraining(s: ObservationSchedule, id: string, from: number, until: number): number[] {
  const starts: number[] = [];
  for (let now = s.nextRoundAt()!; now <= until; now = s.nextRoundAt()!) {
    expect(now).toBeGreaterThanOrEqual(from);
    s.roundStarted(now);
    if (s.roundItems(now).some((item) => item.weight === 1)) starts.push(now);
    s.stillTraining(id, now);
    s.roundFinished({ retried: false });
  }
  return starts;
}

const gaps = (times: number[]) => times.slice(1).map((time, index) => time - times[index]!);

describe('ObservationSchedule: nothing in flight', () => {
  it('schedules no round at all, so no Astria call is made', () => {
    const s = schedule();
    expect(s.nextRoundAt()).toBeNull();
    s.sync([], T0);
    expect(s.nextRoundAt()).toBeNull();
    expect(s.roundItems(T0)).toEqual([]);
  });

  it('forgets models that left flight; the last one gone means no round', () => {
    const s = schedule();
    s.sync([model('a', 1), model('b', 2)], T0);
    s.sync([model('b', 2)], T0 + 1_000);
    expect(s.size).toBe(1);
    s.forget('b');
    expect(s.nextRoundAt()).toBeNull();
  });
});

describe('ObservationSchedule: the webhook grace', () => {
  it('a model stuck long ago is due at once', () => {
    const s = schedule();
    s.sync([model('a', 1)], T0);
    expect(s.nextRoundAt()).toBe(T0);
    expect(s.roundItems(T0)).toEqual([{ id: 1, weight: 1 }]);
  });

  it('a young model is looked at at once (a tune trained at creation), then only rides along until the grace ends', () => {
    const s = schedule();
    s.sync([model('fresh', 7, T0 - 30_000)], T0);
    expect(s.nextRoundAt()).toBe(T0);
    expect(s.roundItems(T0)).toEqual([{ id: 7, weight: 1 }]);
    s.roundStarted(T0);
    s.stillTraining('fresh', T0);
    s.roundFinished({ retried: false });
    // The rest of its wait costs nothing: on a page fetched anyway only.
    expect(s.roundItems(T0 + EVERY)).toEqual([{ id: 7, weight: 0 }]);
    expect(s.nextRoundAt()).toBe(T0 - 30_000 + STUCK_AFTER);
  });

  it('a young model seen on a page fetched anyway had its first look: no call of its own', () => {
    const s = schedule();
    s.sync([model('old', 1), model('fresh', 7, T0)], T0);
    s.roundStarted(T0);
    s.stillTraining('old', T0);
    s.stillTraining('fresh', T0);
    s.roundFinished({ retried: false });
    expect(s.roundItems(T0 + EVERY)).toEqual([
      { id: 1, weight: 1 },
      { id: 7, weight: 0 },
    ]);
  });

  it('a row the app touches every 3 s is still stuck STUCK_AFTER after the leader first saw it', () => {
    const s = schedule();
    s.sync([model('touched', 9, T0)], T0);
    s.stillTraining('touched', T0);
    for (let now = T0; now <= T0 + STUCK_AFTER; now += 3_000) s.sync([model('touched', 9, now)], now);
    expect(s.nextRoundAt()).toBe(T0 + STUCK_AFTER);
    expect(s.roundItems(T0 + STUCK_AFTER - 1)).toEqual([{ id: 9, weight: 0 }]);
    expect(s.roundItems(T0 + STUCK_AFTER)).toEqual([{ id: 9, weight: 1 }]);
  });

  it('a retrain (new tune id on the row) starts over: a first look at once, then the grace', () => {
    const s = schedule();
    s.sync([model('a', 1)], T0);
    s.stillTraining('a', T0);
    s.sync([model('a', 2, T0 + 5_000)], T0 + 5_000);
    expect(s.nextRoundAt()).toBe(T0 + 5_000);
    s.stillTraining('a', T0 + 5_000);
    expect(s.nextRoundAt()).toBe(T0 + 5_000 + STUCK_AFTER);
    expect(s.roundItems(T0 + 5_000 + STUCK_AFTER)).toEqual([{ id: 2, weight: 1 }]);
  });
});

describe('ObservationSchedule: the cadence follows the eta', () => {
  it('past its eta (a tune finishing 1–30 min late) it is looked at every round, for as long as it trains', () => {
    const s = schedule();
    s.sync([model('late', 1)], T0);
    s.dueAt('late', T0 - 20 * 60_000);
    const starts = roundsWhileTraining(s, 'late', T0, T0 + 30 * 60_000);
    expect(starts.length).toBeGreaterThan(800);
    expect(Math.max(...gaps(starts))).toBe(EVERY);
  });

  it('with no eta, likewise every round', () => {
    const s = schedule();
    s.sync([model('none', 1)], T0);
    s.dueAt('none', null);
    const starts = roundsWhileTraining(s, 'none', T0, T0 + 10 * 60_000);
    expect(Math.max(...gaps(starts))).toBe(EVERY);
  });

  it('an eta 10 min ahead: a look every 30 s until a minute before it, then every round', () => {
    const s = schedule();
    const eta = T0 + 10 * 60_000;
    s.sync([model('early', 1)], T0);
    s.dueAt('early', eta);
    const starts = roundsWhileTraining(s, 'early', T0, eta + 60_000);
    const before = starts.filter((at) => at <= eta - 60_000);
    const after = starts.filter((at) => at >= eta - 60_000);
    // The first look at once, then every 30 s: 18 looks in 9 minutes, not 270.
    expect(before[0]).toBe(T0);
    expect(Math.max(...gaps(before))).toBe(LONGEST);
    expect(before.length).toBeLessThanOrEqual(20);
    expect(after[0]).toBeLessThanOrEqual(eta - 60_000 + EVERY);
    expect(Math.max(...gaps(after))).toBe(EVERY);
  });

  it('an eta pushed later by Astria moves the close watch with it; one pulled nearer brings it back', () => {
    const s = schedule();
    s.sync([model('m', 1)], T0);
    s.dueAt('m', T0 + 10 * 60_000);
    s.stillTraining('m', T0);
    expect(s.nextRoundAt()).toBe(T0 + LONGEST);
    s.dueAt('m', T0 + 40_000);
    s.stillTraining('m', T0);
    expect(s.nextRoundAt()).toBe(T0 + EVERY);
  });

  it('a young model with an eta far ahead still gets its first look at once', () => {
    const s = schedule();
    s.sync([model('fresh', 7, T0)], T0);
    s.dueAt('fresh', T0 + 30 * 60_000);
    expect(s.roundItems(T0)).toEqual([{ id: 7, weight: 1 }]);
  });

  it("Astria giving no eta, the row's estimatedTime stands in: a look every 30 s until a minute before it, then every round", () => {
    const s = schedule();
    const estimated = T0 + 10 * 60_000;
    s.sync([model('app-estimate', 1, T0 - HOUR, estimated)], T0);
    s.dueAt('app-estimate', null);
    const starts = roundsWhileTraining(s, 'app-estimate', T0, estimated + 60_000);
    const before = starts.filter((at) => at <= estimated - 60_000);
    const after = starts.filter((at) => at >= estimated - 60_000);
    expect(before[0]).toBe(T0);
    expect(Math.max(...gaps(before))).toBe(LONGEST);
    expect(after[0]).toBeLessThanOrEqual(estimated - 60_000 + EVERY);
    expect(Math.max(...gaps(after))).toBe(EVERY);
  });

  it("Astria's eta wins over the row's estimate; the estimate a re-read brings is used from then on", () => {
    const s = schedule();
    s.sync([model('both', 1, T0 - HOUR, T0 + 20_000)], T0);
    s.dueAt('both', T0 + 10 * 60_000);
    s.stillTraining('both', T0);
    expect(s.nextRoundAt()).toBe(T0 + LONGEST);
    // Astria stops giving an eta; the app's estimate, re-read, is 10 minutes away.
    s.sync([model('both', 1, T0 - HOUR, T0 + 10 * 60_000)], T0);
    s.dueAt('both', null);
    s.stillTraining('both', T0);
    expect(s.nextRoundAt()).toBe(T0 + LONGEST);
    // ...and then past: every round.
    s.sync([model('both', 1, T0 - HOUR, T0 - 60_000)], T0);
    s.stillTraining('both', T0);
    expect(s.nextRoundAt()).toBe(T0 + EVERY);
  });
});

describe('ObservationSchedule: many models, one round', () => {
  it('gives each tune once, weight 1 when any of its models is due', () => {
    const s = schedule();
    const models = Array.from({ length: 120 }, (_, index) => model(`m-${index}`, 1_000 + index));
    s.sync([...models, model('twin', 1_000), model('fresh', 2_000, T0)], T0);
    s.stillTraining('fresh', T0); // its first look was on a page: it now waits out its grace
    const items = s.roundItems(T0);
    expect(items).toHaveLength(121);
    expect(items.find((item) => item.id === 1_000)).toEqual({ id: 1_000, weight: 1 });
    expect(items.find((item) => item.id === 2_000)).toEqual({ id: 2_000, weight: 0 });
  });

});

describe('ObservationSchedule: a model that keeps failing backs off', () => {
  it('waits twice as long after each failure in a row, up to 5 min, and is back on the cadence after a success', () => {
    const s = schedule();
    s.sync([model('locked', 1)], T0);
    const waits: number[] = [];
    let now = T0;
    for (let failure = 0; failure < 10; failure += 1) {
      s.failed('locked', now);
      expect(s.failureState('locked', now)).toBe('backing-off');
      const next = s.nextRoundAt()!;
      expect(s.failureState('locked', next - 1)).toBe('backing-off');
      expect(s.failureState('locked', next)).toBe('retry');
      waits.push(next - now);
      now = next;
    }
    expect(waits).toEqual([2_000, 4_000, 8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000]);
    s.stillTraining('locked', now);
    expect(s.failureState('locked', now)).toBe('none');
    s.failed('locked', now);
    expect(s.nextRoundAt()).toBe(now + EVERY);
  });

  it('backing off, it only rides along: the other models stay due every round', () => {
    const s = schedule();
    s.sync([model('locked', 1), model('fine', 2)], T0);
    s.roundStarted(T0);
    s.failed('locked', T0);
    s.failed('locked', T0);
    s.stillTraining('fine', T0);
    s.roundFinished({ retried: false });
    expect(s.nextRoundAt()).toBe(T0 + EVERY);
    expect(s.roundItems(T0 + EVERY)).toEqual([{ id: 1, weight: 0 }, { id: 2, weight: 1 }]);
    expect(s.failureState('fine', T0 + EVERY)).toBe('none');
  });
});

describe('ObservationSchedule: 429 slow-down', () => {
  it('rounds that needed retries double the cadence up to the longest wait; clean rounds bring it back', () => {
    const s = schedule();
    s.sync([model('a', 1)], T0);
    const cadences: number[] = [];
    for (let round = 0; round < 6; round += 1) {
      s.roundFinished({ retried: true });
      cadences.push(s.cadenceMs);
    }
    expect(cadences).toEqual([4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
    s.roundStarted(T0);
    expect(s.nextRoundAt()).toBe(T0 + LONGEST);
    for (let round = 0; round < 5; round += 1) s.roundFinished({ retried: false });
    expect(s.cadenceMs).toBe(EVERY);
  });
});

describe('ObservationSchedule: progress writes', () => {
  it('at most one progress-only write a minute per model, whatever the longest wait', () => {
    const s = schedule();
    s.sync([model('a', 1), model('b', 2)], T0);
    expect(s.progressWriteDue('a', T0)).toBe(true);
    s.progressWritten('a', T0);
    expect(s.progressWriteDue('a', T0 + LONGEST)).toBe(false);
    expect(s.progressWriteDue('a', T0 + 60_000 - 1)).toBe(false);
    expect(s.progressWriteDue('a', T0 + 60_000)).toBe(true);
    expect(s.progressWriteDue('b', T0 + 1)).toBe(true);
  });
});
