/**
 * The library driven through the app's own PrismaClient (Prisma 7, `@prisma/adapter-pg`), on real
 * PostgreSQL, with rows read back through the generated client as the app reads them:
 * - the webhook through Prisma racing the poller through `pg` on the same models: one transition and
 *   one event row each;
 * - timestamps exact for every combination of process `TZ` and database time zone;
 * - the app's hook runs inside the transition's transaction, once, and rolls back with it.
 */
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../../prisma/generated/client.js';
import type pg from 'pg';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createAstriaClient } from '../../src/astria/client.js';
import { tuneSchema } from '../../src/astria/tune.js';
import { systemClock } from '../../src/clock.js';
import { seedModels } from '../../dev/host-schema.js';
import type { PrismaLike } from '../../src/db/executor.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { startSimulatedAstria } from '../../dev/simulated-astria.js';
import { acceptAstriaCallback } from '../../src/http/callback.js';
import { createMetrics } from '../../src/metrics.js';
import { reconcileOnce } from '../../src/reconciler/once.js';
import { applyObservedTune } from '../../src/status/apply-tune.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const SECRET = 'prisma-driver-secret';
const TRAINING_TIMEOUT_MS = 24 * 3_600_000;
const ZONES = ['UTC', 'America/Sao_Paulo'] as const;

let db: TestDatabase;
const clients: PrismaClient[] = [];
const originalTz = process.env.TZ;

function prismaClient(): PrismaClient {
  const client = new PrismaClient({ adapter: new PrismaPg({ connectionString: db.url, max: 10 }) });
  clients.push(client);
  return client;
}

function callbackBody(tuneId: number, fields: Record<string, unknown>): ReadableStream<Uint8Array> {
  return new Blob([JSON.stringify({ id: tuneId, ...fields })]).stream();
}

beforeAll(async () => {
  db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
});

afterEach(() => {
  if (originalTz === undefined) delete process.env.TZ;
  else process.env.TZ = originalTz;
});

afterAll(async () => {
  await Promise.all(clients.map((client) => client.$disconnect()));
  await db?.drop();
});

describe('the webhook through Prisma racing the poller through pg', () => {
  it('applies each of 200 trained tunes exactly once, with one event row each', async () => {
    const prisma = prismaClient();
    const astria = await startSimulatedAstria({ apiKey: 'sd_prisma_race' });
    const log = pino({ level: 'silent' });
    const metrics = createMetrics();
    const client = createAstriaClient({
      apiUrl: astria.url,
      apiKey: 'sd_prisma_race',
      maxRps: 100_000,
      concurrency: 32,
      timeoutMs: 10_000,
      log,
      metrics,
      clock: systemClock,
      retry: { attempts: 3, baseDelayMs: 5, maxDelayMs: 20 },
    });
    try {
      const trainedAt = new Date('2026-03-01T12:34:56.789Z');
      const models = Array.from({ length: 200 }, (_, i) => ({
        id: `race-${String(i).padStart(3, '0')}`,
        tune: astria.addTune({ startedTrainingAt: new Date(trainedAt.getTime() - 600_000), trainedAt }),
      }));
      await seedModels(
        db.pool,
        models.map(({ id, tune }) => ({ id, userId: `race-user-${id}`, status: 'TRAINING' as const, trainingJobId: String(tune.id) })),
      );
      const webhookService = createStatusService({ prisma });
      // The daemon's pass, on pg: asks the simulated Astria, decides, applies through its own service.
      const poller = { pool: db.pool, astria: client, service: createStatusService({ pool: db.pool }), log, clock: systemClock, metrics };
      const wins = { webhook: 0, poller: 0 };

      await Promise.all(
        models.flatMap(({ id, tune }) => [
          acceptAstriaCallback(
            { givenSecret: SECRET, body: callbackBody(tune.id, tune) },
            { secret: SECRET, prisma, service: webhookService, trainingTimeoutMs: TRAINING_TIMEOUT_MS },
          ).then((response) => (wins.webhook += Number(response.body.applied ?? 0))),
          reconcileOnce(poller, {
            trainingTimeoutMs: TRAINING_TIMEOUT_MS,
            concurrency: 4,
            filter: { stuckBefore: null, modelIds: [id], includeError: false },
          }).then((report) => (wins.poller += report.transitioned)),
        ]),
      );
      console.log(`[prisma race] transitions applied: ${JSON.stringify(wins)}`);
      expect(wins.webhook + wins.poller).toBe(models.length);

      const rows = await prisma.aIModel.findMany({ where: { id: { startsWith: 'race-' } }, orderBy: { id: 'asc' } });
      expect(rows.map((row) => row.id)).toEqual(models.map((model) => model.id));
      for (const row of rows) {
        expect(row.status).toBe('READY');
        expect(row.trainedAt?.toISOString()).toBe(trainedAt.toISOString());
      }
      const events = await db.pool.query<{ model_id: string; count: number }>(
        `SELECT model_id, count(*)::int AS count FROM astria_reconciler.events WHERE model_id LIKE 'race-%' GROUP BY model_id`,
      );
      expect(events.rows).toHaveLength(models.length);
      expect(events.rows.every((row) => row.count === 1)).toBe(true);
    } finally {
      await client.close();
      await astria.close();
    }
  }, 120_000);
});

