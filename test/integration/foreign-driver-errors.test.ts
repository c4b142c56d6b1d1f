/**
 * A callback meeting a row the app holds locked, through the library on the app's own database client:
 * a `pg` that is another copy than the library's (its `DatabaseError` no instance of ours), and Prisma
 * (whose errors wrap the driver's). The lock timeout is that model's failure either way: 503 when it
 * was the only model, 200 with `failed` beside the others, the row unchanged; never an exception.
 */
import { createRequire } from 'node:module';
import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '../../prisma/generated/client.js';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedModels } from '../../dev/host-schema.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { isModelWriteFailure } from '../../src/db/write-failure.js';
import { acceptAstriaCallback, type CallbackDeps } from '../../src/http/callback.js';
import { documentedTune } from '../support/astria-tune.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';

const SECRET = 'foreign-driver-secret';

/** A second copy of `pg` (and of `pg-protocol`, where `DatabaseError` lives), as an app with its own node_modules has. */
function anotherCopyOfPg(): typeof pg {
  const require = createRequire(import.meta.url);
  const isPg = (path: string) => /[\\/]node_modules[\\/]pg(-protocol|-pool)?[\\/]/.test(path);
  const cached = Object.keys(require.cache).filter(isPg);
  const saved = new Map(cached.map((path) => [path, require.cache[path]]));
  for (const path of cached) delete require.cache[path];
  try {
    return require('pg') as typeof pg;
  } finally {
    for (const path of Object.keys(require.cache).filter(isPg)) delete require.cache[path];
    for (const [path, module] of saved) require.cache[path] = module;
  }
}

let db: TestDatabase;
let otherPool: pg.Pool;
let prisma: PrismaClient;

beforeAll(async () => {
  db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
  const otherPg = anotherCopyOfPg();
  otherPool = new otherPg.Pool({ connectionString: db.url, max: 5 });
  prisma = new PrismaClient({ adapter: new PrismaPg({ connectionString: db.url, max: 5 }) });
}, 60_000);

afterAll(async () => {
  await otherPool?.end();
  await prisma?.$disconnect();
  await db?.drop();
});

function callback(tuneId: number, database: Pick<CallbackDeps, 'pool' | 'prisma'>) {
  return acceptAstriaCallback(
    { givenSecret: SECRET, body: new Blob([JSON.stringify(documentedTune({ id: tuneId }))]).stream() },
    { secret: SECRET, ...database },
  );
}

/** Runs `work` while another session (the app) holds `modelId`'s row locked in an open transaction. */
async function whileLocked<T>(modelId: string, work: () => Promise<T>): Promise<T> {
  const app = await db.pool.connect();
  try {
    await app.query('BEGIN');
    await app.query(`UPDATE ai_models SET name = 'edited by the app' WHERE id = $1`, [modelId]);
    return await work();
  } finally {
    await app.query('ROLLBACK');
    app.release();
  }
}

describe('a lock timeout on a callback, through the app’s own client', () => {
  it('the other copy of pg is another class: the test would show class identity failing', async () => {
    const error = await otherPool.query('SELECT 1/0').catch((caught: unknown) => caught);
    expect(error).toMatchObject({ code: '22012' });
    expect(error instanceof pg.DatabaseError).toBe(false);
  });

  const clients = {
    'another copy of pg': () => ({ pool: otherPool }),
    'Prisma (adapter-pg)': () => ({ prisma }),
  };

  it.each(Object.keys(clients) as (keyof typeof clients)[])('%s: the only model locked → 503, the row unchanged', async (name) => {
    const tuneId = name === 'another copy of pg' ? 9301 : 9302;
    const modelId = `locked-${tuneId}`;
    await seedModels(db.pool, [{ id: modelId, status: 'TRAINING', trainingJobId: String(tuneId), aiProvider: 'astria' }]);
    const response = await whileLocked(modelId, () => callback(tuneId, clients[name]()));
    expect(response.status).toBe(503);
    expect(response.body).toMatchObject({ matched: 1, failed: 1 });
    expect((await readModel(db.pool, modelId)).status).toBe('TRAINING');
    // Once the app lets go, the same callback applies.
    expect((await callback(tuneId, clients[name]())).status).toBe(200);
    expect((await readModel(db.pool, modelId)).status).toBe('READY');
  }, 30_000);

  it.each(Object.keys(clients) as (keyof typeof clients)[])('%s: one of two models locked → 200, the other applied', async (name) => {
    const tuneId = name === 'another copy of pg' ? 9303 : 9304;
    const [locked, free] = [`locked-${tuneId}`, `free-${tuneId}`];
    await seedModels(db.pool, [locked, free].map((id) => ({ id, status: 'TRAINING' as const, trainingJobId: String(tuneId), aiProvider: 'astria' })));
    const response = await whileLocked(locked, () => callback(tuneId, clients[name]()));
    expect(response).toEqual({ status: 200, body: { status: 'ok', matched: 2, applied: 1, failed: 1 } });
    expect((await readModel(db.pool, locked)).status).toBe('TRAINING');
    expect((await readModel(db.pool, free)).status).toBe('READY');
  }, 30_000);

  it('a database refused or gone stays everyone’s failure, not one model’s, whichever client met it', async () => {
    const otherPg = anotherCopyOfPg();
    const elsewhere = (database: string, port?: number) => {
      const url = new URL(db.url);
      url.pathname = `/${database}`;
      if (port !== undefined) url.port = String(port);
      return url.toString();
    };
    // Port 1: nothing listens there (connection refused); a database that does not exist (3D000).
    const targets = [elsewhere('test', 1), elsewhere('no_such_database_here')];
    for (const connectionString of targets) {
      const client = new otherPg.Client({ connectionString });
      const pgError = await client.connect().then(
        () => null,
        (caught: unknown) => caught,
      );
      await client.end().catch(() => undefined);
      const unreachable = new PrismaClient({ adapter: new PrismaPg({ connectionString }) });
      const prismaError = await unreachable.$queryRawUnsafe('SELECT 1').then(
        () => null,
        (caught: unknown) => caught,
      );
      await unreachable.$disconnect();
      expect(pgError).not.toBeNull();
      expect(prismaError).not.toBeNull();
      expect([isModelWriteFailure(pgError), isModelWriteFailure(prismaError)]).toEqual([false, false]);
    }
  });
});
