import { describe, expect, it } from 'vitest';
import { tuneSchema, type Tune } from '../../src/astria/tune.js';
import type { ModelOutcome } from '../../src/reconciler/pass.js';
import { Schedule } from '../../src/reconciler/schedule.js';

const INTERVAL = 10_000;
const GRACE = 2_000;
const MAX_BACKOFF = 120_000;
const OVERDUE_AT_INTERVAL = 3;
const T0 = Date.parse('2025-01-01T00:00:00.000Z');

function schedule(): Schedule {
  return new Schedule({
    intervalMs: INTERVAL,
    etaGraceMs: GRACE,
    maxBackoffMs: MAX_BACKOFF,
    overdueChecksAtInterval: OVERDUE_AT_INTERVAL,
  });
}

function tune(fields: { eta?: number | null } = {}): Tune {
  return tuneSchema.parse({
    id: 42,
    title: 'model',
    started_training_at: new Date(T0 - 60_000).toISOString(),
    eta: fields.eta == null ? null : new Date(fields.eta).toISOString(),
    trained_at: null,
  });
}

const unchanged = (eta?: number | null): ModelOutcome => ({ kind: 'unchanged', tune: tune({ eta: eta ?? null }) });
const failed: ModelOutcome = { kind: 'failed', reason: 'astria: 503' };

/** A schedule with these stuck models synced in at `now`. */
function withStuck(ids: string[], now = T0): Schedule {
  const s = schedule();
  s.sync(
    ids.map((id) => ({ id, stuck: true })),
    now,
  );
  return s;
}

describe('Schedule.sync', () => {
  it('makes new stuck models due at once and does not schedule models that are not stuck', () => {
    const s = schedule();
    s.sync(
      [
        { id: 'a', stuck: true },
        { id: 'b', stuck: false },
        { id: 'c', stuck: true },
      ],
      T0,
    );
    expect(s.size).toBe(2);
    expect(s.dueAt('a')).toBe(T0);
    expect(s.dueAt('c')).toBe(T0);
    expect(s.dueAt('b')).toBeUndefined();
    expect(s.due(T0).sort()).toEqual(['a', 'c']);
    expect(s.due(T0 - 1)).toEqual([]);
  });

  it('schedules a model once it becomes stuck, at the time of that sync', () => {
    const s = schedule();
    s.sync([{ id: 'a', stuck: false }], T0);
    expect(s.size).toBe(0);
    s.sync([{ id: 'a', stuck: true }], T0 + 5_000);
    expect(s.dueAt('a')).toBe(T0 + 5_000);
  });

  it('keeps a known model and its dueAt when a later sync says it is not stuck anymore (updatedAt moved)', () => {
    const s = withStuck(['a']);
    s.record('a', unchanged(T0 + 6_000), T0);
    const dueAt = s.dueAt('a');
    expect(dueAt).toBe(T0 + 6_000 + GRACE);

    // PROCESSING → TRAINING write bumped updatedAt: no longer "stuck" by the database's clock.
    s.sync([{ id: 'a', stuck: false }], T0 + 1_000);
    expect(s.dueAt('a')).toBe(dueAt);
    expect(s.size).toBe(1);

    // Stuck again later: still the same schedule, not "due at once".
    s.sync([{ id: 'a', stuck: true }], T0 + 2_000);
    expect(s.dueAt('a')).toBe(dueAt);
    expect(s.due(T0 + 2_000)).toEqual([]);
  });

  it('keeps a known stuck model at its dueAt across syncs (it does not become due again at once)', () => {
    const s = withStuck(['a']);
    s.record('a', failed, T0);
    s.sync([{ id: 'a', stuck: true }], T0 + 1_000);
    expect(s.dueAt('a')).toBe(T0 + INTERVAL);
  });

  it('forgets models no longer in flight', () => {
    const s = withStuck(['a', 'b', 'c']);
    s.sync([{ id: 'b', stuck: true }], T0 + 1_000);
    expect(s.size).toBe(1);
    expect(s.dueAt('a')).toBeUndefined();
    expect(s.dueAt('c')).toBeUndefined();
    expect(s.dueAt('b')).toBe(T0);

    // One that comes back in flight later starts afresh: due at once.
    s.sync(
      [
        { id: 'a', stuck: true },
        { id: 'b', stuck: true },
      ],
      T0 + 2_000,
    );
    expect(s.dueAt('a')).toBe(T0 + 2_000);

    s.sync([], T0 + 3_000);
    expect(s.size).toBe(0);
    expect(s.nextDueAt()).toBeNull();
  });

  it('accepts any iterable', () => {
    const s = schedule();
    function* models() {
      yield { id: 'x', stuck: true };
      yield { id: 'y', stuck: false };
    }
    s.sync(models(), T0);
    expect(s.due(T0)).toEqual(['x']);
  });
});