describe('timestamps through Prisma, whatever the time zones', () => {
  const matrix = ZONES.flatMap((processTz) => ZONES.map((databaseTz) => ({ processTz, databaseTz })));

  it.each(matrix)('process TZ $processTz, database time zone $databaseTz', async ({ processTz, databaseTz }) => {
    process.env.TZ = processTz;
    const dbName = new URL(db.url).pathname.slice(1);
    await db.pool.query(`ALTER DATABASE "${dbName}" SET timezone TO '${databaseTz}'`);
    const prisma = prismaClient(); // connects after the ALTER: its sessions run in databaseTz
    const [session] = await prisma.$queryRawUnsafe<{ zone: string }[]>("SELECT current_setting('TimeZone') AS zone");
    expect(session?.zone).toBe(databaseTz);

    const id = `tz-${processTz}-${databaseTz}`.replaceAll('/', '_');
    const tuneId = 600_000 + clients.length;
    await seedModels(db.pool, [{ id, status: 'TRAINING', trainingJobId: String(tuneId) }]);
    const now = new Date('2026-06-15T02:30:00.125Z'); // a date on which the local day differs from UTC's
    const trainedAt = '2026-06-15T01:59:59.999Z';
    const service = createStatusService({ prisma, clock: { ...systemClock, now: () => now.getTime() } });

    const response = await acceptAstriaCallback(
      { givenSecret: SECRET, body: callbackBody(tuneId, { trained_at: trainedAt, ckpt_url: 'https://ckpt.test/tz' }) },
      { secret: SECRET, prisma, service, trainingTimeoutMs: TRAINING_TIMEOUT_MS, now: () => now },
    );
    expect(response.body).toMatchObject({ applied: 1 });

    const row = await prisma.aIModel.findUniqueOrThrow({ where: { id } });
    expect(row.trainedAt?.toISOString()).toBe(trainedAt);
    expect(row.updatedAt.toISOString()).toBe(now.toISOString());
    const events = await db.pool.query<{ payload: { data: { trainedAt: string }; occurredAt: string }; trained_at: Date; occurred_at: Date }>(
      'SELECT payload, trained_at, occurred_at FROM astria_reconciler.events WHERE model_id = $1',
      [id],
    );
    expect(events.rows).toHaveLength(1);
    expect(events.rows[0]!.payload.data.trainedAt).toBe(trainedAt);
    expect(events.rows[0]!.payload.occurredAt).toBe(now.toISOString());
    expect(events.rows[0]!.trained_at.toISOString()).toBe(trainedAt);
    expect(events.rows[0]!.occurred_at.toISOString()).toBe(now.toISOString());
    await db.pool.query(`ALTER DATABASE "${dbName}" RESET timezone`);
  });
});

