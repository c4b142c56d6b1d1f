import { AstriaAuthError } from '../astria/client.js';
import { classifyReconcilerRecoveries, DEFAULT_CALLBACK_GRACE_MS } from '../db/callbacks.js';
import { selectInFlightTunesPage, type InFlightTune } from '../db/inflight-tunes.js';
import type { StatusService } from '../status/service.js';
import type { LeaderElection } from './leader.js';
import { RetryWrites, observeRound, type RoundOutcome } from './observe.js';
import type { PassDeps } from './pass.js';
import { ObservationSchedule } from './schedule.js';

export interface DaemonDeps extends PassDeps {
  service: StatusService;
  leader: LeaderElection;
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
  /** `RECONCILER_CALLBACK_GRACE`. */
  callbackGraceMs?: number;
  /** While Astria rejects the key, how often it is tried again (`RECONCILER_AUTH_RETRY`). */
  authRetryMs?: number;
  /** Our own schema (callback records). */
  schema?: string;
}

export const DAEMON_DEFAULTS = { observeEveryMs: 2_000, callbackGraceMs: DEFAULT_CALLBACK_GRACE_MS, authRetryMs: 2 * 60_000, schema: 'astria_reconciler' };

/** Shortest sleep between two wake-ups, so a burst of due times cannot spin the loop. */
const MIN_SLEEP_MS = 50;
const DISCOVERY_PAGE_SIZE = 2_000;
/**
 * In-flight models are re-read at least this often (or every `RECONCILER_INTERVAL` when shorter): a row
 * already past its grace when it appears (written without bumping `updatedAt`) is seen within seconds.
 */
const MAX_DISCOVERY_EVERY_MS = 5_000;
/** Tune ids one list page spans when the account's tunes are dense: the pessimistic first guess. */
const DENSE_IDS_PER_PAGE = 120;
/** A rejected key is logged at most this often (each retry still says whether it worked). */
const AUTH_LOG_EVERY_MS = 60_000;
/** A failing tune list is logged at most this often (rounds come every few seconds). */
const LIST_FAILURE_LOG_EVERY_MS = 60_000;
const MAX_ERROR_BACKOFF_MS = 30_000;

/**
 * The sidecar's loop. Every replica runs it; only the leader does anything but try to become leader.
 * The leader re-reads the in-flight models every interval and observes them in rounds
 * (src/reconciler/schedule.ts says when, observe.ts how): the list pages covering the in-flight tune
 * ids, single GETs for stragglers. Rounds run one after the other, so no model is checked twice at
 * once. Every interval it also judges which of its recoveries were lost callbacks and which late,
 * alongside the rounds: a judgement that fails or takes long never holds them up.
 *
 * It never exits on an external failure: a database or Astria error that stops a round (or the
 * judgement) is logged, counted in `loop_errors_total` and retried with backoff; Astria's 401 pauses
 * polling (`astria_auth_ok` 0), the key is tried again every `authRetryMs` and polling resumes when
 * Astria accepts it. One model's failure (its write, its GET, a 404 the not-found guard holds back)
 * is no loop error: that model backs off (schedule.ts) and the round goes on.
 *
 * `last_success_timestamp_seconds` is set by the leader's iterations that did all that was due: no
 * error, the key accepted, and the latest round (this one, or the last before an iteration with no
 * round due, nothing in flight included) saw every tune it had to (the list answered, no 404 held
 * back). So it moves at least every interval while all is well, and stands still while rounds fail.
 */
