import type pg from 'pg';
import { CALLBACK_KINDS, classifyReconcilerRecoveries } from '../db/callbacks.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { FailureReporter } from './loop-errors.js';

export interface CallbackJudgeOptions {
  /** Our own schema (callback records). */
  schema: string;
  /** `RECONCILER_CALLBACK_GRACE`. */
  graceMs: number;
  /** How often a judgement is due (`RECONCILER_INTERVAL`). */
  everyMs: number;
}

/**
 * Judges which of the reconciler's recoveries were lost callbacks and which late, alongside the
 * rounds: at most one judgement at a time, never awaited by a round, so one that fails or takes long
 * holds nothing up. A failure is counted and logged, and judged again when the next is due.
 */
export class CallbackJudge {
  private nextAt = 0;
  private underway: Promise<void> | null = null;
  private readonly failures: FailureReporter;

  constructor(
    private readonly deps: { pool: pg.Pool; log: Logger; metrics: Metrics },
    private readonly options: CallbackJudgeOptions,
  ) {
    this.failures = new FailureReporter(deps);
  }

  /** Starts a judgement in the background when one is due and none is under way. */
  judgeIfDue(now: number): void {
    if (now < this.nextAt) return;
    this.nextAt = now + this.options.everyMs;
    this.underway ??= this.judge(now).finally(() => (this.underway = null));
  }

  async settled(): Promise<void> {
    await this.underway;
  }

  private async judge(now: number): Promise<void> {
    const { pool, metrics, log } = this.deps;
    try {
      const judged = await classifyReconcilerRecoveries(pool, this.options.schema, this.options.graceMs);
      for (const kind of CALLBACK_KINDS) {
        metrics.lostCallbacks.inc({ kind }, judged[kind].lost);
        metrics.lateCallbacks.inc({ kind }, judged[kind].late);
        if (judged[kind].lost > 0) log.warn({ kind, lost: judged[kind].lost }, 'Astria callbacks lost: the reconciler applied these and no callback came');
      }
      this.failures.succeeded(now);
    } catch (error) {
      this.failures.failed(error, now, 'judging lost callbacks failed; polling goes on, judged again next interval');
    }
  }
}