describe('Schedule.record: unchanged with an eta ahead', () => {
  it('is due just after the eta (eta + grace) when that is within one interval, never earlier', () => {
    const s = withStuck(['a']);
    const eta = T0 + INTERVAL - GRACE - 1_000;
    s.record('a', unchanged(eta), T0);
    expect(s.dueAt('a')).toBe(eta + GRACE);
    expect(s.due(eta)).toEqual([]);
    expect(s.due(eta + GRACE - 1)).toEqual([]);
    expect(s.due(eta + GRACE)).toEqual(['a']);
  });

  it('still waits for eta + grace when the eta is closer than one interval', () => {
    const s = withStuck(['a']);
    s.record('a', unchanged(T0 + 1_000), T0);
    expect(s.dueAt('a')).toBe(T0 + 1_000 + GRACE);
  });

  it('waits for the grace when the eta has just passed but eta + grace has not', () => {
    const s = withStuck(['a']);
    s.record('a', unchanged(T0 - 500), T0);
    expect(s.dueAt('a')).toBe(T0 - 500 + GRACE);
  });

  it('is looked at again within one interval when the eta is further ahead (the eta is only an estimate)', () => {
    const s = withStuck(['a']);
    s.record('a', unchanged(T0 + 3_600_000), T0);
    expect(s.dueAt('a')).toBe(T0 + INTERVAL);
  });

  it('resets the overdue count: after an eta ahead, the next overdue looks start at the interval again', () => {
    const s = withStuck(['a']);
    let now = T0;
    let wait = 0;
    for (let i = 0; i < OVERDUE_AT_INTERVAL + 2; i++) {
      s.record('a', unchanged(null), now);
      wait = s.dueAt('a')! - now;
      now = s.dueAt('a')!;
    }
    expect(wait).toBe(4 * INTERVAL);
    // Astria now gives a new eta ahead.
    s.record('a', unchanged(now + 3_000), now);
    expect(s.dueAt('a')).toBe(now + 3_000 + GRACE);
    now = now + 3_000 + GRACE;
    s.record('a', unchanged(now - 3_000), now);
    expect(s.dueAt('a')).toBe(now + INTERVAL);
  });
});

