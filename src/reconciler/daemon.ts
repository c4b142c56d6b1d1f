import { AstriaAuthError } from '../astria/client.js';
import { selectInFlightIdsPage } from '../db/inflight.js';
import type { StatusService } from '../status/service.js';
import type { LeaderElection } from './leader.js';
import { runPass, type PassDeps } from './pass.js';
import { Schedule, type ScheduleOptions } from './schedule.js';

export interface DaemonDeps extends PassDeps {
  service: StatusService;
  leader: LeaderElection;
}

export interface DaemonOptions {
  intervalMs: number;
  stuckAfterMs: number;
  trainingTimeoutMs: number;
  concurrency: number;
  maxNotFoundShare?: number;
  /** Aborting stops the loop; a pass under way stops starting new checks and finishes the rest. */
  signal: AbortSignal;
  schedule?: Omit<ScheduleOptions, 'intervalMs'>;
}

/** Shortest sleep between two wake-ups, so a burst of due times cannot spin the loop. */
const MIN_SLEEP_MS = 50;
const DISCOVERY_PAGE_SIZE = 2_000;

/**
 * The sidecar's loop. Every replica runs it; only the leader does anything but try to become leader.
 * The leader re-reads the in-flight models every interval (a newly stuck one is due at once) and
 * wakes whenever some model is due, checking only those. Each pass runs to its end before the next
 * starts, so no model is ever checked twice at once. Errors (database away, Astria down) are logged
 * and retried on the next wake-up; only a rejected Astria key ends the loop.
 */
export async function runDaemon(deps: DaemonDeps, options: DaemonOptions): Promise<void> {
  const { clock, log } = deps;
  const { signal } = options;
  const schedule = new Schedule({ intervalMs: options.intervalMs, ...options.schedule });
  let nextDiscoveryAt = 0;
  let consecutiveErrors = 0;

  const discover = async (now: number) => {
    const stuckBefore = new Date(now - options.stuckAfterMs);
    const inFlight: { id: string; stuck: boolean }[] = [];
    for (let afterId: string | null = null; ; ) {
      const page = await selectInFlightIdsPage(deps.pool, stuckBefore, afterId, DISCOVERY_PAGE_SIZE);
      inFlight.push(...page);
      if (page.length < DISCOVERY_PAGE_SIZE) break;
      afterId = page.at(-1)!.id;
    }
    schedule.sync(inFlight, now);
    deps.metrics.inflightModels.set(inFlight.length);
  };

  const checkDue = async (now: number) => {
    const due = schedule.due(now);
    if (due.length === 0) return;
    // Due models the pass no longer selects (a webhook got there first) would otherwise stay due.
    schedule.postpone(due, now);
    const report = await runPass(deps, {
      filter: { stuckBefore: null, modelIds: due, includeError: false },
      trainingTimeoutMs: options.trainingTimeoutMs,
      concurrency: options.concurrency,
      maxNotFoundShare: options.maxNotFoundShare,
      // Stops on shutdown, and when leadership is lost mid-pass (another replica now polls).
      signal: AbortSignal.any([signal, deps.leader.termSignal()]),
      onOutcome: (model, outcome) => schedule.record(model.id, outcome, clock.now()),
    });
    log.debug({ due: due.length, ...report, transitions: undefined, failures: undefined }, 'checked due models');
  };

  while (!signal.aborted) {
    const now = clock.now();
    let wakeAt = now + options.intervalMs;
    try {
      if (await deps.leader.refresh()) {
        if (now >= nextDiscoveryAt) {
          await discover(now);
          nextDiscoveryAt = now + options.intervalMs;
        }
        await checkDue(now);
        wakeAt = Math.min(nextDiscoveryAt, schedule.nextDueAt() ?? Infinity);
      } else {
        // A follower forgets: if it becomes leader it starts from what the database says then.
        schedule.clear();
        nextDiscoveryAt = 0;
      }
      consecutiveErrors = 0;
    } catch (error) {
      if (error instanceof AstriaAuthError) throw error;
      consecutiveErrors += 1;
      log.error({ err: (error as Error).message, consecutiveErrors }, 'reconcile loop failed; retrying');
      nextDiscoveryAt = 0;
    }
    try {
      await clock.sleep(Math.max(MIN_SLEEP_MS, wakeAt - clock.now()), signal);
    } catch {
      break; // aborted
    }
  }
}
