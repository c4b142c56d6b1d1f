import { describe, expect, it } from 'vitest';
import { planPages, type PagePlanItem } from '../../src/reconciler/plan.js';

const due = (...ids: number[]): PagePlanItem[] => ids.map((id) => ({ id, weight: 1 }));
const range = (from: number, count: number, step = 1) => Array.from({ length: count }, (_, index) => from + index * step);

describe('planPages', () => {
  it('nothing to see: no page, no GET', () => {
    expect(planPages([], 1_000, 120)).toEqual({ pagesDownTo: null });
    expect(planPages([{ id: 900, weight: 0 }], 1_000, 120)).toEqual({ pagesDownTo: null });
  });

  it('one model: one page from just above it (same cost as its GET, shows its neighbours too)', () => {
    expect(planPages(due(500), 501, 120)).toEqual({ pagesDownTo: 500 });
  });

  it('120 models on one page: one call', () => {
    const ids = range(10_000, 120);
    expect(planPages(due(...ids), 10_120, 120)).toEqual({ pagesDownTo: 10_000 });
  });

  it('10× more models in the same id span cost the same pages', () => {
    // A sparse account: one page spans 1,200 ids; 12 vs 120 models of ours in those ids.
    const few = planPages(due(...range(50_000, 12, 100)), 51_200, 1_200);
    const many = planPages(due(...range(50_000, 120, 10)), 51_200, 1_200);
    // Both: the one page from 51,200 reaches the lowest model (50,000), and nothing is left to a GET.
    expect(few).toEqual({ pagesDownTo: 50_000 });
    expect(many).toEqual({ pagesDownTo: 50_000 });
  });

  it('a few stragglers far down the id range: pages for the cluster, one GET each for them', () => {
    const cluster = range(100_000, 200);
    const plan = planPages(due(...cluster, 20_000, 35_000), 100_200, 120);
    // The pages stop at the cluster: 35,000 and 20,000 are below them, one GET each.
    expect(plan).toEqual({ pagesDownTo: 100_000 });
  });

  it('stragglers that are not due this round cost nothing: no GET, and no page stretched to reach them', () => {
    const plan = planPages([...due(...range(100_000, 50)), { id: 20_000, weight: 0 }], 100_050, 120);
    expect(plan).toEqual({ pagesDownTo: 100_000 });
  });

  it('a model not due but on a page fetched anyway rides along', () => {
    const plan = planPages([...due(1_100), { id: 1_050, weight: 0 }], 1_101, 120);
    expect(plan.pagesDownTo).toBe(1_050);
  });

  it('many stragglers below a gap: paging down beats one GET each', () => {
    const plan = planPages(due(...range(100_000, 50), ...range(99_000, 50)), 100_050, 120);
    expect(plan.pagesDownTo).toBe(99_000);
  });
});
