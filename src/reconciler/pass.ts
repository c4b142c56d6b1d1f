import pLimit from 'p-limit';
import pg from 'pg';
import { MAX_LIST_LIMIT, type AstriaClient, type TuneResult } from '../astria/client.js';
import { isTuneId, type Observation, type Tune } from '../astria/tune.js';
import type { Clock } from '../clock.js';
import { selectInFlightByTuneIds, selectInFlightPage, summarizeInFlight, type InFlightFilter } from '../db/inflight.js';
import { isModelWriteFailure } from '../db/write-failure.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { decide, type ModelRow, type ModelStatus } from '../status/rules.js';
import type { StatusService } from '../status/service.js';
import { shouldContinueListScan, shouldStartListScan } from './plan.js';

export interface PassDeps {
  pool: pg.Pool;
  astria: AstriaClient;
  /** Absent in a dry run: nothing may be written. */
  service: StatusService | null;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
}

/** What one model's check came to; the daemon schedules its next look from it. */
export type ModelOutcome =
  /** The status changed (or would have, in a dry run). */
  | { kind: 'transitioned'; to: ModelStatus }
  /** Still in the same status; `tune` is what Astria said (null when another writer won the race). */
  | { kind: 'unchanged'; tune: Tune | null }
  | { kind: 'failed'; reason: string };

export interface PassOptions {
  /** Which models: in flight (optionally only these ids, optionally ERROR too), stuck for this long. */
  filter: InFlightFilter;
  trainingTimeoutMs: number;
  /** Astria requests in flight at once. */
  concurrency: number;
  /** Concurrent database writes (stay below the pool size). */
  writeConcurrency?: number;
  /** `single-gets` skips the list scan (benchmarks compare the two). */
  plan?: 'auto' | 'single-gets';
  /**
   * Aborting stops the pass: no new check starts, and Astria calls under way or queued (budget waits,
   * retries) are cut short; database writes under way finish.
   */
  signal?: AbortSignal;
  /**
   * Share of the pass's checked models whose tunes may answer 404 before the pass refuses to mark
   * them ERROR (RECONCILER_MAX_NOT_FOUND_SHARE): so many gone at once, with no answer from the tune
   * list to prove the endpoint, means a wrong endpoint, not deleted tunes. Default 0.5.
   */
  maxNotFoundShare?: number;
  onProgress?: (progress: PassProgress) => void;
  onOutcome?: (model: ModelRow, outcome: ModelOutcome) => void;
}

export interface PassProgress {
  total: number;
  checked: number;
  transitioned: number;
  failed: number;
}

export interface PassReport {
  checked: number;
  transitioned: number;
  unchanged: number;
  failed: number;
  apiCalls: number;
  durationMs: number;
  transitions: { modelId: string; from: ModelStatus; to: ModelStatus }[];
  failures: { modelId: string; reason: string }[];
  dryRun: boolean;
  plan: { listPages: number; singleGets: number };
  /** Why the pass stopped before applying everything it saw (a wrong endpoint), null when it did not. */
  stopped: string | null;
}

const MODEL_PAGE_SIZE = 500;
/** The not-found guard needs this many 404s at least: one deleted tune among two models is no outage. */
const MIN_NOT_FOUND_FOR_GUARD = 3;

/**
 * The not-found guard of a pass or a daemon round: that many tunes "deleted" at once may be a wrong
 * `ASTRIA_API_URL` (or something in front of it) answering Astria's JSON 404, or another account's
 * key (its list answers, none of our tunes on it), not deleted tunes. One of the models' tunes shown
 * in the same pass or round (on a list page or by its GET) proves endpoint and account, so the guard
 * applies only when none was. Returns why the 404s must not be applied, or null when they may.
 */
export function notFoundGuard(count: { gone: number; checked: number; tunesShown: number }, maxShare: number): string | null {
  const { gone, checked } = count;
  if (gone < MIN_NOT_FOUND_FOR_GUARD || gone <= maxShare * checked || count.tunesShown > 0) return null;
  return `${gone} of ${checked} checked models' tunes answered 404, more than RECONCILER_MAX_NOT_FOUND_SHARE=${maxShare}, and Astria showed none of their tunes: none was marked ERROR; check ASTRIA_API_URL, and that ASTRIA_API_KEY is the account that created them`;
}

/**
 * One reconciliation pass: every selected model is observed once (list scan where it is cheaper,
 * single GETs for the rest), decided by the status rules and applied through the status service.
 * Astria failures are counted per model; database and auth errors abort the pass.
 */