describe('Schedule.record: still training past eta (or none)', () => {
  it.each([
    ['past eta', (now: number) => unchanged(now - 60_000)],
    ['eta + grace exactly now', (now: number) => unchanged(now - GRACE)],
    ['no eta', () => unchanged(null)],
    ['no tune (another writer won the race)', (): ModelOutcome => ({ kind: 'unchanged', tune: null })],
  ])('%s: every interval for the first looks, then doubling, capped by maxBackoff', (_name, outcome) => {
    const s = withStuck(['a']);
    let now = T0;
    const waits: number[] = [];
    for (let i = 0; i < 9; i++) {
      s.record('a', outcome(now), now);
      const next = s.dueAt('a')!;
      waits.push(next - now);
      now = next;
    }
    // 3 looks at the interval, then 20 s, 40 s, 80 s, then the 120 s cap.
    expect(waits).toEqual([
      INTERVAL,
      INTERVAL,
      INTERVAL,
      2 * INTERVAL,
      4 * INTERVAL,
      8 * INTERVAL,
      MAX_BACKOFF,
      MAX_BACKOFF,
      MAX_BACKOFF,
    ]);
  });

  it('uses the defaults: 4 looks at the interval, grace 2 s, cap of 10 minutes', () => {
    const s = new Schedule({ intervalMs: 60_000 });
    s.sync([{ id: 'a', stuck: true }], T0);
    let now = T0;
    const waits: number[] = [];
    for (let i = 0; i < 8; i++) {
      s.record('a', unchanged(null), now);
      waits.push(s.dueAt('a')! - now);
      now = s.dueAt('a')!;
    }
    expect(waits).toEqual([60_000, 60_000, 60_000, 60_000, 120_000, 240_000, 480_000, 600_000]);
    s.record('a', unchanged(now + 30_000), now);
    expect(s.dueAt('a')).toBe(now + 32_000);
  });

  it('the default cap is never below the interval', () => {
    const s = new Schedule({ intervalMs: 20 * 60_000 });
    s.sync([{ id: 'a', stuck: true }], T0);
    let now = T0;
    for (let i = 0; i < 6; i++) {
      s.record('a', unchanged(null), now);
      expect(s.dueAt('a')! - now).toBe(20 * 60_000);
      now = s.dueAt('a')!;
    }
    s.record('a', failed, now);
    expect(s.dueAt('a')! - now).toBe(20 * 60_000);
  });
});

describe('Schedule.record: failures and transitions', () => {
  it('backs a failing model off exponentially from the interval, capped by maxBackoff', () => {
    const s = withStuck(['a']);
    let now = T0;
    const waits: number[] = [];
    for (let i = 0; i < 7; i++) {
      s.record('a', failed, now);
      waits.push(s.dueAt('a')! - now);
      now = s.dueAt('a')!;
    }
    expect(waits).toEqual([INTERVAL, 2 * INTERVAL, 4 * INTERVAL, 8 * INTERVAL, MAX_BACKOFF, MAX_BACKOFF, MAX_BACKOFF]);
  });

  it('an answer with an eta ahead after failures schedules at the eta again', () => {
    const s = withStuck(['a']);
    s.record('a', failed, T0);
    s.record('a', failed, T0 + INTERVAL);
    const now = T0 + 3 * INTERVAL;
    s.record('a', unchanged(now + 5_000), now);
    expect(s.dueAt('a')).toBe(now + 5_000 + GRACE);
  });

  it.each(['READY', 'ERROR'] as const)('forgets a model that transitioned to %s', (to) => {
    const s = withStuck(['a', 'b']);
    s.record('a', { kind: 'transitioned', to }, T0);
    expect(s.dueAt('a')).toBeUndefined();
    expect(s.size).toBe(1);
    expect(s.due(T0 + 10 * MAX_BACKOFF)).toEqual(['b']);
  });

  it('keeps a model that transitioned to TRAINING scheduled', () => {
    const s = withStuck(['a']);
    s.record('a', { kind: 'transitioned', to: 'TRAINING' }, T0);
    expect(s.size).toBe(1);
    const dueAt = s.dueAt('a');
    expect(dueAt).toBeDefined();
    expect(dueAt!).toBeGreaterThan(T0);
    expect(dueAt!).toBeLessThanOrEqual(T0 + INTERVAL);
    expect(s.due(T0 + INTERVAL)).toEqual(['a']);
  });

  it('ignores outcomes for models it does not know', () => {
    const s = withStuck(['a']);
    s.record('zzz', failed, T0);
    s.record('zzz', { kind: 'transitioned', to: 'READY' }, T0);
    expect(s.size).toBe(1);
    expect(s.dueAt('zzz')).toBeUndefined();
  });
});

