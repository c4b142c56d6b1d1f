import { describe, expect, it } from 'vitest';
import {
  planPages,
  estimatedPagesLeft,
  shouldContinueListScan,
  shouldStartListScan,
  type PagePlanItem,
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

const due = (...tuneIds: number[]): PagePlanItem[] => tuneIds.map((tuneId) => ({ tuneId, weight: 1 }));
const range = (from: number, count: number, step = 1) => Array.from({ length: count }, (_, index) => from + index * step);

describe('planPages (the daemon round)', () => {
  it('nothing to see: no page, no GET', () => {
    expect(planPages([], 1_000, 120)).toEqual({ pagesDownTo: null, pages: 0, singleGets: [] });
    expect(planPages([{ tuneId: 900, weight: 0 }], 1_000, 120)).toEqual({ pagesDownTo: null, pages: 0, singleGets: [] });
  });

  it('one model: one page from just above it (same cost as its GET, shows its neighbours too)', () => {
    expect(planPages(due(500), 501, 120)).toEqual({ pagesDownTo: 500, pages: 1, singleGets: [] });
  });

  it('120 models on one page: one call', () => {
    const ids = range(10_000, 120);
    expect(planPages(due(...ids), 10_120, 120)).toEqual({ pagesDownTo: 10_000, pages: 1, singleGets: [] });
  });

  it('10× more models in the same id span cost the same pages', () => {
    // A sparse account: one page spans 1,200 ids; 12 vs 120 models of ours in those ids.
    const few = planPages(due(...range(50_000, 12, 100)), 51_200, 1_200);
    const many = planPages(due(...range(50_000, 120, 10)), 51_200, 1_200);
    expect(few.pages).toBe(1);
    expect(many.pages).toBe(few.pages);
    expect(many.singleGets).toEqual([]);
  });

  it('a few stragglers far down the id range: pages for the cluster, one GET each for them', () => {
    const cluster = range(100_000, 200);
    const plan = planPages(due(...cluster, 20_000, 35_000), 100_200, 120);
    expect(plan).toEqual({ pagesDownTo: 100_000, pages: 2, singleGets: [35_000, 20_000] });
  });

  it('stragglers that are not due this round cost nothing: no GET, and no page stretched to reach them', () => {
    const plan = planPages([...due(...range(100_000, 50)), { tuneId: 20_000, weight: 0 }], 100_050, 120);
    expect(plan).toEqual({ pagesDownTo: 100_000, pages: 1, singleGets: [] });
  });

  it('a model not due but on a page fetched anyway rides along', () => {
    const plan = planPages([...due(1_100), { tuneId: 1_050, weight: 0 }], 1_101, 120);
    expect(plan.pagesDownTo).toBe(1_050);
    expect(plan.pages).toBe(1);
  });

  it('many stragglers below a gap: paging down beats one GET each', () => {
    const plan = planPages(due(...range(100_000, 50), ...range(99_000, 50)), 100_050, 120);
    expect(plan.pagesDownTo).toBe(99_000);
    expect(plan.singleGets).toEqual([]);
  });
});
