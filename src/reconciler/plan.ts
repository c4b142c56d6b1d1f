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