export async function runPass(deps: PassDeps, options: PassOptions): Promise<PassReport> {
  const started = deps.clock.now();
  const callsBefore = deps.astria.calls;
  const { filter } = options;
  const summary = await summarizeInFlight(deps.pool, filter);
  if (!filter.modelIds) deps.metrics.inflightModels.set(summary.count);

  const report: PassReport = {
    checked: 0,
    transitioned: 0,
    unchanged: 0,
    failed: 0,
    apiCalls: 0,
    durationMs: 0,
    transitions: [],
    failures: [],
    dryRun: deps.service === null,
    plan: { listPages: 0, singleGets: 0 },
    stopped: null,
  };
  const writes = pLimit(options.writeConcurrency ?? 8);
  // The first error a check throws (database gone, Astria 401) stops the pass: nothing new starts,
  // the checks under way finish, then it is rethrown. No work is left running behind a failed pass.
  // A check cut short by the pass's own signal is no error: it is simply not counted.
  let fatal: unknown;
  const aborted = () => options.signal?.aborted ?? false;
  const stopped = () => aborted() || fatal !== undefined || report.stopped !== null;
  const guarded = (work: Promise<void>): Promise<void> =>
    work.catch((error: unknown) => {
      if (!aborted()) fatal ??= error;
    });
  // Models whose tune answered 404: marked ERROR only once the pass knows they are few (the guard).
  const gone: { model: ModelRow; tuneId: string }[] = [];
  // Models whose tune Astria showed (list or GET): proof for the guard that endpoint and account are right.
  let tunesShown = 0;

  const record = (model: ModelRow, outcome: ModelOutcome, from: ModelStatus) => {
    report.checked += 1;
    if (outcome.kind === 'transitioned') {
      report.transitioned += 1;
      report.transitions.push({ modelId: model.id, from, to: outcome.to });
      deps.log.info({ modelId: model.id, from, to: outcome.to, dryRun: report.dryRun }, 'model status reconciled');
    } else if (outcome.kind === 'failed') {
      report.failed += 1;
      report.failures.push({ modelId: model.id, reason: outcome.reason });
      deps.log.warn({ modelId: model.id, reason: outcome.reason }, 'could not check model');
    } else report.unchanged += 1;
    options.onOutcome?.(model, outcome);
    options.onProgress?.({ total: summary.count, checked: report.checked, transitioned: report.transitioned, failed: report.failed });
  };

  const settle = async (model: ModelRow, observation: Observation): Promise<ModelOutcome> => {
    const tune = observation.kind === 'tune' ? observation.tune : null;
    const transition = decide(model, observation, new Date(deps.clock.now()), {
      trainingTimeoutMs: options.trainingTimeoutMs,
      // ERROR models are selected only when an operator names them.
      healAnyError: options.filter.includeError,
    });
    if (!transition) return { kind: 'unchanged', tune };
    if (deps.service) {
      let result;
      try {
        result = await writes(() => deps.service!.apply(transition, 'reconciler'));
      } catch (error) {
        if (!isModelWriteFailure(error)) throw error;
        return { kind: 'failed', reason: `database refused the write: ${(error as Error).message}` };
      }
      if (!result.applied) {
        deps.log.debug({ modelId: model.id, from: transition.from }, 'model changed meanwhile; left to the writer that won');
        return { kind: 'unchanged', tune: null };
      }
    }
    return transition.to === transition.from ? { kind: 'unchanged', tune } : { kind: 'transitioned', to: transition.to };
  };

  /** Checks one model: `observe` is called only for a usable tune id. */
  const check = async (model: ModelRow, observe: () => Promise<TuneResult>): Promise<void> => {
    let outcome: ModelOutcome;
    if (!isTuneId(model.trainingJobId)) {
      outcome = { kind: 'failed', reason: `trainingJobId "${model.trainingJobId}" is not an Astria tune id` };
    } else {
      const result = await observe();
      if (result.kind === 'gone') {
        gone.push({ model, tuneId: result.tuneId });
        return;
      }
      if (result.kind === 'tune') tunesShown += 1;
      outcome = result.kind === 'failed' ? { kind: 'failed', reason: result.reason } : await settle(model, { kind: 'tune', tune: result.tune });
    }
    record(model, outcome, model.status);
  };

  const seen = new Set<string>();
  if (options.plan !== 'single-gets' && summary.oldestTuneId !== null && shouldStartListScan(summary.checkable)) {
    await listScan(deps, options, summary.oldestTuneId, summary.checkable, seen, (model, observe) => guarded(check(model, observe)), report, stopped).catch(
      (error: unknown) => {
        if (!aborted()) throw error;
      },
    );
  }

  // Whatever the list did not show: one GET each, a keyset page of models at a time. The slots are
  // taken here, not in the client, so a stop request leaves the queued checks unstarted.
  const slots = pLimit(options.concurrency);
  for (let afterId: string | null = null; !stopped(); ) {
    const models = await selectInFlightPage(deps.pool, filter, afterId, MODEL_PAGE_SIZE);
    if (models.length === 0) break;
    afterId = models.at(-1)!.id;
    await Promise.all(
      models
        .filter((model) => !seen.has(model.id))
        .map((model) =>
          slots(async () => {
            if (stopped()) return;
            await guarded(
              check(model, () => {
                report.plan.singleGets += 1;
                return deps.astria.getTune(model.trainingJobId!, options.signal);
              }),
            );
          }),
        ),
    );
  }

  if (fatal !== undefined) throw fatal;
  // A stopped pass writes nothing more: its 404s are looked at again by the next one.
  if (!aborted()) {
    const markGone = (model: ModelRow, tuneId: string) =>
      guarded(settle(model, { kind: 'gone', tuneId }).then((outcome) => record(model, outcome, model.status)));
    await settleGone(gone, report, tunesShown, options.maxNotFoundShare ?? 0.5, markGone, (model, outcome) => record(model, outcome, model.status));
  }
  if (fatal !== undefined) throw fatal;
  if (report.stopped) deps.log.error({ reason: report.stopped }, 'pass stopped');
  report.apiCalls = deps.astria.calls - callsBefore;
  report.durationMs = deps.clock.now() - started;
  deps.metrics.passDuration.observe(report.durationMs / 1000);
  return report;
}

