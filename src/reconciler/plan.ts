/**
 * How far a round pages Astria's list (pure). Objects in flight are recent, so list pages from just
 * above the newest of them down to the oldest cover them all at a cost that follows pages, not rows
 * (`GET /tunes` returns 120 a call, newest first); a few stragglers far down the id range are cheaper
 * one GET each. The plan picks the cut that costs the fewest calls, and the round re-plans after each
 * page with the density it measured.
 */
/** Ids one list page spans when the account's objects are dense: the pessimistic first guess. */
export const DENSE_IDS_PER_PAGE = 120;

export interface PagePlanItem {
  /** The Astria id. */
  id: number;
  /** 1: must be looked at this round (a single GET if the pages stop above it); 0: only worth seeing for free. */
  weight: 0 | 1;
}

/**
 * The cheapest way to look at `items` (ids below `beforeId`) when one list page spans about
 * `idsPerPage` ids: list pages down to the id returned, single GETs for the items of weight 1 below
 * it; null when no list page is worth it. Ties go to the pages (they show more for the same calls).
 */
export function planPages(items: readonly PagePlanItem[], beforeId: number, idsPerPage: number): { pagesDownTo: number | null } {
  const sorted = [...items].sort((a, b) => b.id - a.id);
  // GETs left if the pages cover the first k items: the weight of the items from k on.
  const getsFrom = new Array<number>(sorted.length + 1).fill(0);
  for (let k = sorted.length - 1; k >= 0; k -= 1) getsFrom[k] = getsFrom[k + 1]! + sorted[k]!.weight;
  const span = Math.max(1, idsPerPage);
  let best = { k: 0, cost: getsFrom[0]! };
  for (let k = 1; k <= sorted.length; k += 1) {
    const pages = Math.max(1, Math.ceil((beforeId - sorted[k - 1]!.id) / span));
    const cost = pages + getsFrom[k]!;
    if (cost <= best.cost) best = { k, cost };
  }
  return { pagesDownTo: best.k === 0 ? null : sorted[best.k - 1]!.id };
}
