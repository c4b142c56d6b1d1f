import pLimit from 'p-limit';
import { MAX_LIST_LIMIT, type AstriaClient } from '../astria/client.js';
import { planPages, type PagePlanItem } from './plan.js';
import type { HostRow, RemoteObservation, ResourceKind, StatusChange } from './resource.js';

/**
 * Observing: which Astria objects a round must see → what Astria says about them. No database: the
 * answers go to a sink as they come, so the caller settles one page's rows while the next is fetched.
 */
export interface ObserveRequest {
  /** The objects to look at: weight 1 must be seen, weight 0 only if on a page anyway. */
  items: readonly PagePlanItem[];
  /** Ids one list page spans, as last measured (120 when the account's objects are dense in id). */
  idsPerPage: number;
  /** Single GETs in flight at once. */
  concurrency: number;
  /** The Astria object one lives under, when known (a prompt's tune): its single GET is asked there. */
  parentOf(id: number): string | null;
  /** `RECONCILER_MAX_NOT_FOUND_SHARE`: more 404s than this share of the answered objects are applied to none, unless Astria showed one of them. */
  maxNotFoundShare: number;
  /** False: single GETs only, no list page (the benchmarks compare the two). */
  listPages: boolean;
  /** Aborting cuts the requests under way or queued short (they throw the signal's reason). */
  signal?: AbortSignal;
  /** True once the caller wants no more requests started (a settling failed). */
  halted(): boolean;
}

export interface ObservationSink<Remote> {
  /** What Astria showed for some wanted objects (one page's, one GET's, or the round's 404s). */
  observed(batch: Map<number, RemoteObservation<Remote>>): void;
  /** Wanted objects Astria could not be asked about, or whose answer is held back, and why. */
  unobserved(ids: number[], reason: string): void;
  /** Resolves when the sink can take another page (settling lags behind Astria: memory stays bounded). */
  ready(): Promise<void>;
}

export interface ObserveReport {
  listPages: number;
  singleGets: number;
  /** Requests sent, retries included. */
  calls: number;
  /** Wanted objects Astria answered for (a 404 included), on a page or by their GET. */
  observed: number;
  /** Some request needed a retry (429, 5xx, timeout): the cadence should slow down. */
  retried: boolean;
  /** Ids one page spanned (the estimate handed back when no full page was seen). */
  idsPerPage: number;
  /** Why not every object that had to be seen could be (the list's own 404: a wrong base URL); null when all could. */
  incomplete: string | null;
  /** Why a list page failed otherwise (5xx, a bad body, ...): the objects it would have shown were fetched one by one. */
  listFailed: string | null;
  /** The not-found guard held these 404s back (Astria showed none of the wanted objects), and why. */
  notFoundRefused: { reason: string; ids: number[] } | null;
}

/** The not-found guard needs this many 404s at least: one deleted tune among two models is no outage. */
const MIN_NOT_FOUND_FOR_GUARD = 3;

/**
 * The not-found guard: that many objects "deleted" at once may be a wrong `ASTRIA_API_URL` (or
 * something in front of it) answering Astria's JSON 404, or another account's key (its list answers,
 * none of our objects on it), not deleted objects. One of the wanted objects shown in the same round
 * (on a list page or by its GET) proves endpoint and account, so the guard applies only when none was.
 * Returns why the 404s must not be applied, or null when they may.
 */
export function notFoundGuard(
  count: { gone: number; answered: number; shown: number },
  maxShare: number,
  kind: Pick<ResourceKind<HostRow, unknown, StatusChange>, 'name' | 'rowName' | 'failedStatus'>,
): string | null {
  const { gone, answered } = count;
  if (gone < MIN_NOT_FOUND_FOR_GUARD || gone <= maxShare * answered || count.shown > 0) return null;
  return `${gone} of ${answered} checked ${kind.rowName}s' ${kind.name}s answered 404, more than RECONCILER_MAX_NOT_FOUND_SHARE=${maxShare}, and Astria showed none of their ${kind.name}s: none was marked ${kind.failedStatus}; check ASTRIA_API_URL, and that ASTRIA_API_KEY is the account that created them`;
}

/**
 * List pages from just above the newest wanted id down as far as the plan says (re-planned after each
 * page with the span a page as Astria serves it measured; each asking for no more objects than the ids
 * left to cover), then single GETs for what must be seen and was not: stragglers
 * below the pages, objects the list did not show (deleted or unreadable: the GET answers with a 404
 * or the object) and all below a page that failed. 404s wait for the end: the not-found guard decides
 * whether they are applied. Throws what the client throws (Astria's 401, the signal's reason), after
 * the requests under way ended.
 */
