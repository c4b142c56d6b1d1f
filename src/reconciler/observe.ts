import pLimit from 'p-limit';
import type pg from 'pg';
import { MAX_LIST_LIMIT, type AstriaClient, type TuneResult } from '../astria/client.js';
import type { Observation } from '../astria/tune.js';
import type { Clock } from '../clock.js';
import { selectInFlightByTuneIds, type InFlightFilter } from '../db/inflight.js';
import type { Logger } from '../log.js';
import { decide, type ModelStatus } from '../status/rules.js';
import type { StatusService } from '../status/service.js';
import { notFoundGuard } from './pass.js';
import { planPages, type PagePlanItem } from './plan.js';
import type { FailureState } from './schedule.js';

export interface RoundDeps {
  pool: pg.Pool;
  astria: AstriaClient;
  service: StatusService;
  log: Logger;
  clock: Clock;
}

/** What one look at one in-flight model came to. */
export type RoundOutcome =
  /** Astria answered; `status` is the model's status after this look, `wrote` what was written. */
  | { kind: 'observed'; status: ModelStatus; wrote: 'status' | 'progress' | null }
  /** Another writer changed the row between our read and our write: nothing written by us. */
  | { kind: 'raced' }
  /** The write failed (that model's failure alone). */
  | { kind: 'failed'; reason: string };

export interface RoundOptions {
  /** The tunes of the in-flight models: weight 1 must be seen this round, weight 0 only if on a page anyway. */
  items: PagePlanItem[];
  /** Tune ids one list page spans, as last measured (120 when the account's tunes are dense in id). */
  idsPerPage: number;
  trainingTimeoutMs: number;
  /** Single GETs in flight at once. */
  concurrency: number;
  /** `RECONCILER_MAX_NOT_FOUND_SHARE`: more 404s than this share of the round's tunes are applied to none, unless Astria showed one of them. */
  maxNotFoundShare: number;
  signal: AbortSignal;
  /** Whether a progress-only write (no status change) is due for this model. */
  progressWriteDue(modelId: string): boolean;
  /** A model backing off after failures is not written; one retrying is written through `retryWrites`. */
  failureState(modelId: string): FailureState;
  retryWrites: RetryWrites;
  onOutcome(modelId: string, outcome: RoundOutcome): void;
  /** A tune that was to be seen and could not be (its GET failed after retries). */
  onUnobserved(tuneId: number, reason: string): void;
  /** A tune seen with no in-flight model any more (the webhook or the app got there first). */
  onVacant(tuneId: number): void;
}

export interface RoundReport {
  listPages: number;
  singleGets: number;
  /** Requests sent, retries included. */
  calls: number;
  /** Tunes to be seen that Astria answered for (a 404 included), on a page or by their GET. */
  observed: number;
  /** Some request needed a retry (429, 5xx, timeout): the cadence should slow down. */
  retried: boolean;
  /** Tune ids one page spanned this round (the estimate handed back when no full page was seen). */
  idsPerPage: number;
  /** Why the round could not see every tune it should have (the list's own 404: a wrong base URL); null when it did. */
  incomplete: string | null;
  /** Why a list page failed otherwise (5xx, a bad body, ...): the tunes it would have shown were fetched one by one. */
  listFailed: string | null;
  /** The not-found guard held these 404s back (Astria showed none of the round's tunes), and why. */
  notFoundRefused: { reason: string; tuneIds: number[] } | null;
}

const IN_FLIGHT: InFlightFilter = { stuckBefore: null, modelIds: null, includeError: false };
const WRITE_CONCURRENCY = 8;
/** Retried writes at once, beside the round's 8 (the pool holds 10). */
const RETRY_WRITE_CONCURRENCY = 2;

/**
 * Writes of models retrying after a failed write (a row the app keeps locked waits out the lock
 * timeout each time): they run beside the rounds, not in them, so they neither take a healthy model's
 * slot nor hold a round up; a model whose retry is under way is left out of the rounds until it ends.
 * The daemon keeps one for its lifetime and waits for it at shutdown.
 */
export class RetryWrites {
  private readonly slots = pLimit(RETRY_WRITE_CONCURRENCY);
  private readonly underway = new Map<string, Promise<void>>();

