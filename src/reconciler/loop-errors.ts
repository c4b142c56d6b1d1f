import { AstriaAuthError } from '../astria/client.js';
import type { Logger } from '../log.js';
import type { LoopErrorReason, Metrics } from '../metrics.js';

/** Astria could not be used for a whole round (it answered nothing, or its list is not where it should be). */
export class AstriaUnavailableError extends Error {
  override name = 'AstriaUnavailableError';
}

/** Node's codes for a connection that could not be made or was lost. */
const NETWORK_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EPIPE', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'ECONNABORTED']);
/** What `pg` throws, as plain errors, when its connection ends or cannot be had. */
const PG_CONNECTION_MESSAGES = /^(Connection terminated|timeout exceeded when trying to connect|Client has encountered a connection error|Query read timeout|Client was closed)/;

/**
 * What a failed step of the loop failed on. A database error is recognised by its SQLSTATE (five
 * characters, whichever copy of `pg` made it), a network error code or `pg`'s connection messages,
 * on the error or what caused it.
 */
export function loopErrorReason(error: unknown): LoopErrorReason {
  if (error instanceof AstriaAuthError) return 'auth';
  if (error instanceof AstriaUnavailableError) return 'astria';
  const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (/^[0-9A-Z]{5}$/.test(code) || NETWORK_CODES.has(code))) return 'database';
  if (typeof message === 'string' && PG_CONNECTION_MESSAGES.test(message)) return 'database';
  const { cause } = (error ?? {}) as { cause?: unknown };
  return cause === undefined || cause === error ? 'other' : loopErrorReason(cause);
}

/** A failure logged again at most this often while it lasts. */
export const FAILURE_LOG_EVERY_MS = 60_000;

/**
 * One unit's run of failures (pure: time as an argument). Says when a failure is worth an error line
 * (the first of a run, one of a new reason, then once a minute) and, at the first success after, how
 * long the run lasted.
 */
export class FailureStreak {
  private run: { reason: LoopErrorReason; since: number; loggedAt: number } | null = null;

  /** Whether to log this failure. */
  failed(reason: LoopErrorReason, now: number): boolean {
    if (this.run?.reason === reason) {
      if (now - this.run.loggedAt < FAILURE_LOG_EVERY_MS) return false;
      this.run.loggedAt = now;
      return true;
    }
    this.run = { reason, since: now, loggedAt: now };
    return true;
  }

  /** The run of failures that this success ended, if any. */
  succeeded(now: number): { reason: LoopErrorReason; lastedMs: number } | null {
    const ended = this.run;
    this.run = null;
    return ended && { reason: ended.reason, lastedMs: now - ended.since };
  }

  get failing(): boolean {
    return this.run !== null;
  }
}

const REASON_NAMES: Record<LoopErrorReason, string> = { database: 'database', astria: 'Astria', auth: 'Astria API key', other: 'reconcile loop' };

/** Counts a unit's failures in `loop_errors_total{reason}` and logs them by its streak; says when the run ends. */
export class FailureReporter {
  private readonly streak = new FailureStreak();

  constructor(private readonly deps: { log: Logger; metrics: Metrics }) {}

  /** Counts the failure (by its reason, found from the error unless given); logs `message` at error level when the streak says so. */
  failed(error: unknown, now: number, message: string, fields: Record<string, unknown> = {}, reason = loopErrorReason(error)): LoopErrorReason {
    this.deps.metrics.loopErrors.inc({ reason });
    if (this.streak.failed(reason, now)) this.deps.log.error({ err: (error as Error).message, reason, ...fields }, message);
    return reason;
  }

  succeeded(now: number): void {
    const ended = this.streak.succeeded(now);
    if (ended) this.deps.log.info({ reason: ended.reason, lastedMs: ended.lastedMs }, `${REASON_NAMES[ended.reason]} back after ${Math.round(ended.lastedMs / 1000)} s`);
  }
}