export async function observe<Row extends HostRow, Remote, Change extends StatusChange>(
  kind: ResourceKind<Row, Remote, Change>,
  astria: AstriaClient,
  request: ObserveRequest,
  sink: ObservationSink<Remote>,
): Promise<ObserveReport> {
  const callsBefore = astria.calls;
  const report: ObserveReport = {
    listPages: 0,
    singleGets: 0,
    calls: 0,
    observed: 0,
    retried: false,
    idsPerPage: request.idsPerPage,
    incomplete: null,
    listFailed: null,
    notFoundRefused: null,
  };
  const wanted = new Set(request.items.map((item) => item.id));
  // Wanted objects a page showed (only they are ever looked up: the account's other objects are not held).
  const seen = new Set<number>();
  let failure: { error: unknown } | null = null;
  const stopped = () => failure !== null || request.halted();
  const slots = pLimit(request.concurrency);
  const gets: Promise<void>[] = [];
  const gone: number[] = [];
  // Wanted objects Astria showed (list or GET): proof for the not-found guard.
  let shown = 0;
  const getOne = (id: number) =>
    gets.push(
      slots(async () => {
        if (stopped()) return;
        report.singleGets += 1;
        const result = await kind.fetch(astria, id, request.parentOf(id), request.signal);
        if (result.kind === 'failed') return sink.unobserved([id], result.reason);
        report.observed += 1;
        if (result.kind === 'gone') return void gone.push(id);
        shown += 1;
        sink.observed(new Map([[id, result]]));
      }).catch((error: unknown) => void (failure ??= { error })),
    );

  let spanSum = 0;
  let measuredPages = 0;
  try {
    let beforeId = request.items.reduce((newest, item) => Math.max(newest, item.id), 0) + 1;
    // Newest first, once: each page's plan reads it as it is (no copy, no sort per page); what is at or
    // above `beforeId` is behind the pages already.
    const items = [...request.items].sort((a, b) => b.id - a.id);
    while (request.listPages && !stopped()) {
      const plan = planPages(items, beforeId, measuredPages > 0 ? spanSum / measuredPages : request.idsPerPage);
      if (plan.pagesDownTo === null) break;
      // Never more objects than the ids left to cover can hold: one model costs what its GET costs.
      const limit = Math.min(MAX_LIST_LIMIT, beforeId - plan.pagesDownTo);
      await sink.ready();
      const page = await kind.list(astria, beforeId, request.signal, limit);
      if (page.kind === 'failed') {
        // The list's own 404 is a wrong base URL: single GETs' 404s would be no better.
        if (page.endpointMissing) report.incomplete = page.reason;
        else report.listFailed = page.reason;
        break;
      }
      report.listPages += 1;
      const observations = new Map<number, RemoteObservation<Remote>>();
      let highest = 0;
      for (const remote of page.items) {
        const id = kind.idOf(remote);
        highest = Math.max(highest, id);
        if (!wanted.has(id)) continue;
        seen.add(id);
        observations.set(id, { kind: 'seen', remote });
      }
      report.observed += observations.size;
      shown += observations.size;
      if (observations.size > 0) sink.observed(observations);
      // Only an empty page ends the list: Astria may serve fewer than asked (100, or 20 when it ignores
      // `limit`) with more below. A cursor that does not move down is taken as the end too.
      const end = page.nextBeforeId === null || page.nextBeforeId >= beforeId;
      const lowest = end ? 0 : page.nextBeforeId!;
      // Wanted on this page's stretch of ids and not shown: deleted (404) or unreadable; its GET says which.
      for (const item of items) {
        if (item.id < lowest) break;
        if (item.weight === 1 && item.id < beforeId && !seen.has(item.id)) getOne(item.id);
      }
      if (end) {
        beforeId = 0;
        break;
      }
      // The ids a page as Astria serves it spans, from its newest object (a cursor far above the newest
      // object, a wanted id that no longer exists, says nothing about how dense the account's ids are).
      // A page cut short by our own `limit` says nothing about how far a whole page reaches.
      const servedWhole = limit === MAX_LIST_LIMIT || page.items.length + page.skipped < limit;
      if (servedWhole) {
        spanSum += Math.min(beforeId, highest + 1) - lowest;
        measuredPages += 1;
      }
      beforeId = lowest;
    }
    if (measuredPages > 0) report.idsPerPage = spanSum / measuredPages;

    // Stragglers below the pages, and everything below a list page that failed. When the list answered
    // 404 they stay unseen: the round is incomplete.
    if (report.incomplete === null) {
      for (const item of items) if (item.weight === 1 && item.id < beforeId && !seen.has(item.id)) getOne(item.id);
    }
    await Promise.all(gets);
    if (!stopped() && gone.length > 0) {
      const refused = notFoundGuard({ gone: gone.length, answered: report.observed, shown }, request.maxNotFoundShare, kind);
      if (refused === null) sink.observed(new Map(gone.map((id) => [id, { kind: 'gone', id }])));
      else {
        report.notFoundRefused = { reason: refused, ids: gone };
        sink.unobserved(gone, `${kind.name} answered 404; not marked ${kind.failedStatus} (too many 404s in this round)`);
      }
    }
  } finally {
    await Promise.all(gets);
  }
  if (failure !== null) throw (failure as { error: unknown }).error;
  report.calls = astria.calls - callsBefore;
  report.retried = report.calls > report.listPages + report.singleGets;
  return report;
}