describe("SPEC.md's minimal library call", () => {
  it('acceptAstriaCallback({ givenSecret, contentLength, body }, { secret, prisma }) applies the callback: service and timeout have defaults', async () => {
    const prisma = prismaClient();
    // A database the sidecar never ran on: the minimal call creates our schema first.
    await db.pool.query('DROP SCHEMA astria_reconciler CASCADE');
    await seedModels(db.pool, [{ id: 'minimal-1', status: 'TRAINING', trainingJobId: '710001' }]);
    const text = JSON.stringify({ tune: { id: 710001, trained_at: '2026-05-01T10:00:00.000Z' } });
    const response = await acceptAstriaCallback(
      { givenSecret: SECRET, contentLength: Buffer.byteLength(text), body: new Blob([text]).stream() },
      { secret: SECRET, prisma },
    );
    expect(response).toMatchObject({ status: 200, body: { matched: 1, applied: 1 } });
    const row = await prisma.aIModel.findUniqueOrThrow({ where: { id: 'minimal-1' } });
    expect(row).toMatchObject({ status: 'READY', modelUrl: '710001' });
    const events = await db.pool.query(`SELECT source FROM astria_reconciler.events WHERE model_id = 'minimal-1'`);
    expect(events.rows).toEqual([{ source: 'webhook' }]);
  });
});

describe('the transition hook', () => {
  it('runs once per transition inside its transaction, whichever of many racing callers wins', async () => {
    const prisma = prismaClient();
    await seedModels(db.pool, [{ id: 'hook-1', userId: 'hook-user', status: 'TRAINING', trainingJobId: '700001' }]);
    await db.pool.query('CREATE TABLE refunds (event_id uuid PRIMARY KEY, model_id text NOT NULL)');
    const services = [
      createStatusService({
        prisma,
        onTransition: async (event, tx) => {
          if (event.status === 'ERROR') await tx.execute('INSERT INTO refunds (event_id, model_id) VALUES ($1, $2)', [event.eventId, event.modelId]);
        },
      }),
      createStatusService({
        pool: db.pool,
        onTransition: async (event, tx) => {
          if (event.status === 'ERROR') await tx.execute('INSERT INTO refunds (event_id, model_id) VALUES ($1, $2)', [event.eventId, event.modelId]);
        },
      }),
    ];
    const failed = tuneSchema.parse({ id: 700001, status: 'failed', error_message: 'no faces found' });
    await Promise.all(
      Array.from({ length: 10 }, (_, i) =>
        applyObservedTune({
          ...(i % 2 === 0 ? { prisma } : { pool: db.pool }),
          service: services[i % 2]!,
          tune: failed,
          source: 'webhook',
          now: new Date(),
          trainingTimeoutMs: TRAINING_TIMEOUT_MS,
        }),
      ),
    );
    const refunds = await db.pool.query<{ event_id: string }>(`SELECT event_id FROM refunds WHERE model_id = 'hook-1'`);
    const events = await db.pool.query<{ event_id: string }>(`SELECT event_id FROM astria_reconciler.events WHERE model_id = 'hook-1'`);
    expect(events.rows).toHaveLength(1);
    expect(refunds.rows).toEqual(events.rows);
  });

  it('rolls the transition back when the hook throws: status, event row and NOTIFY alike', async () => {
    const prisma = prismaClient();
    await seedModels(db.pool, [{ id: 'hook-2', status: 'TRAINING', trainingJobId: '700002' }]);
    const service = createStatusService({
      prisma,
      onTransition: async () => {
        throw new Error('credits service down');
      },
    });
    await expect(
      applyObservedTune({
        prisma,
        service,
        tune: tuneSchema.parse({ id: 700002, status: 'failed' }),
        source: 'webhook',
        now: new Date(),
        trainingTimeoutMs: TRAINING_TIMEOUT_MS,
      }),
    ).rejects.toThrow('credits service down');
    const row = await prisma.aIModel.findUniqueOrThrow({ where: { id: 'hook-2' } });
    expect(row.status).toBe('TRAINING');
    const events = await db.pool.query(`SELECT 1 FROM astria_reconciler.events WHERE model_id = 'hook-2'`);
    expect(events.rows).toHaveLength(0);
  });
});

describe('ensureOwnSchema through Prisma', () => {
  it('creates our schema on a database where the sidecar never started', async () => {
    const fresh = await createTestDatabase();
    const prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: fresh.url }) });
    try {
      await ensureOwnSchema({ prisma }, 'astria_app_first');
      const tables = await fresh.pool.query(`SELECT to_regclass('astria_app_first.events') AS events, to_regclass('astria_app_first.deliveries') AS deliveries`);
      expect(tables.rows[0]).toEqual({ events: 'astria_app_first.events', deliveries: 'astria_app_first.deliveries' });
    } finally {
      await prisma.$disconnect();
      await fresh.drop();
    }
  });
});