  has(modelId: string): boolean {
    return this.underway.has(modelId);
  }

  start(modelId: string, write: () => Promise<void>): void {
    const done = this.slots(write)
      .catch(() => undefined) // `write` reports its own outcome
      .finally(() => this.underway.delete(modelId));
    this.underway.set(modelId, done);
  }

  async settled(): Promise<void> {
    await Promise.all(this.underway.values());
  }
}

/**
 * One observation round: list pages from just above the newest in-flight tune down as far as the plan
 * says (re-planned after each page with the density measured), then single GETs for the tunes that
 * must be seen and were not (stragglers below the pages, tunes the list did not show: deleted or
 * unreadable ones, which the GET answers with a 404 or the tune, and all below a page that failed). Each page's models are settled while
 * the next page is fetched: decided by the status rules and written through the status service.
 * A model's failed write or GET is that model's failure (reported through `onOutcome`/`onUnobserved`);
 * 404s are applied unless the not-found guard holds them back. A database error reading the models
 * ends the round (after the writes under way); Astria's 401 and an abort propagate.
 */
export async function observeRound(deps: RoundDeps, options: RoundOptions): Promise<RoundReport> {
  const callsBefore = deps.astria.calls;
  const report: RoundReport = {
    listPages: 0,
    singleGets: 0,
    calls: 0,
    observed: 0,
    retried: false,
    idsPerPage: options.idsPerPage,
    incomplete: null,
    listFailed: null,
    notFoundRefused: null,
  };
  const wanted = new Map(options.items.map((item) => [item.tuneId, item]));
  const seen = new Set<number>();
  const writes = pLimit(WRITE_CONCURRENCY);
  const settling: Promise<void>[] = [];
  let fatal: unknown;
  const settle = (observations: Map<number, Observation>) =>
    settling.push(settleObservations(deps, options, observations, wanted, writes).catch((error: unknown) => void (fatal ??= error)));

  // Single GETs start as soon as a tune is known to need one, alongside the pages still to come.
  const slots = pLimit(options.concurrency);
  const gets: Promise<void>[] = [];
  // 404s wait for the end of the round: too many of them at once are a wrong endpoint, not deleted tunes.
  const gone: number[] = [];
  let observedWanted = 0;
  // Wanted tunes Astria showed (list or GET): proof for the not-found guard.
  let tunesShown = 0;
  const getOne = (tuneId: number) =>
    gets.push(
      slots(async () => {
        if (fatal !== undefined) return;
        report.singleGets += 1;
        const result: TuneResult = await deps.astria.getTune(String(tuneId), options.signal);
        if (result.kind === 'failed') return options.onUnobserved(tuneId, result.reason);
        observedWanted += 1;
        if (result.kind === 'gone') return void gone.push(tuneId);
        tunesShown += 1;
        settle(new Map([[tuneId, { kind: 'tune', tune: result.tune }]]));
      }).catch((error: unknown) => void (fatal ??= error)),
    );

  let spanSum = 0;
  let fullPages = 0;
  try {
    let beforeId = options.items.reduce((newest, item) => Math.max(newest, item.tuneId), 0) + 1;
    let below = options.items;
    while (fatal === undefined) {
      below = below.filter((item) => item.tuneId < beforeId);
      const plan = planPages(below, beforeId, fullPages > 0 ? spanSum / fullPages : options.idsPerPage);
      if (plan.pagesDownTo === null) break;
      const page = await deps.astria.listTunes({ beforeId, limit: MAX_LIST_LIMIT }, options.signal);
      if (page.kind === 'failed') {
        // The list's own 404 is a wrong base URL: single GETs' 404s would be no better.
        if (page.endpointMissing) report.incomplete = `tune list failed: ${page.reason}`;
        else report.listFailed = page.reason;
        break;
      }
      report.listPages += 1;
      const observations = new Map<number, Observation>();
      for (const tune of page.tunes) {
        seen.add(tune.id);
        if (wanted.has(tune.id)) {
          observedWanted += 1;
          tunesShown += 1;
          observations.set(tune.id, { kind: 'tune', tune });
        }
      }
      if (observations.size > 0) settle(observations);
      // The end of the account's list: every tune below the cursor was on this page.
      const end = page.nextBeforeId === null || page.tunes.length + page.skipped < MAX_LIST_LIMIT;
      const lowest = end ? 0 : page.nextBeforeId!;
      // Wanted on this page's stretch of ids and not shown: deleted (404) or unreadable; its GET says which.
      for (const item of below) if (item.weight === 1 && item.tuneId >= lowest && !seen.has(item.tuneId)) getOne(item.tuneId);
      if (end) {
        below = [];
        break;
      }
      spanSum += beforeId - lowest;
      fullPages += 1;
      beforeId = lowest;
    }
    if (fullPages > 0) report.idsPerPage = spanSum / fullPages;

    // Stragglers below the pages, and every tune below a list page that failed. When the list answered
    // 404 they stay due: the round is incomplete.
    if (report.incomplete === null) {
      for (const item of below) if (item.weight === 1 && item.tuneId < beforeId && !seen.has(item.tuneId)) getOne(item.tuneId);
    }
    await Promise.all(gets);
    if (fatal === undefined && gone.length > 0) {
      const refused = notFoundGuard({ gone: gone.length, checked: observedWanted, tunesShown }, options.maxNotFoundShare);
      if (refused !== null) report.notFoundRefused = { reason: refused, tuneIds: gone };
      else settle(new Map(gone.map((tuneId) => [tuneId, { kind: 'gone', tuneId: String(tuneId) }])));
    }
  } finally {
    await Promise.all(gets);
    await Promise.all(settling);
  }
  if (fatal !== undefined) throw fatal;
  report.calls = deps.astria.calls - callsBefore;
  report.observed = observedWanted;
  report.retried = report.calls > report.listPages + report.singleGets;
  return report;
}

