import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildReport, formatReport } from '../../src/cli/report.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { advance, seedProcessing } from '../support/events.js';

const NOW = new Date('2026-11-25T10:00:00.000Z');
const WEEK = 7 * 86_400_000;

let db: TestDatabase;
let clockMs = NOW.getTime();
const service = () => createStatusService({ pool: db.pool, clock: { now: () => clockMs, sleep: async () => undefined } });

/** Moves the model of `tuneId` through `stage` with the service's clock at `at`. */
async function at(at: Date, tuneId: number, stage: 'started' | 'failed' | 'trained', options: { source?: 'webhook' | 'reconciler'; lagSeconds?: number } = {}) {
  clockMs = at.getTime();
  const trainedAt = new Date(at.getTime() - (options.lagSeconds ?? 0) * 1_000);
  const applied = await advance(db.pool, service(), tuneId, stage, { now: at, trainedAt, source: options.source ?? 'reconciler' });
  expect(applied).toHaveLength(1);
}

const hoursAgo = (hours: number) => new Date(NOW.getTime() - hours * 3_600_000);

beforeAll(async () => {
  db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
  const models = await seedProcessing(db.pool, 'report', 12, 80_000);
  const tune = (i: number) => models[i]![1];
  // Five reconciler recoveries, lags 10 s … 600 s.
  await at(hoursAgo(5), tune(0), 'trained', { lagSeconds: 10 });
  await at(hoursAgo(4), tune(1), 'trained', { lagSeconds: 20 });
  await at(hoursAgo(3), tune(2), 'trained', { lagSeconds: 30 });
  await at(hoursAgo(2), tune(3), 'trained', { lagSeconds: 40 });
  await at(hoursAgo(1), tune(4), 'trained', { lagSeconds: 600 });
  // Webhook deliveries: two READY, one ERROR; the reconciler's other outcomes: one ERROR, one TRAINING.
  await at(hoursAgo(6), tune(5), 'trained', { source: 'webhook', lagSeconds: 1 });
  await at(hoursAgo(6), tune(6), 'trained', { source: 'webhook', lagSeconds: 2 });
  await at(hoursAgo(7), tune(7), 'failed', { source: 'webhook' });
  await at(hoursAgo(8), tune(8), 'failed');
  await at(hoursAgo(9), tune(9), 'started');
  // Older than the window: counted by a longer --since only.
  await at(new Date(NOW.getTime() - WEEK - 3_600_000), tune(10), 'trained', { lagSeconds: 5_000 });
  // The report reads the database's stamps, which a test cannot date back: these events are placed in
  // its past at the times their writers' clocks gave them.
  await db.pool.query(`UPDATE astria_reconciler.events SET recorded_at = occurred_at`);
});
afterAll(() => db.drop());

describe('report', () => {
  it('counts transitions by outcome and source, and the reconciler detection lag, from the event log', async () => {
    const report = await buildReport(db.pool, 'astria_reconciler', WEEK, NOW);

    expect(report).toMatchObject({
      since: '2026-11-18T10:00:00.000Z',
      transitions: {
        READY: { webhook: 2, reconciler: 5 },
        ERROR: { webhook: 1, reconciler: 1 },
        TRAINING: { webhook: 0, reconciler: 1 },
      },
      total: 10,
      recoveries: 5,
      // percentile_cont over [10, 20, 30, 40, 600].
      lagSeconds: { p50: 30, p90: 376, p99: 577.6, max: 600 },
    });
    expect(Object.keys(report.transitions)).toEqual(['READY', 'ERROR', 'TRAINING']);
    expect(report.slowest.map((slow) => [slow.modelId, slow.tuneId, slow.lagSeconds])).toEqual([
      ['report-4', '80004', 600],
      ['report-3', '80003', 40],
      ['report-2', '80002', 30],
      ['report-1', '80001', 20],
      ['report-0', '80000', 10],
    ]);
    expect(report.slowest[0]).toMatchObject({ occurredAt: hoursAgo(1).toISOString(), trainedAt: new Date(hoursAgo(1).getTime() - 600_000).toISOString() });
    // The JSON form round-trips as the SPEC.md shape.
    expect(JSON.parse(JSON.stringify(report))).toEqual(report);
  });

  it('widens with --since', async () => {
    const report = await buildReport(db.pool, 'astria_reconciler', 2 * WEEK, NOW);
    expect(report.transitions.READY).toEqual({ webhook: 2, reconciler: 6 });
    expect(report.lagSeconds.max).toBe(5_000);
    expect(report.slowest[0]).toMatchObject({ modelId: 'report-10', lagSeconds: 5_000 });
  });

  it('is empty, with null lag figures, when nothing happened (or the event log does not exist yet)', async () => {
    const nothing = await buildReport(db.pool, 'astria_reconciler', 60_000, NOW);
    const noSchema = await buildReport(db.pool, 'no_such_schema', WEEK, NOW);
    for (const report of [nothing, noSchema]) {
      expect(report).toMatchObject({
        transitions: { READY: { webhook: 0, reconciler: 0 }, ERROR: { webhook: 0, reconciler: 0 } },
        total: 0,
        lagSeconds: { p50: null, p90: null, p99: null, max: null },
        recoveries: 0,
        slowest: [],
      });
    }
    expect(formatReport(nothing)).toContain('none');
  });

  it('prints a small table for humans', async () => {
    const text = formatReport(await buildReport(db.pool, 'astria_reconciler', WEEK, NOW));
    expect(text).toContain('Status changes applied from 2026-11-18T10:00:00.000Z to 2026-11-25T10:00:00.000Z');
    expect(text).toMatch(/READY\s+2\s+5\s+7/);
    expect(text).toMatch(/ERROR\s+1\s+1\s+2/);
    expect(text).toContain('p50 30s  p90 6m 16s  p99 9m 38s  max 10m 00s');
    expect(text).toMatch(/report-4\s+80004\s+10m 00s/);
  });
});