/**
 * Prisma 5/6's query engine types every string parameter as `text` (prisma/prisma#14978): a client
 * that does the same, on pg, so every parameter the library sends must carry its own cast.
 */
function textParameterClient(pool: pg.Pool): PrismaLike {
  const typedAsText = (sql: string) => sql.replace(/\$(\d+)/g, '($$$1::text)');
  const asText = (values: unknown[]) => values.map((value) => (value === null || Array.isArray(value) ? value : String(value)));
  const raw = (client: pg.Pool | pg.PoolClient) => ({
    $queryRawUnsafe: async <T,>(sql: string, ...values: unknown[]) => (await client.query(typedAsText(sql), asText(values))).rows as T,
    $executeRawUnsafe: async (sql: string, ...values: unknown[]) => (await client.query(typedAsText(sql), asText(values))).rowCount ?? 0,
  });
  return {
    ...raw(pool),
    async $transaction(fn) {
      const client = await pool.connect();
      try {
        await client.query('BEGIN');
        const result = await fn(raw(client));
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK');
        throw error;
      } finally {
        client.release();
      }
    },
  };
}

describe('a Prisma client that types every parameter as text (Prisma 5/6)', () => {
  it('creates our schema, applies READY, ERROR and a heal, records the callback and queues the outbox', async () => {
    const fresh = await createTestDatabase();
    try {
      const prisma = textParameterClient(fresh.pool);
      await ensureOwnSchema({ prisma }, 'astria_reconciler');
      const hookClients: unknown[] = [];
      const service = createStatusService({
        prisma,
        transports: ['pg', 'http'],
        onTransition: async (_event, tx) => void hookClients.push(tx.driverClient),
      });
      await seedModels(fresh.pool, [
        { id: 'text-ready', status: 'TRAINING', trainingJobId: '720001' },
        { id: 'text-error', status: 'TRAINING', trainingJobId: '720002' },
      ]);
      const callback = (tuneId: number, fields: Record<string, unknown>) =>
        acceptAstriaCallback({ givenSecret: SECRET, body: callbackBody(tuneId, fields) }, { secret: SECRET, prisma, service });

      expect(await callback(720001, { trained_at: '2026-05-01T10:00:00.000Z' })).toMatchObject({ status: 200, body: { applied: 1 } });
      expect(await callback(720002, { status: 'failed', error_message: 'no faces found' })).toMatchObject({ status: 200, body: { applied: 1 } });
      // Our own ERROR heals when the tune later reports trained.
      expect(await callback(720002, { trained_at: '2026-05-01T11:00:00.000Z' })).toMatchObject({ status: 200, body: { applied: 1 } });

      const rows = await fresh.pool.query(`SELECT id, status::text, "modelUrl", "errorMessage" FROM ai_models ORDER BY id`);
      expect(rows.rows).toEqual([
        { id: 'text-error', status: 'READY', modelUrl: '720002', errorMessage: null },
        { id: 'text-ready', status: 'READY', modelUrl: '720001', errorMessage: null },
      ]);
      const events = await fresh.pool.query(
        `SELECT model_id, to_status, extract(epoch FROM trained_at)::bigint AS trained, (SELECT count(*)::int FROM astria_reconciler.deliveries d WHERE d.event_seq = e.seq) AS deliveries
           FROM astria_reconciler.events e ORDER BY seq`,
      );
      expect(events.rows).toEqual([
        { model_id: 'text-ready', to_status: 'READY', trained: String(Date.parse('2026-05-01T10:00:00Z') / 1000), deliveries: 1 },
        { model_id: 'text-error', to_status: 'ERROR', trained: null, deliveries: 1 },
        { model_id: 'text-error', to_status: 'READY', trained: String(Date.parse('2026-05-01T11:00:00Z') / 1000), deliveries: 1 },
      ]);
      const callbacks = await fresh.pool.query(`SELECT tune_id FROM astria_reconciler.callbacks ORDER BY id`);
      expect(callbacks.rows.map((row) => row.tune_id)).toEqual(['720001', '720002', '720002']);
      // The hook is handed the driver's own transaction client (here the text-typed one).
      expect(hookClients).toHaveLength(3);
      expect(hookClients.every((client) => typeof client === 'object' && client !== null && '$queryRawUnsafe' in client)).toBe(true);
    } finally {
      await fresh.drop();
    }
  });
});
