/**
 * How a round pages Astria's list, against the simulated Astria on loopback with the real client:
 * where paging ends when Astria serves short pages, and how many objects each page asks for.
 */
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { startSimulatedAstria, type RequestEvent, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { createAstriaClient } from '../../src/astria/client.js';
import type { Tune } from '../../src/astria/tune.js';
import { systemClock } from '../../src/clock.js';
import { createMetrics } from '../../src/metrics.js';
import { observe, type ObserveReport } from '../../src/reconciler/observe.js';
import { DENSE_IDS_PER_PAGE, type PagePlanItem } from '../../src/reconciler/plan.js';
import { DEFAULT_HOST_SCHEMA } from '../../src/db/host-names.js';
import { tunes, type RemoteObservation } from '../../src/reconciler/resource.js';

const API_KEY = 'sd_observe_paging_key';
const log = pino({ level: 'silent' });
let astria: SimulatedAstria;
afterEach(() => astria.close());

/** Observes `ids` (all due) through the real client; returns what was seen, the report, and the requests sent. */
async function observeIds(ids: number[], idsPerPage = DENSE_IDS_PER_PAGE) {
  const requests: RequestEvent[] = [];
  astria.onRequest((event) => void requests.push(event));
  const client = createAstriaClient({ apiUrl: astria.url, apiKey: API_KEY, maxRps: 1_000, concurrency: 4, timeoutMs: 10_000, log, metrics: createMetrics(), clock: systemClock });
  const seen = new Map<number, RemoteObservation<Tune>>();
  const items: PagePlanItem[] = ids.map((id) => ({ id, weight: 1 }));
  const report: ObserveReport = await observe(
    tunes(DEFAULT_HOST_SCHEMA),
    client,
    { items, idsPerPage, concurrency: 4, maxNotFoundShare: 0.5, parentOf: () => null, listPages: true, halted: () => false },
    { observed: (batch) => batch.forEach((observation, id) => seen.set(id, observation)), unobserved: () => undefined, ready: async () => undefined },
  );
  return { seen, report, requests };
}

describe('observe: short pages are not the end of the list', () => {
  for (const cap of [20, 100]) {
    it(`200 in flight, Astria serving ${cap} a page: every tune seen on list pages, no flood of single GETs`, async () => {
      astria = await startSimulatedAstria({ apiKey: API_KEY, maxPageSize: cap });
      astria.addTunes(50);
      const inFlight = astria.addTunes(200, () => ({ eta: null })).map((tune) => tune.id);
      astria.addTunes(30);
      const { seen, report } = await observeIds(inFlight);
      expect(seen.size).toBe(200);
      expect([...seen.values()].every((observation) => observation.kind === 'seen')).toBe(true);
      // The pages covering the 200 (plus the first one asked at 120), not one GET each.
      expect(report.singleGets).toBe(0);
      expect(report.listPages).toBeLessThanOrEqual(Math.ceil(200 / cap) + 1);
      // The page size Astria serves is learned: the next round plans with it.
      expect(report.idsPerPage).toBe(cap);
    });
  }

  it('a wanted tune missing from a short page is fetched by its GET (deleted: 404), its neighbours are not', async () => {
    astria = await startSimulatedAstria({ apiKey: API_KEY, maxPageSize: 20 });
    const inFlight = astria.addTunes(60, () => ({ eta: null })).map((tune) => tune.id);
    astria.remove(inFlight[30]!);
    const { seen, report } = await observeIds(inFlight);
    expect(seen.size).toBe(60);
    expect(seen.get(inFlight[30]!)?.kind).toBe('gone');
    expect(report.singleGets).toBe(1);
  });

  it('paging ends at the oldest wanted tune, not at the end of the account', async () => {
    astria = await startSimulatedAstria({ apiKey: API_KEY, maxPageSize: 20 });
    astria.addTunes(500);
    const inFlight = astria.addTunes(40, () => ({ eta: null })).map((tune) => tune.id);
    const { report } = await observeIds(inFlight);
    expect(report.listPages).toBeLessThanOrEqual(3);
  });
});

describe('observe: a page asks for no more than the in-flight span holds', () => {
  it('one model: one list call for one tune (the cost of its GET)', async () => {
    astria = await startSimulatedAstria({ apiKey: API_KEY });
    astria.addTunes(300);
    const tune = astria.addTune({ eta: null });
    astria.addTunes(300);
    const { seen, requests } = await observeIds([tune.id]);
    expect(seen.get(tune.id)?.kind).toBe('seen');
    expect(requests.map((request) => request.path)).toEqual([`/tunes?limit=1&before_id=${tune.id + 1}`]);
  });

  it('ten models in ten consecutive ids: one page of ten', async () => {
    astria = await startSimulatedAstria({ apiKey: API_KEY });
    astria.addTunes(300);
    const inFlight = astria.addTunes(10, () => ({ eta: null })).map((tune) => tune.id);
    const { seen, requests } = await observeIds(inFlight);
    expect(seen.size).toBe(10);
    expect(requests.map((request) => request.path)).toEqual([`/tunes?limit=10&before_id=${inFlight.at(-1)! + 1}`]);
  });

  it('a span wider than a page: whole pages, then the last one sized to what is left', async () => {
    astria = await startSimulatedAstria({ apiKey: API_KEY });
    const inFlight = astria.addTunes(150, () => ({ eta: null })).map((tune) => tune.id);
    const { seen, requests } = await observeIds(inFlight);
    expect(seen.size).toBe(150);
    expect(requests.map((request) => new URL(request.path, 'http://x').searchParams.get('limit'))).toEqual(['120', '30']);
  });
});
