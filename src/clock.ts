import { setTimeout as sleepTimer } from 'node:timers/promises';

/** Time as the code sees it; tests pass a fake so schedules can be driven without waiting. */
export interface Clock {
  now(): number;
  /** Resolves after `ms`; rejects with the signal's reason when it aborts first. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemClock: Clock = {
  now: () => Date.now(),
  sleep: (ms, signal) => sleepTimer(Math.max(0, ms), undefined, signal ? { signal } : undefined),
};
