import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { AstriaAuthError } from '../../src/astria/client.js';
import { AuthPause } from '../../src/reconciler/auth-pause.js';
import { AstriaUnavailableError, FAILURE_LOG_EVERY_MS, FailureStreak, loopErrorReason } from '../../src/reconciler/loop-errors.js';

describe('loopErrorReason', () => {
  it('names what failed: the key, Astria, the database (by SQLSTATE, network code or pg message, on the error or its cause), else other', () => {
    expect(loopErrorReason(new AstriaAuthError('401'))).toBe('auth');
    expect(loopErrorReason(new AstriaUnavailableError('Astria answered none of the round\'s requests'))).toBe('astria');
    const sqlState = Object.assign(new pg.DatabaseError('terminating connection due to administrator command', 0, 'error'), { code: '57P01' });
    expect(loopErrorReason(sqlState)).toBe('database');
    // An error made by another copy of pg is no instance of ours: its SQLSTATE still says database.
    expect(loopErrorReason(Object.assign(new Error('interval out of range'), { code: '22008' }))).toBe('database');
    expect(loopErrorReason(Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }))).toBe('database');
    expect(loopErrorReason(new Error('Connection terminated unexpectedly'))).toBe('database');
    expect(loopErrorReason(new Error('database unreachable or unusable', { cause: new Error('timeout exceeded when trying to connect') }))).toBe('database');
    expect(loopErrorReason(new TypeError("Cannot read properties of undefined (reading 'id')"))).toBe('other');
    expect(loopErrorReason(Object.assign(new Error('x'), { code: 'ERR_SOMETHING_LONG' }))).toBe('other');
  });
});

describe('FailureStreak', () => {
  it('logs the first failure, then at most once a minute while it lasts; a new reason is logged at once', () => {
    const streak = new FailureStreak();
    const t0 = 1_000_000;
    expect(streak.failed('database', t0)).toBe(true);
    expect(streak.failed('database', t0 + 2_000)).toBe(false);
    expect(streak.failed('database', t0 + FAILURE_LOG_EVERY_MS - 1)).toBe(false);
    expect(streak.failed('database', t0 + FAILURE_LOG_EVERY_MS)).toBe(true);
    expect(streak.failed('database', t0 + FAILURE_LOG_EVERY_MS + 30_000)).toBe(false);
    expect(streak.failed('astria', t0 + FAILURE_LOG_EVERY_MS + 31_000)).toBe(true);
  });

  it('says how long a run of failures lasted at the first success after it, and nothing at other successes', () => {
    const streak = new FailureStreak();
    expect(streak.succeeded(5_000)).toBeNull();
    streak.failed('database', 10_000);
    streak.failed('database', 40_000);
    expect(streak.failing).toBe(true);
    expect(streak.succeeded(80_000)).toEqual({ reason: 'database', lastedMs: 70_000 });
    expect(streak.failing).toBe(false);
    expect(streak.succeeded(81_000)).toBeNull();
  });
});

describe('AuthPause', () => {
  it('pauses calls after a rejected key until the retry time; an answer ends the pause once', () => {
    const pause = new AuthPause(120_000);
    expect(pause.mayCall(0)).toBe(true);
    expect(pause.accepted()).toBe(false);
    pause.rejected(1_000);
    expect(pause.paused).toBe(true);
    expect(pause.nextTryAt).toBe(121_000);
    expect(pause.mayCall(120_999)).toBe(false);
    expect(pause.mayCall(121_000)).toBe(true);
    expect(pause.accepted()).toBe(true);
    expect(pause.accepted()).toBe(false);
    expect(pause.nextTryAt).toBeNull();
  });
});
