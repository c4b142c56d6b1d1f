import type pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildReport, formatReport } from '../../src/cli/report.js';
import { classifyReconcilerRecoveries, recordCallbackArrival } from '../../src/db/callbacks.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { pgExecutor } from '../../src/db/pg-driver.js';
import { acceptAstriaCallback } from '../../src/http/callback.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { advance, seedProcessing } from '../support/events.js';

const SCHEMA = 'astria_reconciler';
const SECRET = 'callbacks-secret';
const MINUTE = 60_000;
const GRACE = 10 * MINUTE;
const DAY = 24 * 60 * MINUTE;

/** A process clock `offsetMs` away from the machine's: replicas' clocks may disagree by minutes. */
const skewedClock = (offsetMs: number) => ({ now: () => Date.now() + offsetMs, sleep: async () => undefined });

/**
 * Time passes on the database's clock: everything it stamped moves `ms` into its past (a test cannot
 * move the database's clock itself). The judges and the report read only these stamps and `now()`.
 */
async function elapse(pool: pg.Pool, ms: number): Promise<void> {
  await pool.query(`UPDATE ${SCHEMA}.events SET recorded_at = recorded_at - $1 * interval '1 millisecond'`, [ms]);
  await pool.query(`UPDATE ${SCHEMA}.callbacks SET received_at = received_at - $1 * interval '1 millisecond'`, [ms]);
  await pool.query(
    `UPDATE ${SCHEMA}.callback_recording SET started_at = started_at - $1 * interval '1 millisecond', judged_from = judged_from - $1 * interval '1 millisecond'`,
    [ms],
  );
}

/** The reconciler (its process clock `offsetMs` off) applies READY for the model of `tuneId`. */
async function reconciled(pool: pg.Pool, tuneId: number, offsetMs = 0): Promise<void> {
  const service = createStatusService({ pool, clock: skewedClock(offsetMs) });
  const now = new Date(Date.now() + offsetMs);
  expect(await advance(pool, service, tuneId, 'trained', { now, source: 'reconciler' })).toHaveLength(1);
}

/** Astria's callback for `tuneId` reaches the app's route (or a sidecar) whose process clock is `offsetMs` off. */
async function callback(pool: pg.Pool, tuneId: number, offsetMs = 0): Promise<number> {
  const now = () => new Date(Date.now() + offsetMs);
  const tune = { id: tuneId, trained_at: new Date(now().getTime() - 1_000).toISOString(), started_training_at: new Date(now().getTime() - 30 * MINUTE).toISOString() };
  const body = (async function* () {
    yield Buffer.from(JSON.stringify({ tune }));
  })();
  const service = createStatusService({ pool, clock: skewedClock(offsetMs) });
  const response = await acceptAstriaCallback({ givenSecret: SECRET, body }, { secret: SECRET, pool, service, trainingTimeoutMs: DAY, now });
  return response.status;
}

/** A database with our schema, callbacks recorded since a day ago, and `count` models TRAINING. */
async function trainingModels(pool: pg.Pool, prefix: string, count: number, firstTuneId: number): Promise<number[]> {
  await ensureOwnSchema(pool, SCHEMA);
  await pool.query(`UPDATE ${SCHEMA}.callback_recording SET started_at = now() - interval '1 day'`);
  const models = await seedProcessing(pool, prefix, count, firstTuneId);
  const service = createStatusService({ pool });
  for (const [, tuneId] of models) await advance(pool, service, tuneId, 'started', { now: new Date(Date.now() - 60 * MINUTE) });
  return models.map(([, tuneId]) => tuneId);
}

let db: TestDatabase;
let tunes: number[];
const judge = async () => (await classifyReconcilerRecoveries(db.pool, SCHEMA, GRACE)).tune;

beforeAll(async () => {
  db = await createTestDatabase();
  tunes = await trainingModels(db.pool, 'cb', 7, 70_000);
});
afterAll(() => db.drop());

