import type pg from 'pg';
import { pruneCallbackArrivals, pruneDeliveredEvents } from '../broadcast/retention.js';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';

export interface PruningOptions {
  schema: string;
  retentionMs: number;
  everyMs: number;
}

/**
 * Drops delivered events and callback arrivals older than the retention, now and then, until the
 * signal aborts; a failure waits for the next time.
 */
export async function runPruning(deps: { pool: pg.Pool; log: Logger; clock: Clock }, options: PruningOptions, signal: AbortSignal): Promise<void> {
  const { pool, log, clock } = deps;
  while (!signal.aborted) {
    try {
      const pruned = await pruneDeliveredEvents(pool, options.schema, options.retentionMs);
      if (pruned > 0) log.info({ pruned }, 'pruned delivered events past retention');
      const prunedCallbacks = await pruneCallbackArrivals(pool, options.schema, options.retentionMs);
      if (prunedCallbacks > 0) log.info({ pruned: prunedCallbacks }, 'pruned callback arrivals past retention');
    } catch (error) {
      log.warn({ err: (error as Error).message }, 'event pruning failed; will retry');
    }
    await clock.sleep(options.everyMs, signal).catch(() => undefined);
  }
}
