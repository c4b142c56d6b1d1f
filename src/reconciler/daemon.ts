import type pg from 'pg';
import { AstriaAuthError, type AstriaClient } from '../astria/client.js';
import type { Clock } from '../clock.js';
import { DEFAULT_CALLBACK_GRACE_MS } from '../db/callbacks.js';
import { DEFAULT_SCHEMA } from '../db/identifier.js';
import type { HostSchema } from '../db/host-names.js';
import { DEFAULT_ORPHAN_WINDOW_MS } from '../db/orphans.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { StatusService } from '../status/service.js';
import { AuthPause } from './auth-pause.js';
import { CallbackJudge } from './callback-judge.js';
import type { LeaderElection } from './leader.js';
import { Leadership } from './leadership.js';
import { KindWatches } from './kind-watches.js';
import { FailureReporter } from './loop-errors.js';
import { OrphanMatcher } from './orphans.js';

export interface DaemonDeps {
  pool: pg.Pool;
  astria: AstriaClient;
  service: StatusService;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
  leader: Pick<LeaderElection, 'refresh' | 'termSignal'>;
  /** The app's table and column names (RECONCILER_HOST_MAPPING); default vibephoto's. */
  host?: HostSchema;
}

export interface DaemonOptions {
  /** How often the in-flight models are re-read and lost callbacks judged; the longest wait between two looks at a model. */
  intervalMs: number;
  stuckAfterMs: number;
  trainingTimeoutMs: number;
  concurrency: number;
  /** `RECONCILER_MAX_NOT_FOUND_SHARE` (default 0.5). */
  maxNotFoundShare?: number;
  /** Aborting stops the loop; a round under way stops at its next Astria call. */
  signal: AbortSignal;
  /** How often in-flight tunes are observed (`RECONCILER_OBSERVE_EVERY`). */
  observeEveryMs?: number;
  /** How often in-flight prompts are observed (`RECONCILER_OBSERVE_PROMPTS_EVERY`); default `PROMPTS_EVERY_PER_TUNES_EVERY` × `observeEveryMs`. */
  observePromptsEveryMs?: number;
  /** `RECONCILER_CALLBACK_GRACE`. */
  callbackGraceMs?: number;
  /** While Astria rejects the key, how often it is tried again (`RECONCILER_AUTH_RETRY`). */
  authRetryMs?: number;
  /** Our own schema (callback records). */
  schema?: string;
  /** `RECONCILER_ORPHAN_WINDOW`: models without a tune id created this recently are matched to tunes, every interval. */
  orphanWindowMs?: number;
  /** `ASTRIA_TUNE_TITLE`. */
  tuneTitleTemplate?: string;
}

export const DAEMON_DEFAULTS = { observeEveryMs: 2_000, callbackGraceMs: DEFAULT_CALLBACK_GRACE_MS, authRetryMs: 2 * 60_000, schema: DEFAULT_SCHEMA, maxNotFoundShare: 0.5, orphanWindowMs: DEFAULT_ORPHAN_WINDOW_MS };

/**
 * Prompts are looked at less often than tunes unless told otherwise: a prompt has no eta, so every one
 * in flight is due every time, and a list page of each kind every 2 s alone is the 1 req/s an app with
 * 120 of each in flight may spend. Every 3 s (at the default 2 s for tunes) still holds the detection
 * bounds (lag p50 1.5 s, max 3 s); a faster `RECONCILER_OBSERVE_EVERY` speeds both kinds up.
 */
export const PROMPTS_EVERY_PER_TUNES_EVERY = 1.5;

/** Shortest sleep between two wake-ups, so a burst of due times cannot spin the loop. */
const MIN_SLEEP_MS = 50;
const MAX_ERROR_BACKOFF_MS = 30_000;

/**
 * The sidecar's loop. Every replica runs it; only the leader does anything but try to become leader.
 * The leader re-reads the in-flight models every few seconds and observes them in rounds of the
 * engine (watch.ts says when, round.ts how), and every interval judges which of its recoveries were
 * lost callbacks and which late (callback-judge.ts), alongside the rounds.
 *
 * It never exits on an external failure: a leadership attempt, discovery or round that fails is
 * counted in `loop_errors_total{reason}`, logged at error level (once a minute while it lasts, and
 * once when it ends) and retried with backoff; Astria's 401 pauses polling (`astria_auth_ok` 0), the
 * key is tried again every `authRetryMs` and polling resumes when Astria accepts it. One model's
 * failure (its write, its GET, a 404 the not-found guard holds back) is no loop error: that model
 * backs off (schedule.ts) and the round goes on.
 *
 * `last_success_timestamp_seconds` is set by the leader's iterations that did all that was due: no
 * error, the key accepted, and the latest round (this one, or the last before an iteration with no
 * round due, nothing in flight included) saw every tune it had to (the list answered, no 404 held
 * back). So it moves at least every interval while all is well, and stands still while rounds fail.
 */