describe('lost means lost', () => {
  it('a reconciler READY with no callback within the grace is lost, once; a callback after it is late; the webhook first counts neither', async () => {
    for (const i of [0, 1, 3, 4]) await reconciled(db.pool, tunes[i]!); // 0: its callback never comes
    await elapse(db.pool, 5_000);
    expect(await callback(db.pool, tunes[2]!)).toBe(200); // the webhook first: applies READY itself
    expect((await readModel(db.pool, 'cb-2')).status).toBe('READY');
    await elapse(db.pool, 25_000);
    expect(await callback(db.pool, tunes[1]!)).toBe(200); // arrives 30 s after the reconciler: late
    await elapse(db.pool, 30_000);

    expect(await judge()).toEqual({ lost: 0, late: 1 });
    await elapse(db.pool, GRACE - 2 * MINUTE); // the grace still running: nothing lost yet
    expect(await judge()).toEqual({ lost: 0, late: 0 });
    await elapse(db.pool, 2 * MINUTE);
    expect(await callback(db.pool, tunes[4]!)).toBe(200); // after the grace: too late to matter
    await elapse(db.pool, MINUTE);
    expect(await judge()).toEqual({ lost: 3, late: 0 });
    // Another leader (a failover) judging again counts nothing twice.
    expect(await judge()).toEqual({ lost: 0, late: 0 });

    const report = await buildReport(db.pool, SCHEMA, 60 * MINUTE);
    expect(report.callbacks).toEqual({ lost: 3, late: 1, webhookFirst: 1, pending: 0, unrecorded: 0 });
    expect(formatReport(report)).toContain('Astria callbacks (READY): lost 3, late 1, webhook first 1');
  });

  it('a callback racing the reconciler (arrived a moment before its write) is not lost', async () => {
    await recordCallbackArrival(pgExecutor(db.pool), SCHEMA, tunes[5]!);
    await reconciled(db.pool, tunes[5]!);
    await elapse(db.pool, GRACE + MINUTE);
    expect(await judge()).toEqual({ lost: 0, late: 1 });
  });

  it('recoveries from before callbacks were recorded are never judged, and report says so', async () => {
    await reconciled(db.pool, tunes[6]!);
    await db.pool.query(`UPDATE ${SCHEMA}.events SET recorded_at = recorded_at - interval '2 days' WHERE model_id = 'cb-6'`);
    expect(await judge()).toEqual({ lost: 0, late: 0 });
    const report = await buildReport(db.pool, SCHEMA, 3 * DAY);
    expect(report.callbacks).toEqual({ lost: 3, late: 2, webhookFirst: 1, pending: 0, unrecorded: 1 });
    expect(formatReport(report)).toContain('1 recoveries from before callbacks were recorded: neither lost nor late');
  });
});

describe('judging reads what is new', () => {
  it('a leader back after two days judges every READY since its last judgement; the next judgement starts near now', async () => {
    const fresh = await createTestDatabase();
    try {
      const back = await trainingModels(fresh.pool, 'back', 3, 97_000);
      await reconciled(fresh.pool, back[0]!);
      await reconciled(fresh.pool, back[1]!);
      await elapse(fresh.pool, MINUTE);
      await recordCallbackArrival(pgExecutor(fresh.pool), SCHEMA, back[1]!);
      const judgeFresh = async () => (await classifyReconcilerRecoveries(fresh.pool, SCHEMA, GRACE)).tune;
      expect(await judgeFresh()).toEqual({ lost: 0, late: 1 });
      // No leader for two days: the first READY's verdict is still owed, and given.
      await elapse(fresh.pool, 2 * DAY);
      expect(await judgeFresh()).toEqual({ lost: 1, late: 0 });
      // A day a judgement: the second reaches the present.
      expect(await judgeFresh()).toEqual({ lost: 0, late: 0 });
      const { rows } = await fresh.pool.query<{ behind_minutes: number }>(
        `SELECT round(extract(epoch FROM now() - judged_from) / 60)::int AS behind_minutes FROM ${SCHEMA}.callback_recording`,
      );
      // Grace (10 min) plus the ten minutes a slow transaction of ours may take to commit.
      expect(rows[0]!.behind_minutes).toBe(20);
      // A READY written now is judged as before.
      await reconciled(fresh.pool, back[2]!);
      await elapse(fresh.pool, GRACE + MINUTE);
      expect(await judgeFresh()).toEqual({ lost: 1, late: 0 });
    } finally {
      await fresh.drop();
    }
  });
});

