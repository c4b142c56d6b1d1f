import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listDeadDeliveries, requeueDeadDeliveries } from '../../src/broadcast/dead-letter.js';
import { createDispatcher, type DispatcherOptions } from '../../src/broadcast/dispatcher.js';
import { createHttpTransport } from '../../src/broadcast/http.js';
import { createDatabase, dropDatabase } from '../../dev/embedded-postgres.js';
import { HostTableMissingError } from '../../src/db/host-check.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { ownSchemaBeforeMigrations } from '../support/own-schema-before-migrations.js';
import { eventually, freePort, startReceiver } from '../support/receiver.js';
import pg from 'pg';
import { inject } from 'vitest';

const SECRET = 'outbox-test-secret';
const log = createLogger('silent');
const FAST = { pollIntervalMs: 100, backoffBaseMs: 20, backoffCapMs: 100, gaugeIntervalMs: 50 };

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());

/** A schema of its own per test; autovacuum off so its tables never get statistics while the test runs. */
async function freshSchema(): Promise<string> {
  const schema = `ob_${randomBytes(4).toString('hex')}`;
  await ensureOwnSchema(db.pool, schema);
  for (const table of ['events', 'deliveries']) {
    await db.pool.query(`ALTER TABLE ${schema}.${table} SET (autovacuum_enabled = false)`);
  }
  return schema;
}

/** `count` pending http deliveries, `perModel` events per model, in seq order per model. */
async function seedPending(schema: string, count: number, perModel: number): Promise<void> {
  await db.pool.query(
    `WITH inserted AS (
       INSERT INTO ${schema}.events (event_id, model_id, user_id, from_status, to_status, source, payload, occurred_at)
       SELECT id, 'model-' || (i % ($2::int / $3::int)), 'user-1', 'TRAINING', 'READY', 'reconciler',
              jsonb_build_object('type', 'model_status_changed', 'eventId', id, 'modelId', 'model-' || (i % ($2::int / $3::int)), 'n', i),
              now()
         FROM (SELECT gen_random_uuid() AS id, i FROM generate_series(0, $2::int - 1) AS i ORDER BY i) AS s
       RETURNING seq)
     INSERT INTO ${schema}.deliveries (event_seq, transport) SELECT seq, $1 FROM inserted`,
    ['http', count, perModel],
  );
}

async function withDispatcher<T>(options: Omit<DispatcherOptions, 'pool' | 'log'>, body: () => Promise<T>): Promise<T> {
  const stop = new AbortController();
  const dispatcher = createDispatcher({ pool: db.pool, log, ...options });
  const running = dispatcher.run(stop.signal);
  try {
    return await body();
  } finally {
    stop.abort();
    await running;
  }
}

