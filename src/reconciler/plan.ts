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
 * The cheapest way to look at the `items` below `beforeId` (those at or above it are past) when one
 * list page spans about `idsPerPage` ids: list pages down to the id returned, single GETs for the items
 * of weight 1 below it; null when no list page is worth it. Ties go to the pages (they show more for
 * the same calls). Items already newest first (a round re-plans after every page) are neither copied
 * nor sorted again.
 */
export function planPages(items: readonly PagePlanItem[], beforeId: number, idsPerPage: number): { pagesDownTo: number | null } {
  const sorted = isNewestFirst(items) ? items : [...items].sort((a, b) => b.id - a.id);
  const span = Math.max(1, idsPerPage);
  // GETs left if the pages cover the items down to the current one: the weight of those below it.
  let getsLeft = 0;
  for (const item of sorted) if (item.id < beforeId) getsLeft += item.weight;
  let bestCost = getsLeft;
  let pagesDownTo: number | null = null;
  for (const item of sorted) {
    if (item.id >= beforeId) continue;
    getsLeft -= item.weight;
    const cost = Math.max(1, Math.ceil((beforeId - item.id) / span)) + getsLeft;
    if (cost <= bestCost) {
      bestCost = cost;
      pagesDownTo = item.id;
    }
  }
  return { pagesDownTo };
}

function isNewestFirst(items: readonly PagePlanItem[]): boolean {
  for (let index = 1; index < items.length; index += 1) if (items[index - 1]!.id < items[index]!.id) return false;
  return true;
}