/**
 * Pages `GET /tunes` newest first down to the oldest selected tune, settling each page's models while
 * the next page is fetched. Stops early when the plan says single GETs are now cheaper. `check` never
 * rejects: the caller records a failure and makes `stopped()` true.
 */
async function listScan(
  deps: PassDeps,
  options: PassOptions,
  oldestTuneId: number,
  checkable: number,
  seen: Set<string>,
  check: (model: ModelRow, observe: () => Promise<TuneResult>) => Promise<void>,
  report: PassReport,
  stopped: () => boolean,
): Promise<void> {
  const settling: Promise<void>[] = [];
  let beforeId: number | null = null;
  let newestId: number | null = null;
  // Even when a page request throws (Astria 401), the writes already started finish first.
  try {
    while (!stopped()) {
      const page = await deps.astria.listTunes({ beforeId, limit: MAX_LIST_LIMIT }, options.signal);
      if (page.kind === 'failed') {
        // The list's own 404: the base URL is wrong, so single GETs' 404s would be no better.
        if (page.endpointMissing) {
          report.stopped = `${page.reason}; no model was checked`;
          break;
        }
        deps.log.warn({ reason: page.reason }, 'tune list failed; falling back to single GETs');
        break;
      }
      report.plan.listPages += 1;
      if (page.nextBeforeId === null) break;
      newestId ??= Math.max(page.nextBeforeId, ...page.tunes.map((tune) => tune.id));
      const tunes = new Map(page.tunes.filter((tune) => tune.id >= oldestTuneId).map((tune) => [tune.id, tune]));
      const models = await selectInFlightByTuneIds(deps.pool, options.filter, [...tunes.keys()]);
      for (const model of models) {
        if (seen.has(model.id)) continue;
        seen.add(model.id);
        const tune = tunes.get(Number(model.trainingJobId))!;
        settling.push(check(model, async () => ({ kind: 'tune', tune })));
      }
      beforeId = page.nextBeforeId;
      const scan = { pages: report.plan.listPages, newestId, nextBeforeId: beforeId, oldestTuneId, unseenModels: checkable - seen.size };
      if (!shouldContinueListScan(scan)) break;
    }
  } finally {
    await Promise.all(settling);
  }
}

/**
 * The not-found guard: when more than `maxShare` of the pass's checked models (and at least a few)
 * have tunes answering 404 and the tune list never answered, the endpoint is wrong, not the tunes
 * deleted: none is marked ERROR, each counts as failed, and the pass says why. Otherwise each becomes
 * ERROR "Astria tune N not found".
 */
async function settleGone(
  gone: { model: ModelRow; tuneId: string }[],
  report: PassReport,
  tunesShown: number,
  maxShare: number,
  markGone: (model: ModelRow, tuneId: string) => Promise<void>,
  refuse: (model: ModelRow, outcome: ModelOutcome) => void,
): Promise<void> {
  if (gone.length === 0) return;
  const refused = notFoundGuard({ gone: gone.length, checked: report.checked + gone.length, tunesShown }, maxShare);
  if (refused !== null) {
    report.stopped = refused;
    for (const { model } of gone) refuse(model, { kind: 'failed', reason: 'tune answered 404; not marked ERROR (too many 404s in this pass)' });
    return;
  }
  await Promise.all(gone.map(({ model, tuneId }) => markGone(model, tuneId)));
}