export async function runDaemon(deps: DaemonDeps, options: DaemonOptions): Promise<void> {
  const { clock, log, metrics, leader } = deps;
  const { signal } = options;
  const settings = { ...DAEMON_DEFAULTS, ...definedOnly(options) };
  const schedule = new ObservationSchedule({
    observeEveryMs: settings.observeEveryMs,
    longestWaitMs: Math.max(options.intervalMs, settings.observeEveryMs),
    stuckAfterMs: options.stuckAfterMs,
  });
  let idsPerPage = DENSE_IDS_PER_PAGE;
  let nextDiscoveryAt = 0;
  let nextJudgeAt = 0;
  let consecutiveErrors = 0;
  /** Set while Astria rejects the key: when to try it again. */
  let authRetryAt: number | null = null;
  let authLoggedAt = -Infinity;
  let listFailureLoggedAt = -Infinity;
  /** Whether the latest round of this term saw every tune it had to. */
  let lastRoundCompleted = true;
  /** The lost/late judgement under way, if any: at most one at a time, never awaited by a round. */
  let judging: Promise<void> | null = null;
  const retryWrites = new RetryWrites();
  /** Shutdown or the end of this leader term, combined once per term (each combination costs memory for as long as `signal` lives). */
  let roundSignal: { term: AbortSignal; combined: AbortSignal } | null = null;
  const roundSignalNow = () => {
    const term = leader.termSignal();
    if (roundSignal?.term !== term) roundSignal = { term, combined: AbortSignal.any([signal, term]) };
    return roundSignal.combined;
  };

  const judge = async (now: number) => {
    try {
      const judged = await classifyReconcilerRecoveries(deps.pool, settings.schema, settings.callbackGraceMs);
      metrics.lostCallbacks.inc(judged.lost);
      metrics.lateCallbacks.inc(judged.late);
      if (judged.lost > 0) log.warn({ lost: judged.lost }, 'Astria callbacks lost: the reconciler applied these and no callback came');
    } catch (error) {
      metrics.loopErrors.inc();
      log.error({ err: (error as Error).message }, 'judging lost callbacks failed; polling goes on, judged again next interval');
    }
  };

  const discover = async (now: number) => {
    const inFlight: InFlightTune[] = [];
    for (let afterId: string | null = null; ; ) {
      const page = await selectInFlightTunesPage(deps.pool, afterId, DISCOVERY_PAGE_SIZE);
      inFlight.push(...page);
      if (page.length < DISCOVERY_PAGE_SIZE) break;
      afterId = page.at(-1)!.id;
    }
    schedule.sync(inFlight, now);
    metrics.inflightModels.set(inFlight.length);
    if (now >= nextJudgeAt) {
      nextJudgeAt = now + options.intervalMs;
      judging ??= judge(now).finally(() => (judging = null));
    }
  };

  /** `now`: when the round started, so a look late in the round still keeps the next one on the cadence. */
  const record = (now: number, modelId: string, outcome: RoundOutcome) => {
    // A retried write may end after its round: its backoff starts from when it failed.
    if (outcome.kind === 'failed') return schedule.failed(modelId, clock.now());
    if (outcome.kind !== 'observed') return schedule.unobserved(modelId, now);
    if (outcome.status !== 'PROCESSING' && outcome.status !== 'TRAINING') return schedule.forget(modelId);
    if (outcome.wrote === 'progress') schedule.progressWritten(modelId, clock.now());
    schedule.stillTraining(modelId, now);
  };

  /** Whether the round saw every tune it had to. */
  const round = async (now: number): Promise<boolean> => {
    schedule.roundStarted(now);
    const unobserved: { tuneId: number; reason: string }[] = [];
    const report = await observeRound(deps, {
      items: schedule.roundItems(now),
      idsPerPage,
      trainingTimeoutMs: options.trainingTimeoutMs,
      concurrency: options.concurrency,
      maxNotFoundShare: options.maxNotFoundShare ?? 0.5,
      // Stops on shutdown, and when leadership is lost mid-round (another replica now polls).
      signal: roundSignalNow(),
      progressWriteDue: (modelId) => schedule.progressWriteDue(modelId, clock.now()),
      failureState: (modelId) => schedule.failureState(modelId, now),
      retryWrites,
      onOutcome: (modelId, outcome) => record(now, modelId, outcome),
      onUnobserved: (tuneId, reason) => void unobserved.push({ tuneId, reason }),
      onVacant: (tuneId) => schedule.modelsOfTune(tuneId).forEach((modelId) => schedule.forget(modelId)),
    });
    metrics.passDuration.observe((clock.now() - now) / 1000);
    metrics.inflightModels.set(schedule.size);
    idsPerPage = report.idsPerPage;
    schedule.roundFinished({ retried: report.retried || report.incomplete !== null || report.listFailed !== null });
    if (report.listFailed !== null && now - listFailureLoggedAt >= LIST_FAILURE_LOG_EVERY_MS) {
      listFailureLoggedAt = now;
      log.warn({ reason: report.listFailed, singleGets: report.singleGets }, 'tune list failed; its tunes were fetched one by one');
    }
    if (report.calls > 0) restoreAuth();
    log.debug({ ...report, inFlight: schedule.size, cadenceMs: schedule.cadenceMs }, 'observation round');
    if (report.incomplete !== null) throw new Error(report.incomplete);
    // Astria answered nothing (down, or failing every request): the round failed, not its models, so
    // none backs off on its own (the loop's backoff spares Astria) and all are due once it answers.
    if (report.observed === 0 && unobserved.length > 0) {
      throw new Error(`Astria answered none of the round's requests (${report.listFailed ?? unobserved[0]!.reason})`);
    }
    for (const { tuneId, reason } of unobserved) {
      log.warn({ tuneId, reason }, 'could not observe tune');
      for (const modelId of schedule.modelsOfTune(tuneId)) schedule.failed(modelId, now);
    }
    const refused = report.notFoundRefused;
    if (refused === null) return true;
    // Held back, not failed: those models back off like any model that could not be observed.
    log.warn({ reason: refused.reason, tunes: refused.tuneIds.length }, '404s not applied');
    for (const tuneId of refused.tuneIds) for (const modelId of schedule.modelsOfTune(tuneId)) schedule.failed(modelId, now);
    return false;
  };

  const restoreAuth = () => {
    if (authRetryAt === null) return;
    authRetryAt = null;
    metrics.astriaAuthOk.set(1);
    log.info('Astria accepts the API key again; polling resumed');
  };

  const authRejected = (error: AstriaAuthError, now: number) => {
    const first = authRetryAt === null;
    authRetryAt = now + settings.authRetryMs;
    metrics.astriaAuthOk.set(0);
    if (first || now - authLoggedAt >= AUTH_LOG_EVERY_MS) {
      authLoggedAt = now;
      log.error({ err: error.message, retryInMs: settings.authRetryMs }, 'Astria rejected the API key; polling paused, the key will be tried again');
    }
  };

  while (!signal.aborted) {
    const now = clock.now();
    let wakeAt = now + options.intervalMs;
    try {
      if (await leader.refresh()) {
        if (now >= nextDiscoveryAt) {
          await discover(now);
          nextDiscoveryAt = now + Math.min(options.intervalMs, MAX_DISCOVERY_EVERY_MS);
        }
        const roundAt = schedule.nextRoundAt();
        const authOk = authRetryAt === null || now >= authRetryAt;
        if (authOk && roundAt !== null && roundAt <= now) {
          lastRoundCompleted = false;
          lastRoundCompleted = await round(now);
        } else if (authOk && authRetryAt !== null) {
          // Nothing to observe, but the key must be proved before the gauge can say it works.
          const probe = await deps.astria.listTunes({ limit: 1 }, signal);
          if (probe.kind === 'page') restoreAuth();
          else authRetryAt = now + settings.authRetryMs; // Astria is failing otherwise: try again later
        }
        // While the key is rejected only its retry (and the next discovery) wakes the loop.
        const next = authRetryAt === null ? schedule.nextRoundAt() : authRetryAt;
        wakeAt = Math.min(nextDiscoveryAt, next ?? Infinity);
        if (lastRoundCompleted && authRetryAt === null) metrics.lastSuccess.set(clock.now() / 1000);
      } else {
        // A follower forgets: if it becomes leader it starts from what the database says then. Its
        // gauges say so too: the new leader reports the key and the in-flight models (the alerts take
        // min/max over replicas, so a stale 0 or count here would outlive a failover).
        schedule.clear();
        nextDiscoveryAt = 0;
        lastRoundCompleted = true;
        authRetryAt = null;
        authLoggedAt = -Infinity;
        metrics.astriaAuthOk.set(1);
        metrics.inflightModels.set(0);
      }
      consecutiveErrors = 0;
    } catch (error) {
      if (signal.aborted) break;
      if (error instanceof AstriaAuthError) {
        metrics.loopErrors.inc();
        authRejected(error, clock.now());
        wakeAt = Math.min(authRetryAt!, nextDiscoveryAt);
      } else if (leader.termSignal().aborted) {
        log.info('leadership lost during a round; it stopped');
        // Try for the lock again soon: a term lost to a dropped connection is usually won straight back.
        wakeAt = now + settings.observeEveryMs;
      } else {
        metrics.loopErrors.inc();
        consecutiveErrors += 1;
        log.error({ err: (error as Error).message, consecutiveErrors }, 'reconcile loop failed; retrying');
        nextDiscoveryAt = 0;
        wakeAt = now + Math.min(MAX_ERROR_BACKOFF_MS, settings.observeEveryMs * 2 ** Math.min(consecutiveErrors - 1, 10));
      }
    }
    try {
      await clock.sleep(Math.max(MIN_SLEEP_MS, wakeAt - clock.now()), signal);
    } catch {
      break; // aborted
    }
  }
  await Promise.all([judging, retryWrites.settled()]);
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, entry]) => entry !== undefined)) as Partial<T>;
}
