import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildReport, formatReport } from '../../src/cli/report.js';
import { classifyReconcilerRecoveries, recordCallbackArrival } from '../../src/db/callbacks.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { acceptAstriaCallback } from '../../src/http/callback.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { advance, seedProcessing } from '../support/events.js';

const SCHEMA = 'astria_reconciler';
const SECRET = 'callbacks-secret';
const MINUTE = 60_000;
const GRACE = 10 * MINUTE;
const T0 = Date.parse('2026-11-25T10:00:00.000Z');
const at = (ms: number) => new Date(T0 + ms);

let db: TestDatabase;
let clockMs = T0;
const service = () => createStatusService({ pool: db.pool, clock: { now: () => clockMs, sleep: async () => undefined } });
let tunes: number[];

/** The reconciler applies READY for the i-th model at `when`. */
async function reconciled(i: number, when: number): Promise<void> {
  clockMs = T0 + when;
  expect(await advance(db.pool, service(), tunes[i]!, 'trained', { now: at(when), source: 'reconciler' })).toHaveLength(1);
}

/** Astria's callback for the i-th model's tune reaches the app's route (or the sidecar) at `when`. */
async function callback(i: number, when: number): Promise<number> {
  clockMs = T0 + when;
  const tune = { id: tunes[i]!, trained_at: at(when - 1_000).toISOString(), started_training_at: at(-30 * MINUTE).toISOString() };
  const body = (async function* () {
    yield Buffer.from(JSON.stringify({ tune }));
  })();
  const response = await acceptAstriaCallback(
    { givenSecret: SECRET, body },
    { secret: SECRET, pool: db.pool, service: service(), trainingTimeoutMs: 24 * 60 * MINUTE, now: () => at(when) },
  );
  return response.status;
}

const judge = (when: number) => classifyReconcilerRecoveries(db.pool, SCHEMA, GRACE, at(when));

beforeAll(async () => {
  db = await createTestDatabase();
  await ensureOwnSchema(db.pool, SCHEMA);
  // Callbacks have been recorded since a day before T0.
  await db.pool.query(`UPDATE ${SCHEMA}.callback_recording SET started_at = $1`, [at(-24 * 60 * MINUTE).toISOString()]);
  const models = await seedProcessing(db.pool, 'cb', 7, 70_000);
  tunes = models.map(([, tuneId]) => tuneId);
  for (const tuneId of tunes) await advance(db.pool, service(), tuneId, 'started', { now: at(-3 * 24 * 60 * MINUTE) });
});
afterAll(() => db.drop());

describe('lost means lost', () => {
  it('a reconciler READY with no callback within the grace is lost, once; a callback after it is late; the webhook first counts neither', async () => {
    await reconciled(0, 0); // callback never comes
    await reconciled(1, 0);
    expect(await callback(1, 30_000)).toBe(200); // arrives after the reconciler: late
    expect(await callback(2, 5_000)).toBe(200); // the webhook first: applies READY itself
    expect((await readModel(db.pool, 'cb-2')).status).toBe('READY');
    await reconciled(3, 0);
    await reconciled(4, 0);
    expect(await callback(4, GRACE + MINUTE)).toBe(200); // after the grace: too late to matter

    expect(await judge(MINUTE)).toEqual({ lost: 0, late: 1 });
    expect(await judge(GRACE - 1_000)).toEqual({ lost: 0, late: 0 });
    expect(await judge(GRACE + 2 * MINUTE)).toEqual({ lost: 3, late: 0 });
    // Another leader (a failover) judging again counts nothing twice.
    expect(await judge(GRACE + 3 * MINUTE)).toEqual({ lost: 0, late: 0 });

    const report = await buildReport(db.pool, SCHEMA, 60 * MINUTE, at(GRACE + 3 * MINUTE));
    expect(report.callbacks).toEqual({ lost: 3, late: 1, webhookFirst: 1, pending: 0, unrecorded: 0 });
    expect(formatReport(report)).toContain('Astria callbacks (READY): lost 3, late 1, webhook first 1');
  });

  it('a callback racing the reconciler (arrived a moment before its write) is not lost', async () => {
    // A callback that arrived a moment before the reconciler's write, its arrival recorded then.
    await recordCallbackArrival(db.pool, SCHEMA, tunes[5]!, at(2 * 60 * MINUTE));
    await reconciled(5, 2 * 60 * MINUTE + 500);
    expect(await judge(2 * 60 * MINUTE + GRACE + MINUTE)).toEqual({ lost: 0, late: 1 });
  });

  it('recoveries from before callbacks were recorded are never judged, and report says so', async () => {
    await reconciled(6, -2 * 24 * 60 * MINUTE);
    expect(await judge(3 * 60 * MINUTE)).toEqual({ lost: 0, late: 0 });
    const report = await buildReport(db.pool, SCHEMA, 3 * 24 * 60 * MINUTE, at(3 * 60 * MINUTE));
    expect(report.callbacks).toEqual({ lost: 3, late: 2, webhookFirst: 1, pending: 0, unrecorded: 1 });
    expect(formatReport(report)).toContain('1 recoveries from before callbacks were recorded: neither lost nor late');
  });
});

