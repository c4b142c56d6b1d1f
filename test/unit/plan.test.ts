import { describe, expect, it } from 'vitest';
import {
  estimatedPagesLeft,
  shouldContinueListScan,
  shouldStartListScan,
  type ScanProgress,
} from '../../src/reconciler/plan.js';

/** After the first full page of 120 tunes from the newest tune id 100_000. */
function scan(overrides: Partial<ScanProgress> = {}): ScanProgress {
  return { pages: 1, newestId: 100_000, nextBeforeId: 99_881, oldestTuneId: 99_000, unseenModels: 10, ...overrides };
}

describe('shouldStartListScan', () => {
  it('a single model (or none) is one GET: no list scan', () => {
    expect(shouldStartListScan(0)).toBe(false);
    expect(shouldStartListScan(1)).toBe(false);
  });

  it('several models: probe with the list', () => {
    expect(shouldStartListScan(2)).toBe(true);
    expect(shouldStartListScan(500)).toBe(true);
  });
});

describe('estimatedPagesLeft', () => {
  it('worked example: 2 pages spanning 400 ids, 1_100 ids to go → 200 ids a page → 6 pages', () => {
    // newest 5_000, cursor 4_600 after 2 pages: 200 ids a page; 4_600 - 3_500 = 1_100 ids left; 5.5 → 6.
    expect(estimatedPagesLeft({ pages: 2, newestId: 5_000, nextBeforeId: 4_600, oldestTuneId: 3_500, unseenModels: 9 })).toBe(6);
  });

  it('exact fit does not round up', () => {
    // 100 ids a page, 300 ids to go.
    expect(estimatedPagesLeft({ pages: 3, newestId: 1_300, nextBeforeId: 1_000, oldestTuneId: 700, unseenModels: 1 })).toBe(3);
  });

  it('0 once the cursor reached or passed the oldest tune', () => {
    expect(estimatedPagesLeft(scan({ nextBeforeId: 99_000, oldestTuneId: 99_000 }))).toBe(0);
    expect(estimatedPagesLeft(scan({ nextBeforeId: 98_000, oldestTuneId: 99_000 }))).toBe(0);
  });

  it('a page that spans no ids counts as one id a page (no division by zero)', () => {
    const pages = estimatedPagesLeft(scan({ newestId: 50_000, nextBeforeId: 50_000, oldestTuneId: 49_990 }));
    expect(pages).toBe(10);
    expect(Number.isFinite(pages)).toBe(true);
  });
});

describe('shouldContinueListScan', () => {
  it('dense recent models: a few pages save many GETs → keep scanning', () => {
    // 119 ids a page, 881 ids to the oldest tune → 8 pages for 10 unseen models.
    expect(estimatedPagesLeft(scan())).toBe(8);
    expect(shouldContinueListScan(scan())).toBe(true);
  });

  it('sparse: the oldest in-flight tune is far below and few models are unseen → stop, use single GETs', () => {
    const sparse = scan({ oldestTuneId: 1_000, unseenModels: 3 });
    expect(estimatedPagesLeft(sparse)).toBeGreaterThan(3);
    expect(shouldContinueListScan(sparse)).toBe(false);
  });

  it('the same distance is worth paging when enough models are unseen', () => {
    const sparse = scan({ oldestTuneId: 1_000, unseenModels: 3 });
    const pagesLeft = estimatedPagesLeft(sparse);
    expect(shouldContinueListScan({ ...sparse, unseenModels: pagesLeft + 1 })).toBe(true);
    expect(shouldContinueListScan({ ...sparse, unseenModels: pagesLeft - 1 })).toBe(false);
  });

  it('stops when every model has been seen', () => {
    expect(shouldContinueListScan(scan({ unseenModels: 0 }))).toBe(false);
  });

  it('stops once the cursor passed the oldest in-flight tune, even with models unseen', () => {
    // Unseen models whose tunes the list did not show: single GETs, not more pages.
    expect(shouldContinueListScan(scan({ nextBeforeId: 99_000, oldestTuneId: 99_000, unseenModels: 5 }))).toBe(false);
    expect(shouldContinueListScan(scan({ nextBeforeId: 90_000, oldestTuneId: 99_000, unseenModels: 5 }))).toBe(false);
  });
});
