/**
 * How a pass observes its models, decided as it goes (pure).
 *
 * `GET /tunes` pages through the whole account newest first, 120 tunes a call; `GET /tunes/:id` costs
 * one call a model. A list scan pays off when in-flight models are dense among the account's recent
 * tunes, which we cannot know before looking. So the pass probes with list pages, measures how many
 * tune ids one page spans, and keeps paging only while the pages still needed to reach the oldest
 * in-flight tune are fewer than the single GETs they would save.
 */

/** With this few models a page cannot beat one GET each. */
export const MIN_MODELS_FOR_LIST_SCAN = 2;

export interface ScanProgress {
  /** Pages fetched so far. */
  pages: number;
  /** Highest tune id on the first page. */
  newestId: number;
  /** Cursor for the next page: every tune id below it is still unseen. */
  nextBeforeId: number;
  /** The scan is done once the cursor passes this id. */
  oldestTuneId: number;
  /** Checkable models the scan has not shown yet, each a single GET if the scan stops now. */
  unseenModels: number;
}

export function shouldStartListScan(checkableModels: number): boolean {
  return checkableModels >= MIN_MODELS_FOR_LIST_SCAN;
}

/** Estimated pages to reach the oldest in-flight tune at the density seen so far. */
export function estimatedPagesLeft(scan: ScanProgress): number {
  if (scan.nextBeforeId <= scan.oldestTuneId) return 0;
  const idsPerPage = Math.max(1, (scan.newestId - scan.nextBeforeId) / scan.pages);
  return Math.ceil((scan.nextBeforeId - scan.oldestTuneId) / idsPerPage);
}

export function shouldContinueListScan(scan: ScanProgress): boolean {
  if (scan.unseenModels === 0 || scan.nextBeforeId <= scan.oldestTuneId) return false;
  return estimatedPagesLeft(scan) <= scan.unseenModels;
}

/**
 * The daemon's observation round. In-flight tunes are recent, so the list pages from just above the
 * newest of them down to the oldest cover them all at a cost that follows pages, not models; a few
 * stragglers far down the id range are cheaper one GET each. The plan picks the cut that costs the
 * fewest calls.
 */
export interface PagePlanItem {
  tuneId: number;
  /** 1: this tune must be looked at this round (a single GET if the pages stop above it); 0: only worth seeing for free. */
  weight: 0 | 1;
}

export interface PagePlan {
  /** The pages walk down from the cursor until they reach this tune id; null: no list page is worth it. */
  pagesDownTo: number | null;
  /** Estimated pages for that. */
  pages: number;
  /** The tunes below the pages that must be looked at: one GET each. */
  singleGets: number[];
}

/**
 * The cheapest way to look at `items` (tune ids below `beforeId`) when one list page spans about
 * `idsPerPage` tune ids: list pages down to some tune, single GETs for the tunes of weight 1 below it.
 * Ties go to the pages (they show more tunes for the same calls).
 */
export function planPages(items: readonly PagePlanItem[], beforeId: number, idsPerPage: number): PagePlan {
  const sorted = [...items].sort((a, b) => b.tuneId - a.tuneId);
  // GETs left if the pages cover the first k tunes: the weight of the tunes from k on.
  const getsFrom = new Array<number>(sorted.length + 1).fill(0);
  for (let k = sorted.length - 1; k >= 0; k -= 1) getsFrom[k] = getsFrom[k + 1]! + sorted[k]!.weight;
  const span = Math.max(1, idsPerPage);
  let best = { k: 0, pages: 0, cost: getsFrom[0]! };
  for (let k = 1; k <= sorted.length; k += 1) {
    const pages = Math.max(1, Math.ceil((beforeId - sorted[k - 1]!.tuneId) / span));
    const cost = pages + getsFrom[k]!;
    if (cost <= best.cost) best = { k, pages, cost };
  }
  return {
    pagesDownTo: best.k === 0 ? null : sorted[best.k - 1]!.tuneId,
    pages: best.pages,
    singleGets: sorted.slice(best.k).filter((item) => item.weight === 1).map((item) => item.tuneId),
  };
}