describe('Schedule: due, postpone, nextDueAt', () => {
  it('due() lists exactly the models due at that time', () => {
    const s = withStuck(['a', 'b', 'c', 'd']);
    s.record('a', unchanged(T0 + 3_000), T0); // T0 + 5 s
    s.record('b', unchanged(T0 + 60_000), T0); // T0 + 10 s: the interval comes before the eta
    s.record('c', unchanged(T0 + 5_000), T0); // T0 + 7 s
    // d stays due at T0.
    expect(s.due(T0)).toEqual(['d']);
    expect(s.due(T0 + 4_999)).toEqual(['d']);
    expect(s.due(T0 + 5_000).sort()).toEqual(['a', 'd']);
    expect(s.due(T0 + 7_000).sort()).toEqual(['a', 'c', 'd']);
    expect(s.due(T0 + 9_999).sort()).toEqual(['a', 'c', 'd']);
    expect(s.due(T0 + 10_000).sort()).toEqual(['a', 'b', 'c', 'd']);
  });

  it('nextDueAt is the earliest dueAt, null when nothing is scheduled', () => {
    const s = schedule();
    expect(s.nextDueAt()).toBeNull();
    s.sync(
      [
        { id: 'a', stuck: true },
        { id: 'b', stuck: true },
        { id: 'c', stuck: true },
      ],
      T0,
    );
    expect(s.nextDueAt()).toBe(T0);
    s.record('a', unchanged(T0 + 50_000), T0); // T0 + 10 s (the interval)
    s.record('b', unchanged(T0 + 2_000), T0); // T0 + 4 s
    s.record('c', unchanged(T0 + 5_000), T0); // T0 + 7 s
    expect(s.nextDueAt()).toBe(T0 + 4_000);
    s.record('b', { kind: 'transitioned', to: 'READY' }, T0 + 4_000);
    expect(s.nextDueAt()).toBe(T0 + 7_000);
    s.clear();
    expect(s.size).toBe(0);
    expect(s.nextDueAt()).toBeNull();
  });

  it('postpone moves due models one interval ahead so they are not checked twice at once', () => {
    const s = withStuck(['a', 'b']);
    const now = T0 + 1_000;
    const due = s.due(now);
    expect(due.sort()).toEqual(['a', 'b']);
    s.postpone(due, now);
    expect(s.due(now)).toEqual([]);
    expect(s.dueAt('a')).toBe(now + INTERVAL);
    expect(s.dueAt('b')).toBe(now + INTERVAL);
    expect(s.nextDueAt()).toBe(now + INTERVAL);
    // A sync while the check runs does not make them due again.
    s.sync(
      [
        { id: 'a', stuck: true },
        { id: 'b', stuck: true },
      ],
      now + 500,
    );
    expect(s.due(now + 500)).toEqual([]);
    // The outcome then sets the real next time.
    s.record('a', unchanged(now + 60_000), now + 700);
    expect(s.dueAt('a')).toBe(now + 700 + INTERVAL);
    // A check that never reported comes round again after the interval.
    expect(s.due(now + INTERVAL)).toEqual(['b']);
  });

  it('postpone ignores unknown ids and leaves other models alone', () => {
    const s = withStuck(['a', 'b']);
    s.postpone(['a', 'nope'], T0);
    expect(s.size).toBe(2);
    expect(s.dueAt('a')).toBe(T0 + INTERVAL);
    expect(s.dueAt('b')).toBe(T0);
    expect(s.dueAt('nope')).toBeUndefined();
  });

  it('a model that becomes stuck is due within one interval of the sync that sees it', () => {
    const s = withStuck(['a']);
    s.record('a', unchanged(T0 + 5 * 60_000), T0);
    // A daemon tick every interval syncs; the new stuck model is due on the first tick.
    const tick = T0 + INTERVAL - 1;
    s.sync(
      [
        { id: 'a', stuck: true },
        { id: 'new', stuck: true },
      ],
      tick,
    );
    expect(s.due(tick)).toEqual(['new']);
    expect(s.nextDueAt()).toBe(tick);
  });
});