export async function runDaemon(deps: DaemonDeps, options: DaemonOptions): Promise<void> {
  const { clock, log, metrics } = deps;
  const { signal } = options;
  const settings = { ...DAEMON_DEFAULTS, ...definedOnly(options) };
  const leadership = new Leadership(deps.leader, deps.pool, signal);
  const watches = new KindWatches(deps, {
    schema: settings.schema,
    intervalMs: options.intervalMs,
    stuckAfterMs: options.stuckAfterMs,
    observeEveryMs: settings.observeEveryMs,
    observePromptsEveryMs: settings.observePromptsEveryMs ?? Math.round(PROMPTS_EVERY_PER_TUNES_EVERY * settings.observeEveryMs),
    trainingTimeoutMs: options.trainingTimeoutMs,
    concurrency: options.concurrency,
    maxNotFoundShare: settings.maxNotFoundShare,
  });
  const judge = new CallbackJudge(deps, { schema: settings.schema, graceMs: settings.callbackGraceMs, everyMs: options.intervalMs });
  const orphans = new OrphanMatcher(deps, {
    windowMs: settings.orphanWindowMs,
    titleTemplate: options.tuneTitleTemplate,
    dryRun: false,
    everyMs: options.intervalMs,
  });
  const auth = new AuthPause(settings.authRetryMs);
  const failures = new FailureReporter(deps);
  let consecutiveErrors = 0;

  const keyAccepted = () => {
    if (!auth.accepted()) return;
    metrics.astriaAuthOk.set(1);
    log.info('Astria accepts the API key again; polling resumed');
  };

  /** One iteration as the leader: discovery and a round when due, or a try of a rejected key. Returns when to wake. */
  const lead = async (now: number): Promise<number> => {
    await watches.detect();
    if (now >= watches.tunes.nextDiscoveryAt) {
      // Before discovery: a model linked to its tune is in flight at once.
      if (auth.mayCall(now)) await orphans.runIfDue(now, leadership.roundSignal());
      judge.judgeIfDue(now);
    }
    let roundRan = false;
    for (const each of watches.all) {
      if (now >= each.nextDiscoveryAt) await each.discover(now);
      const roundAt = each.nextRoundAt();
      if (auth.mayCall(now) && roundAt !== null && roundAt <= now) {
        await each.round(now, leadership.roundSignal(), keyAccepted);
        roundRan = true;
      }
    }
    if (!roundRan && auth.mayCall(now) && auth.paused) {
      // Nothing to observe, but the key must be proved before the gauge can say it works.
      const probe = await deps.astria.listTunes({ limit: 1 }, signal);
      if (probe.kind === 'page') keyAccepted();
      else auth.rejected(now); // Astria is failing otherwise: try again later
    }
    if (watches.all.every((each) => each.completed) && !auth.paused) metrics.lastSuccess.set(clock.now() / 1000);
    // While the key is rejected only its retry (and the next discovery) wakes the loop.
    return Math.min(...watches.all.map((each) => Math.min(each.nextDiscoveryAt, (auth.paused ? auth.nextTryAt : each.nextRoundAt()) ?? Infinity)));
  };

  /** A follower forgets, and its gauges say so: the alerts take min/max over replicas, so a stale 0 or count would outlive a failover. */
  const follow = () => {
    for (const each of watches.all) each.forget();
    orphans.forget();
    auth.accepted();
    metrics.astriaAuthOk.set(1);
    metrics.inflightModels.set(0);
  };

  /** Counts and logs a failed iteration; returns when to try again. */
  const failed = (error: unknown, now: number): number => {
    if (error instanceof AstriaAuthError) {
      failures.failed(error, clock.now(), 'Astria rejected the API key; polling paused, the key will be tried again', { retryInMs: settings.authRetryMs });
      auth.rejected(clock.now());
      metrics.astriaAuthOk.set(0);
      return Math.min(auth.nextTryAt!, watches.tunes.nextDiscoveryAt);
    }
    if (leadership.cutShort(error)) {
      log.info('leadership lost during a round; it stopped');
      // Try for the lock again soon: a term lost to a dropped connection is usually won straight back.
      return now + settings.observeEveryMs;
    }
    consecutiveErrors += 1;
    failures.failed(error, now, 'reconcile loop failed; retrying', { consecutiveErrors });
    for (const each of watches.all) each.rediscoverSoon();
    return now + Math.min(MAX_ERROR_BACKOFF_MS, settings.observeEveryMs * 2 ** Math.min(consecutiveErrors - 1, 10));
  };

  while (!signal.aborted) {
    const now = clock.now();
    let wakeAt = now + options.intervalMs;
    try {
      if (await leadership.attempt()) wakeAt = await lead(now);
      else follow();
      consecutiveErrors = 0;
      if (!auth.paused) failures.succeeded(clock.now());
    } catch (error) {
      if (signal.aborted) break;
      wakeAt = failed(error, now);
    }
    try {
      await clock.sleep(Math.max(MIN_SLEEP_MS, wakeAt - clock.now()), signal);
    } catch {
      break; // aborted
    }
  }
  await Promise.all([judge.settled(), ...watches.all.map((each) => each.settled())]);
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, entry]) => entry !== undefined)) as Partial<T>;
}