describe('the outbox claim on fresh tables (no statistics)', () => {
  it('delivers 5,000 pending deliveries, in order per model, with a plan that needs no statistics', async () => {
    const schema = await freshSchema();
    await seedPending(schema, 5_000, 5);
    const receiver = await startReceiver({ secret: SECRET });
    const transport = createHttpTransport({ url: receiver.url, secret: SECRET });
    try {
      // Before the fix one claim took over 11 s here and 40 were delivered in 60 s.
      await withDispatcher({ schema, transports: [transport], ...FAST }, () =>
        eventually(() => receiver.state.accepted.length >= 5_000, 60_000, '5,000 deliveries'),
      );
      const byModel = new Map<string, number[]>();
      for (const event of receiver.state.accepted) {
        byModel.set(event.modelId, [...(byModel.get(event.modelId) ?? []), Number(event.payload.n)]);
      }
      expect(byModel.size).toBe(1_000);
      for (const sequence of byModel.values()) expect(sequence).toEqual([...sequence].sort((a, b) => a - b));
      const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM ${schema}.deliveries WHERE delivered_at IS NULL`);
      expect(rows[0].n).toBe(0);
    } finally {
      await transport.close();
      await receiver.close();
    }
  }, 90_000);
});

describe('dead letter', () => {
  it('parks a delivery still rejected after N attempts: kept, counted, out of the gauges, listed, re-queued', async () => {
    const schema = await freshSchema();
    await seedPending(schema, 2, 2); // one model, two events
    const receiver = await startReceiver({ secret: SECRET, status: 400 });
    const transport = createHttpTransport({ url: receiver.url, secret: SECRET });
    const metrics = createMetrics();
    const value = async (name: string, transportName = 'http') =>
      (await metrics.registry.getSingleMetric(name)!.get()).values.find((v) => v.labels.transport === transportName)?.value;
    try {
      await withDispatcher({ schema, transports: [transport], metrics, deadAfterAttempts: 3, ...FAST }, async () => {
        await eventually(async () => (await value('astria_reconciler_dead_deliveries_total')) === 2, 20_000, 'both deliveries parked');
        // The first one was parked, so the model's second event went on (and was parked in turn).
        await eventually(async () => (await value('astria_reconciler_outbox_pending')) === 0, 5_000, 'pending gauge to exclude dead ones');
        expect(await value('astria_reconciler_outbox_oldest_pending_seconds')).toBe(0);
        const requestsWhenParked = receiver.state.requests;
        await new Promise((resolve) => setTimeout(resolve, 500));
        expect(receiver.state.requests).toBe(requestsWhenParked);

        const dead = await listDeadDeliveries(db.pool, schema);
        expect(dead).toMatchObject({ total: 2, byTransport: { http: 2, redis: 0 } });
        expect(dead.recent.map((d) => ({ attempts: d.attempts, lastError: d.lastError }))).toEqual([
          { attempts: 3, lastError: 'HTTP 400: try later' },
          { attempts: 3, lastError: 'HTTP 400: try later' },
        ]);

        receiver.state.status = 200;
        expect(await requeueDeadDeliveries(db.pool, schema, 'redis')).toEqual({ http: 0, redis: 0 });
        expect(await requeueDeadDeliveries(db.pool, schema, null)).toEqual({ http: 2, redis: 0 });
        await eventually(() => receiver.state.accepted.length === 2, 10_000, 'the re-queued deliveries');
      });
      expect(receiver.state.accepted.map((event) => event.payload.n)).toEqual([0, 1]);
      expect((await listDeadDeliveries(db.pool, schema)).total).toBe(0);
    } finally {
      await transport.close();
      await receiver.close();
    }
  }, 40_000);

  it('a receiver answering a redirect (3xx) is rejecting: parked after N attempts, its last error naming the Location', async () => {
    const schema = await freshSchema();
    await seedPending(schema, 1, 1);
    const receiver = await startReceiver({ secret: SECRET, status: 308 });
    const transport = createHttpTransport({ url: receiver.url, secret: SECRET });
    try {
      await withDispatcher({ schema, transports: [transport], deadAfterAttempts: 2, deadAfterMs: 3_600_000, ...FAST }, () =>
        eventually(async () => (await listDeadDeliveries(db.pool, schema)).total === 1, 10_000, 'the redirected delivery parked'),
      );
      const dead = await listDeadDeliveries(db.pool, schema);
      expect(dead.recent.map((d) => ({ attempts: d.attempts, lastError: d.lastError }))).toEqual([
        { attempts: 2, lastError: `HTTP 308: redirect to ${receiver.url}/` },
      ]);
      expect(receiver.state.requests).toBe(2);
    } finally {
      await transport.close();
      await receiver.close();
    }
  });

  it('parks a delivery still rejected once it is older than the age limit', async () => {
    const schema = await freshSchema();
    await seedPending(schema, 1, 1);
    await db.pool.query(`UPDATE ${schema}.deliveries SET queued_at = now() - interval '2 hours'`);
    const receiver = await startReceiver({ secret: SECRET, status: 422 });
    const transport = createHttpTransport({ url: receiver.url, secret: SECRET });
    try {
      await withDispatcher({ schema, transports: [transport], deadAfterMs: 3_600_000, ...FAST }, () =>
        eventually(async () => (await listDeadDeliveries(db.pool, schema)).total === 1, 10_000, 'the old delivery parked'),
      );
      expect(receiver.state.requests).toBe(1);
    } finally {
      await transport.close();
      await receiver.close();
    }
  });

  it('parks a delivery the receiver keeps failing on (500) once older than the age limit, never by attempts; the model goes on', async () => {
    const schema = await freshSchema();
    await seedPending(schema, 2, 2); // one model, two events
    const receiver = await startReceiver({ secret: SECRET });
    receiver.state.statusOf = (payload) => (payload.n === 0 ? 500 : 200);
    const transport = createHttpTransport({ url: receiver.url, secret: SECRET });
    const startedAt = Date.now();
    try {
      await withDispatcher({ schema, transports: [transport], deadAfterAttempts: 2, deadAfterMs: 1_500, ...FAST }, () =>
        eventually(() => receiver.state.accepted.length === 1, 15_000, "the model's next event, once the failing one is parked"),
      );
      expect(Date.now() - startedAt).toBeGreaterThanOrEqual(1_500);
      const dead = await listDeadDeliveries(db.pool, schema);
      expect(dead.total).toBe(1);
      expect(dead.recent[0]!.lastError).toBe('HTTP 500: try later');
      // Many more attempts than the attempt limit: a failure parks by age only.
      expect(dead.recent[0]!.attempts).toBeGreaterThan(2);
      expect(receiver.state.accepted[0]!.payload.n).toBe(1);
    } finally {
      await transport.close();
      await receiver.close();
    }
  });

  it('never parks deliveries to a receiver that is down (refused connections, then 5xx and 429) past both limits; it gets every event once back', async () => {
    const schema = await freshSchema();
    await seedPending(schema, 6, 3); // two models, three events each
    await db.pool.query(`UPDATE ${schema}.deliveries SET queued_at = now() - interval '2 hours'`);
    const port = await freePort();
    const transport = createHttpTransport({ url: `http://127.0.0.1:${port}/broadcast`, secret: SECRET });
    const metrics = createMetrics();
    const attempts = async () => (await db.pool.query(`SELECT max(attempts)::int AS n FROM ${schema}.deliveries`)).rows[0].n as number;
    let receiver: Awaited<ReturnType<typeof startReceiver>> | undefined;
    try {
      await withDispatcher({ schema, transports: [transport], metrics, deadAfterAttempts: 2, deadAfterMs: 3_600_000, ...FAST }, async () => {
        await eventually(async () => (await attempts()) >= 4, 20_000, 'attempts past the limit while nothing listens');
        receiver = await startReceiver({ secret: SECRET, port, status: 503 });
        const seen = receiver.state.requests;
        await eventually(() => receiver!.state.requests >= seen + 3, 10_000, 'attempts answered 503');
        receiver.state.status = 429;
        await eventually(() => receiver!.state.requests >= seen + 6, 10_000, 'attempts answered 429');
        expect((await listDeadDeliveries(db.pool, schema)).total).toBe(0);
        receiver.state.status = 200;
        await eventually(() => receiver!.state.accepted.length === 6, 20_000, 'every event once the receiver is back');
      });
      const byModel = new Map<string, number[]>();
      for (const event of receiver!.state.accepted) byModel.set(event.modelId, [...(byModel.get(event.modelId) ?? []), Number(event.payload.n)]);
      for (const sequence of byModel.values()) expect(sequence).toEqual([...sequence].sort((a, b) => a - b));
      expect((await metrics.registry.getSingleMetric('astria_reconciler_dead_deliveries_total')!.get()).values.find((v) => v.labels.transport === 'http')?.value).toBe(0);
    } finally {
      await transport.close();
      await receiver?.close();
    }
  }, 60_000);

  it('the outbox gauges show the pending backlog and its age while the receiver is down', async () => {
    const schema = await freshSchema();
    await seedPending(schema, 3, 1);
    await db.pool.query(`UPDATE ${schema}.deliveries SET queued_at = now() - interval '90 seconds'`);
    const receiver = await startReceiver({ secret: SECRET, status: 500 });
    const transport = createHttpTransport({ url: receiver.url, secret: SECRET });
    const metrics = createMetrics();
    try {
      await withDispatcher({ schema, transports: [transport], metrics, ...FAST }, async () => {
        await eventually(() => receiver.state.requests >= 3, 10_000, 'first attempts');
        const text = await metrics.registry.metrics();
        expect(text).toMatch(/astria_reconciler_outbox_pending\{transport="http"\} 3/);
        const oldest = Number(/astria_reconciler_outbox_oldest_pending_seconds\{transport="http"\} ([\d.]+)/.exec(text)![1]);
        expect(oldest).toBeGreaterThanOrEqual(90);
        expect(oldest).toBeLessThan(200);
      });
    } finally {
      await transport.close();
      await receiver.close();
    }
  });
});

describe('our schema', () => {
  it('upgrades a deliveries table from before dead letters, keeping its rows', async () => {
    const schema = `old_${randomBytes(4).toString('hex')}`;
    // The schema of a release from before dead letters (and before numbered migrations).
    for (const statement of ownSchemaBeforeMigrations(schema).filter((sql) => !/queued_at|dead_at/.test(sql))) await db.pool.query(statement);
    await seedPending(schema, 2, 1);

    await ensureOwnSchema(db.pool, schema);

    const { rows } = await db.pool.query(`SELECT count(*)::int AS n, count(*) FILTER (WHERE dead_at IS NULL AND queued_at IS NOT NULL)::int AS upgraded FROM ${schema}.deliveries`);
    expect(rows[0]).toEqual({ n: 2, upgraded: 2 });
  });

  it('is never created in a database without ai_models', async () => {
    const adminUrl = inject('adminDatabaseUrl');
    const name = `t_noapp_${randomBytes(4).toString('hex')}`;
    const url = await createDatabase(adminUrl, name);
    const pool = new pg.Pool({ connectionString: url, max: 2 });
    try {
      await expect(ensureOwnSchema(pool, 'astria_reconciler')).rejects.toThrow(HostTableMissingError);
      await expect(ensureOwnSchema(pool, 'astria_reconciler')).rejects.toThrow(/ai_models.*DATABASE_URL.*\?schema=/);
      const { rows } = await pool.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'astria_reconciler'`);
      expect(rows[0].n).toBe(0);
    } finally {
      await pool.end();
      await dropDatabase(adminUrl, name);
    }
  });
});
