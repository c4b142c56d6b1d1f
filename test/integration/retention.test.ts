import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { pruneCallbackArrivals, pruneDeliveredEvents } from '../../src/broadcast/retention.js';
import { recordCallbackArrival } from '../../src/db/callbacks.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { pgExecutor } from '../../src/db/pg-driver.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { advance, seedProcessing } from '../support/events.js';

const DAY = 86_400_000;

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
});
afterAll(() => db.drop());

/** Applies PROCESSING → TRAINING to `count` new models, with the service's clock at `at`; returns the eventIds. */
async function events(prefix: string, count: number, firstTuneId: number, at: Date, transports: ('pg' | 'http')[]): Promise<string[]> {
  const service = createStatusService({ pool: db.pool, transports, clock: { now: () => at.getTime(), sleep: async () => undefined } });
  const models = await seedProcessing(db.pool, prefix, count, firstTuneId);
  const ids: string[] = [];
  for (const [, tuneId] of models) ids.push(...(await advance(db.pool, service, tuneId, 'started', { now: at })).map((e) => e.eventId));
  return ids;
}

async function markDelivered(eventIds: string[]): Promise<void> {
  await db.pool.query(
    `UPDATE astria_reconciler.deliveries d SET delivered_at = now()
       FROM astria_reconciler.events e WHERE e.seq = d.event_seq AND e.event_id = ANY($1::uuid[])`,
    [eventIds],
  );
}

describe('pruneDeliveredEvents', () => {
  it('deletes old events whose deliveries are all done (or that had none), in batches; keeps what is owed', async () => {
    const old = new Date(Date.now() - 40 * DAY);
    const recent = new Date(Date.now() - 2 * DAY);
    const oldDelivered = await events('old-delivered', 7, 1_000, old, ['pg', 'http']);
    await markDelivered(oldDelivered);
    const oldPgOnly = await events('old-pg', 2, 2_000, old, ['pg']);
    const oldPending = await events('old-pending', 2, 3_000, old, ['pg', 'http']);
    const recentDelivered = await events('recent', 2, 4_000, recent, ['pg', 'http']);
    await markDelivered(recentDelivered);

    const deleted = await pruneDeliveredEvents(db.pool, 'astria_reconciler', 30 * DAY, 3);

    expect(deleted).toBe(oldDelivered.length + oldPgOnly.length);
    const { rows } = await db.pool.query(`SELECT event_id FROM astria_reconciler.events ORDER BY seq`);
    expect(rows.map((row) => row.event_id)).toEqual([...oldPending, ...recentDelivered]);
    // Deliveries went with their events; the owed ones stay pending.
    const deliveries = await db.pool.query(
      `SELECT count(*)::int AS n, count(*) FILTER (WHERE delivered_at IS NULL)::int AS pending FROM astria_reconciler.deliveries`,
    );
    expect(deliveries.rows[0]).toEqual({ n: 4, pending: 2 });
    expect(await pruneDeliveredEvents(db.pool, 'astria_reconciler', 30 * DAY, 3)).toBe(0);
  });
});

/** A callback for `tuneId` recorded `agoMs` ago: the database stamps it now, so an older one is moved into its past. */
async function arrival(tuneId: number, agoMs: number): Promise<void> {
  await recordCallbackArrival(pgExecutor(db.pool), 'astria_reconciler', tuneId);
  await db.pool.query(
    `UPDATE astria_reconciler.callbacks SET received_at = received_at - $2 * interval '1 millisecond' WHERE tune_id = $1`,
    [String(tuneId), agoMs],
  );
}

describe('pruneCallbackArrivals', () => {
  it('deletes callback arrivals older than the retention, in batches; keeps the recent ones', async () => {
    for (let tuneId = 1; tuneId <= 7; tuneId += 1) await arrival(tuneId, 40 * DAY);
    await arrival(8, 2 * DAY);
    await arrival(9, 0);

    expect(await pruneCallbackArrivals(db.pool, 'astria_reconciler', 30 * DAY, 3)).toBe(7);
    const { rows } = await db.pool.query(`SELECT tune_id FROM astria_reconciler.callbacks ORDER BY id`);
    expect(rows.map((row) => row.tune_id)).toEqual(['8', '9']);
    expect(await pruneCallbackArrivals(db.pool, 'astria_reconciler', 30 * DAY, 3)).toBe(0);
  });
});