describe('report with no leader to judge (recoveries of `--once` alone)', () => {
  it('judges the unjudged as of now, without writing verdicts: lost after the grace, late with a callback, pending within it', async () => {
    const fresh = await createTestDatabase();
    try {
      await ensureOwnSchema(fresh.pool, SCHEMA);
      await fresh.pool.query(`UPDATE ${SCHEMA}.callback_recording SET started_at = $1`, [at(-24 * 60 * MINUTE).toISOString()]);
      const models = await seedProcessing(fresh.pool, 'once', 3, 90_000);
      const once = createStatusService({ pool: fresh.pool, clock: { now: () => clockMs, sleep: async () => undefined } });
      for (const [, tuneId] of models) await advance(fresh.pool, once, tuneId, 'started', { now: at(-60 * MINUTE) });
      // Recovered at 0 (no callback ever), at 0 (its callback came a minute later), and 5 min before the report.
      const recovered = (i: number, when: number) => {
        clockMs = T0 + when; // the service stamps the event with its clock
        return advance(fresh.pool, once, models[i]![1], 'trained', { now: at(when), source: 'reconciler' });
      };
      await recovered(0, 0);
      await recovered(1, 0);
      await recordCallbackArrival(fresh.pool, SCHEMA, models[1]![1], at(MINUTE));
      await recovered(2, GRACE + 10 * MINUTE);

      const report = await buildReport(fresh.pool, SCHEMA, 60 * MINUTE, at(GRACE + 15 * MINUTE), GRACE);
      expect(report.callbacks).toEqual({ lost: 1, late: 1, webhookFirst: 0, pending: 1, unrecorded: 0 });
      const verdicts = await fresh.pool.query(`SELECT count(*)::int AS n FROM ${SCHEMA}.callback_outcomes`);
      expect(verdicts.rows[0]!.n).toBe(0);
    } finally {
      await fresh.drop();
    }
  });
});

describe('a log written before callbacks were recorded', () => {
  it('reports every reconciler READY as unrecorded, the webhook ones as webhook first', async () => {
    await db.pool.query(`DROP TABLE ${SCHEMA}.callback_outcomes, ${SCHEMA}.callback_recording, ${SCHEMA}.callbacks`);
    const report = await buildReport(db.pool, SCHEMA, 3 * 24 * 60 * MINUTE, at(4 * 60 * MINUTE));
    expect(report.callbacks).toEqual({ lost: 0, late: 0, webhookFirst: 1, pending: 0, unrecorded: 6 });
    expect(formatReport(report)).toContain('6 recoveries from before callbacks were recorded: neither lost nor late');
  });
});