describe('report with no leader to judge (recoveries of `--once` alone)', () => {
  it('judges the unjudged as of now, without writing verdicts: lost after the grace, late with a callback, pending within it', async () => {
    const fresh = await createTestDatabase();
    try {
      const once = await trainingModels(fresh.pool, 'once', 3, 90_000);
      // Recovered 25 min ago (no callback ever) and (its callback came a minute later), and 5 min ago.
      await reconciled(fresh.pool, once[0]!);
      await reconciled(fresh.pool, once[1]!);
      await elapse(fresh.pool, MINUTE);
      await recordCallbackArrival(pgExecutor(fresh.pool), SCHEMA, once[1]!);
      await elapse(fresh.pool, GRACE + 9 * MINUTE);
      await reconciled(fresh.pool, once[2]!);
      await elapse(fresh.pool, 5 * MINUTE);

      const report = await buildReport(fresh.pool, SCHEMA, 60 * MINUTE, undefined, GRACE);
      expect(report.callbacks).toEqual({ lost: 1, late: 1, webhookFirst: 0, pending: 1, unrecorded: 0 });
      const verdicts = await fresh.pool.query(`SELECT count(*)::int AS n FROM ${SCHEMA}.callback_outcomes`);
      expect(verdicts.rows[0]!.n).toBe(0);
    } finally {
      await fresh.drop();
    }
  });
});

describe('replicas whose clocks disagree', () => {
  it('judge on the database clock: a callback a second after the READY is late, whichever replica is minutes off, and report agrees', async () => {
    const fresh = await createTestDatabase();
    try {
      const skew = await trainingModels(fresh.pool, 'skew', 4, 95_000);
      // The leader's clock runs 3 minutes ahead; the replicas receiving the callbacks run 3 minutes behind.
      for (const tuneId of skew) await reconciled(fresh.pool, tuneId, 3 * MINUTE);
      await elapse(fresh.pool, 1_000);
      expect(await callback(fresh.pool, skew[0]!, -3 * MINUTE)).toBe(200);
      expect(await callback(fresh.pool, skew[1]!, -3 * MINUTE)).toBe(200);
      // Another replica whose clock runs 4 minutes ahead of the leader's.
      expect(await callback(fresh.pool, skew[2]!, 7 * MINUTE)).toBe(200);
      await elapse(fresh.pool, GRACE + MINUTE);

      // Two leaders in turn (a failover between them): the verdicts are the database's, given once.
      expect((await classifyReconcilerRecoveries(fresh.pool, SCHEMA, GRACE)).tune).toEqual({ lost: 1, late: 3 });
      expect((await classifyReconcilerRecoveries(fresh.pool, SCHEMA, GRACE)).tune).toEqual({ lost: 0, late: 0 });

      const report = await buildReport(fresh.pool, SCHEMA, 60 * MINUTE);
      expect(report.callbacks).toEqual({ lost: 1, late: 3, webhookFirst: 0, pending: 0, unrecorded: 0 });
      expect(report.transitions.READY).toEqual({ webhook: 0, reconciler: 4 });
      expect(report.recoveries).toBe(4);
      expect(report.lagSeconds.max).not.toBeNull();
    } finally {
      await fresh.drop();
    }
  });
});
