import { randomBytes } from 'node:crypto';
import { Writable } from 'node:stream';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDispatcher } from '../../src/broadcast/dispatcher.js';
import { createHttpTransport } from '../../src/broadcast/http.js';
import type { Transport } from '../../src/broadcast/transport.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { advance, readEventLog, seedProcessing, STAGES } from '../support/events.js';
import { listen } from '../support/listen.js';
import { eventually, freePort, startReceiver } from '../support/receiver.js';

const SECRET = 'broadcast-test-secret';
const log = createLogger('silent');
/** Short backoff so an outage of seconds is retried many times within the test. */
const FAST = { pollIntervalMs: 100, backoffBaseMs: 50, backoffCapMs: 400 };

let db: TestDatabase;
let nextTuneId = 10_000;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());

/** A schema of its own per test, so each test's outbox is its own. */
async function freshSchema(): Promise<string> {
  const schema = `bc_${randomBytes(4).toString('hex')}`;
  await ensureOwnSchema(db.pool, schema);
  return schema;
}

function tuneIds(count: number): number {
  const first = nextTuneId;
  nextTuneId += count;
  return first;
}

async function oneModel(prefix: string): Promise<[string, number]> {
  const [model] = await seedProcessing(db.pool, prefix, 1, tuneIds(1));
  return model!;
}

async function pendingDeliveries(schema: string): Promise<number> {
  const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM ${schema}.deliveries WHERE delivered_at IS NULL`);
  return rows[0].n;
}

describe('own schema', () => {
  it('is created idempotently when several replicas start at once', async () => {
    const schema = `race_${randomBytes(4).toString('hex')}`;
    const pools = Array.from({ length: 5 }, () => new pg.Pool({ connectionString: db.url, max: 1 }));
    try {
      await Promise.all(pools.map((pool) => ensureOwnSchema(pool, schema)));
      await ensureOwnSchema(db.pool, schema);
    } finally {
      await Promise.all(pools.map((pool) => pool.end()));
    }
    const { rows } = await db.pool.query(
      `SELECT table_name FROM information_schema.tables WHERE table_schema = $1 ORDER BY table_name`,
      [schema],
    );
    expect(rows.map((row) => row.table_name)).toEqual(['callback_outcomes', 'callback_recording', 'callbacks', 'deliveries', 'events', 'migrations', 'tune_models']);
    const recording = await db.pool.query(`SELECT count(*)::int AS n FROM ${schema}.callback_recording`);
    expect(recording.rows[0].n).toBe(1);
  });
});

describe('status service outbox (same transaction as the status write)', () => {
  it('writes the event, one delivery row per async transport and the NOTIFY together', async () => {
    const schema = await freshSchema();
    const [modelId, tuneId] = await oneModel('tx-ok');
    const listener = await listen(db.url);
    const service = createStatusService({ pool: db.pool, schema, transports: ['pg', 'http', 'redis'] });

    const [event] = await advance(db.pool, service, tuneId, 'started');

    const notifications = await listener.waitFor(1);
    await listener.close();
    expect(notifications).toEqual([event]);
    const { rows } = await db.pool.query(
      `SELECT d.transport, d.attempts, d.delivered_at, e.event_id, e.model_id, e.from_status, e.to_status, e.source
         FROM ${schema}.deliveries d JOIN ${schema}.events e ON e.seq = d.event_seq ORDER BY d.transport`,
    );
    expect(rows).toEqual(
      ['http', 'redis'].map((transport) => ({
        transport,
        attempts: 0,
        delivered_at: null,
        event_id: event!.eventId,
        model_id: modelId,
        from_status: 'PROCESSING',
        to_status: 'TRAINING',
        source: 'reconciler',
      })),
    );
  });

  it('rolled back → no status change, no event row, no delivery row and no notification', async () => {
    const schema = await freshSchema();
    const [modelId, tuneId] = await oneModel('tx-rollback');
    // The delivery INSERT comes after the event INSERT and the NOTIFY: failing it rolls all of them back.
    await db.pool.query(`
      CREATE FUNCTION ${schema}.refuse() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN RAISE EXCEPTION 'outbox refused'; END $$;
      CREATE TRIGGER refuse BEFORE INSERT ON ${schema}.deliveries FOR EACH ROW EXECUTE FUNCTION ${schema}.refuse();`);
    const listener = await listen(db.url);
    const service = createStatusService({ pool: db.pool, schema, transports: ['pg', 'http'] });

    await expect(advance(db.pool, service, tuneId, 'started')).rejects.toThrow(/outbox refused/);

    expect(await listener.settle()).toEqual([]);
    await listener.close();
    expect((await readModel(db.pool, modelId)).status).toBe('PROCESSING');
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM ${schema}.events`);
    expect(rows[0].n).toBe(0);
    expect(await pendingDeliveries(schema)).toBe(0);
  });

  it('sends no NOTIFY when BROADCAST does not name pg, but still records the event', async () => {
    const schema = await freshSchema();
    const [, tuneId] = await oneModel('tx-nopg');
    const listener = await listen(db.url);
    const service = createStatusService({ pool: db.pool, schema, transports: ['http'] });

    await advance(db.pool, service, tuneId, 'started');

    expect(await listener.settle()).toEqual([]);
    await listener.close();
    expect(await pendingDeliveries(schema)).toBe(1);
  });
});