/** Decides and applies what was observed for the in-flight models training these tunes. */
async function settleObservations(
  deps: RoundDeps,
  options: RoundOptions,
  observations: Map<number, Observation>,
  wanted: Map<number, PagePlanItem>,
  writes: <T>(work: () => Promise<T>) => Promise<T>,
): Promise<void> {
  const models = await selectInFlightByTuneIds(deps.pool, IN_FLIGHT, [...observations.keys()]);
  const occupied = new Set(models.map((model) => Number(model.trainingJobId)));
  for (const tuneId of observations.keys()) if (wanted.has(tuneId) && !occupied.has(tuneId)) options.onVacant(tuneId);
  await Promise.all(
    models.map((model) => {
      if (options.retryWrites.has(model.id)) return; // its retried write is still under way
      const failureState = options.failureState(model.id);
      const settleModel = async () => {
        const observation = observations.get(Number(model.trainingJobId))!;
        const transition = decide(model, observation, new Date(deps.clock.now()), { trainingTimeoutMs: options.trainingTimeoutMs });
        const progressOnly = transition !== null && transition.to === transition.from;
        if (transition === null || (progressOnly && !options.progressWriteDue(model.id))) {
          options.onOutcome(model.id, { kind: 'observed', status: model.status, wrote: null });
          return;
        }
        // Riding along on a page while backing off: its write waits for the backoff to end.
        if (failureState === 'backing-off') return;
        let outcome: RoundOutcome;
        try {
          const result = await deps.service.apply(transition, 'reconciler');
          outcome = result.applied ? { kind: 'observed', status: transition.to, wrote: progressOnly ? 'progress' : 'status' } : { kind: 'raced' };
        } catch (error) {
          outcome = { kind: 'failed', reason: (error as Error).message };
        }
        if (outcome.kind === 'observed' && outcome.wrote === 'status') {
          deps.log.info({ modelId: model.id, from: transition.from, to: transition.to }, 'model status reconciled');
        } else if (outcome.kind === 'failed') deps.log.warn({ modelId: model.id, reason: outcome.reason }, 'could not write model');
        options.onOutcome(model.id, outcome);
      };
      if (failureState === 'retry') return options.retryWrites.start(model.id, settleModel);
      return writes(settleModel);
    }),
  );
}