describe('dispatcher', () => {
  it('http: refused for 5 s, then 500s, then up — every event delivered, in order per model, duplicates only by eventId', async () => {
    const schema = await freshSchema();
    const port = await freePort();
    const url = `http://127.0.0.1:${port}/broadcast`;
    const service = createStatusService({ pool: db.pool, schema, transports: ['pg', 'http'] });
    const transport = createHttpTransport({ url, secret: SECRET, timeoutMs: 1_000 });
    const metrics = createMetrics();
    const logLines: string[] = [];
    const captured = createLogger('warn', new Writable({ write: (chunk, _, done) => done(void logLines.push(String(chunk))) }));
    const dispatcher = createDispatcher({ pool: db.pool, schema, transports: [transport], log: captured, metrics, ...FAST, batchSize: 4 });
    const stop = new AbortController();
    const running = dispatcher.run(stop.signal);
    const models = await seedProcessing(db.pool, 'outage', 6, tuneIds(6));
    const started = Date.now();
    const at = (ms: number) => new Promise((resolve) => setTimeout(resolve, Math.max(0, started + ms - Date.now())));

    // Connection refused: nothing listens on the port yet. Events keep coming meanwhile.
    for (const [, tuneId] of models) await advance(db.pool, service, tuneId, STAGES[0]);
    dispatcher.kick();
    await at(2_500);
    for (const [, tuneId] of models.slice(0, 4)) await advance(db.pool, service, tuneId, STAGES[1]);
    dispatcher.kick();
    await at(5_000);
    const receiver = await startReceiver({ secret: SECRET, port, status: 500 });
    await at(5_300);
    for (const [, tuneId] of models.slice(0, 2)) await advance(db.pool, service, tuneId, STAGES[2], { schema });
    dispatcher.kick();
    await at(6_000);
    expect(receiver.state.accepted).toEqual([]);
    expect(receiver.state.rejected).toBeGreaterThan(0);
    receiver.state.status = 200;

    const log_ = await readEventLog(db.pool, schema);
    expect(log_.payloads.size).toBe(6 + 4 + 2);
    await eventually(
      () => new Set(receiver.state.accepted.map((event) => event.eventId)).size === log_.payloads.size,
      8_000,
      'every event to be accepted',
    );
    await eventually(async () => (await pendingDeliveries(schema)) === 0, 2_000, 'the outbox to drain');
    stop.abort();
    await running;
    await receiver.close();
    await transport.close();

    expect(receiver.state.badSignatures).toBe(0);
    // Both failure modes were met: refused connections, then 500s.
    expect(logLines.some((line) => line.includes('ECONNREFUSED'))).toBe(true);
    expect(logLines.some((line) => line.includes('HTTP 500'))).toBe(true);
    // The set delivered is the set written; a duplicate is a byte-identical event (same eventId).
    expect(new Set(receiver.state.accepted.map((event) => event.eventId))).toEqual(new Set(log_.payloads.keys()));
    for (const event of receiver.state.accepted) expect(event.payload).toEqual(log_.payloads.get(event.eventId));
    // In order per model: first receipts follow the log's order.
    for (const [modelId, eventIds] of log_.byModel) {
      const received = [...new Set(receiver.state.accepted.filter((event) => event.modelId === modelId).map((event) => event.eventId))];
      expect(received).toEqual(eventIds);
    }
    const { rows } = await db.pool.query(
      `SELECT max(attempts)::int AS max_attempts, count(*) FILTER (WHERE last_error IS NOT NULL)::int AS with_error
         FROM ${schema}.deliveries`,
    );
    expect(rows[0].with_error).toBe(0);
    expect(rows[0].max_attempts).toBeGreaterThan(3);
    const failed = (await metrics.broadcastDeliveries.get()).values.find((value) => value.labels.outcome === 'failed');
    expect(failed?.value).toBeGreaterThan(0);
  }, 20_000);

  it('two replicas dispatching: each event delivered by exactly one of them', async () => {
    const schema = await freshSchema();
    const receiver = await startReceiver({ secret: SECRET, delayMs: 15 });
    const service = createStatusService({ pool: db.pool, schema, transports: ['http'] });
    const models = await seedProcessing(db.pool, 'replicas', 40, tuneIds(40));
    for (const [, tuneId] of models) await advance(db.pool, service, tuneId, 'started');
    for (const [, tuneId] of models.slice(0, 10)) await advance(db.pool, service, tuneId, 'failed');

    const deliveredBy = new Map<string, string[]>();
    const replica = (name: string, pool: pg.Pool) => {
      const http = createHttpTransport({ url: receiver.url, secret: SECRET });
      const transport: Transport = {
        name: 'http',
        async deliver(event) {
          await http.deliver(event);
          deliveredBy.set(event.eventId, [...(deliveredBy.get(event.eventId) ?? []), name]);
        },
        close: () => http.close(),
      };
      return { transport, dispatcher: createDispatcher({ pool, schema, transports: [transport], log, ...FAST, batchSize: 5 }) };
    };
    const otherPool = new pg.Pool({ connectionString: db.url, max: 5 });
    const replicas = [replica('a', db.pool), replica('b', otherPool)];
    const stop = new AbortController();
    const runs = replicas.map(({ dispatcher }) => dispatcher.run(stop.signal));
    replicas.forEach(({ dispatcher }) => dispatcher.kick());

    await eventually(async () => (await pendingDeliveries(schema)) === 0, 10_000, 'the outbox to drain');
    stop.abort();
    await Promise.all(runs);
    await Promise.all(replicas.map(({ transport }) => transport.close()));
    await otherPool.end();
    await receiver.close();

    expect(receiver.state.accepted).toHaveLength(50);
    expect(new Set(receiver.state.accepted.map((event) => event.eventId)).size).toBe(50);
    expect([...deliveredBy.values()].every((names) => names.length === 1)).toBe(true);
    const counts = { a: 0, b: 0 };
    for (const [name] of deliveredBy.values()) counts[name as 'a' | 'b']++;
    expect(counts.a).toBeGreaterThan(0);
    expect(counts.b).toBeGreaterThan(0);
    expect(counts.a + counts.b).toBe(50);
  });

  it('a slow transport never holds up another; run() waits for the delivery under way', async () => {
    const schema = await freshSchema();
    const receiver = await startReceiver({ secret: SECRET });
    const service = createStatusService({ pool: db.pool, schema, transports: ['http', 'redis'] });
    const http = createHttpTransport({ url: receiver.url, secret: SECRET });
    // A transport that hangs until the test lets it go: no timing assumption about a loaded machine.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const slowStarted: string[] = [];
    const slowDelivered: string[] = [];
    const slow: Transport = {
      name: 'redis',
      async deliver(event) {
        slowStarted.push(event.eventId);
        await gate;
        slowDelivered.push(event.eventId);
      },
      close: async () => undefined,
    };
    const dispatcher = createDispatcher({ pool: db.pool, schema, transports: [slow, http], log, ...FAST });
    const stop = new AbortController();
    const running = dispatcher.run(stop.signal);
    const models = await seedProcessing(db.pool, 'slow', 5, tuneIds(5));
    for (const [, tuneId] of models) await advance(db.pool, service, tuneId, 'started');
    dispatcher.kick();

    // Every http delivery went out while the slow transport's first is still hanging.
    await eventually(() => receiver.state.accepted.length === 5 && slowStarted.length > 0, 20_000, 'http to deliver past the slow transport');
    expect(slowDelivered).toEqual([]);

    stop.abort();
    let stopped = false;
    void running.then(() => (stopped = true));
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(stopped, 'run() waits for the delivery under way').toBe(false);
    release();
    await running;
    // The slow deliveries under way finished and were recorded before run() resolved.
    expect(slowDelivered).toEqual(slowStarted);
    const { rows } = await db.pool.query(
      `SELECT count(*)::int AS n FROM ${schema}.deliveries WHERE transport = 'redis' AND delivered_at IS NOT NULL`,
    );
    expect(rows[0].n).toBe(slowStarted.length);
    await http.close();
    await receiver.close();
  });

  it('delivers on the poll without a kick, and at once with one', async () => {
    const schema = await freshSchema();
    const receiver = await startReceiver({ secret: SECRET });
    const service = createStatusService({ pool: db.pool, schema, transports: ['http'] });
    const http = createHttpTransport({ url: receiver.url, secret: SECRET });
    const models = await seedProcessing(db.pool, 'kick', 2, tuneIds(2));

    // Polling only.
    const polling = createDispatcher({ pool: db.pool, schema, transports: [http], log, pollIntervalMs: 200 });
    const stopPolling = new AbortController();
    const pollingRun = polling.run(stopPolling.signal);
    await advance(db.pool, service, models[0]![1], 'started');
    await eventually(() => receiver.state.accepted.length === 1, 2_000, 'the poll to deliver');
    stopPolling.abort();
    await pollingRun;

    // A poll so slow it would never come within the test: the kick delivers.
    const kicked = createDispatcher({ pool: db.pool, schema, transports: [http], log, pollIntervalMs: 60_000 });
    const stopKicked = new AbortController();
    const kickedRun = kicked.run(stopKicked.signal);
    await new Promise((resolve) => setTimeout(resolve, 100));
    await advance(db.pool, service, models[1]![1], 'started');
    kicked.kick();
    await eventually(() => receiver.state.accepted.length === 2, 2_000, 'the kick to deliver');
    stopKicked.abort();
    await kickedRun;
    await http.close();
    await receiver.close();
  });

  it('with no async transport (BROADCAST=pg), run() simply waits for the signal', async () => {
    const dispatcher = createDispatcher({ pool: db.pool, transports: [], log });
    const stop = new AbortController();
    let resolved = false;
    const running = dispatcher.run(stop.signal).then(() => (resolved = true));
    dispatcher.kick();
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(resolved).toBe(false);
    stop.abort();
    await running;
    expect(resolved).toBe(true);
  });
});
