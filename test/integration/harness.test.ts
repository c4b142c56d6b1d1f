import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedModels, type SeedModel } from '../../dev/host-schema.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';

// A US DST gap in local time and non-zero milliseconds: any TZ leak would shift or truncate it.
const EXACT_TIME = new Date('2024-03-10T02:30:45.123Z');

describe('test database harness', () => {
  let db: TestDatabase;

  beforeAll(async () => {
    db = await createTestDatabase();
  });

  afterAll(async () => {
    await db?.drop();
  });

  it('creates the host table with every column the real one has', async () => {
    const { rows } = await db.pool.query<{ column_name: string; udt_name: string; is_nullable: string }>(
      `SELECT column_name, udt_name, is_nullable FROM information_schema.columns
       WHERE table_schema = 'public' AND table_name = 'ai_models'`,
    );
    const columns = Object.fromEntries(rows.map((r) => [r.column_name, `${r.udt_name} ${r.is_nullable}`]));
    expect(columns).toEqual({
      id: 'text NO',
      userId: 'text NO',
      name: 'text NO',
      class: 'ModelClass NO',
      classWord: 'text NO',
      status: 'ModelStatus NO',
      progress: 'int4 NO',
      facePhotos: '_jsonb NO',
      triggerWord: 'text YES',
      aiProvider: 'text YES',
      trainingJobId: 'text YES',
      modelUrl: 'text YES',
      trainedAt: 'timestamp YES',
      errorMessage: 'text YES',
      estimatedTime: 'int4 YES',
      createdAt: 'timestamp NO',
      updatedAt: 'timestamp NO',
    });
    const indexes = await db.pool.query<{ indexname: string }>(
      `SELECT indexname FROM pg_indexes WHERE tablename = 'ai_models' ORDER BY indexname`,
    );
    expect(indexes.rows.map((r) => r.indexname)).toEqual([
      'ai_models_pkey',
      'ai_models_status_idx',
      'ai_models_userId_idx',
    ]);
  });

  it('seeds 5,000 models with their users and the values asked for', async () => {
    const models: SeedModel[] = Array.from({ length: 5000 }, (_, i) => ({
      id: `m-${i}`,
      userId: `user-${i % 7}`,
      status: i % 2 ? 'TRAINING' : 'PROCESSING',
      trainingJobId: String(100_000 + i),
    }));
    models[1] = {
      id: 'm-1',
      userId: 'user-special',
      status: 'ERROR',
      trainingJobId: '4242',
      aiProvider: null,
      progress: 37,
      createdAt: EXACT_TIME,
      updatedAt: new Date(EXACT_TIME.getTime() + 1),
      estimatedTime: 12,
      errorMessage: 'boom',
      name: 'Portrait',
    };
    models[2] = { id: 'm-2', status: 'TRAINING', trainingJobId: null };

    const before = Date.now();
    await seedModels(db.pool, models);

    const counts = await db.pool.query<{ models: number; users: number }>(
      `SELECT (SELECT count(*) FROM ai_models)::int AS models, (SELECT count(*) FROM users)::int AS users`,
    );
    expect(counts.rows[0]).toEqual({ models: 5000, users: 8 }); // user-0..6 (user-1 doubles as the default), user-special

    expect(await readModel(db.pool, 'm-1')).toEqual({
      id: 'm-1',
      userId: 'user-special',
      status: 'ERROR',
      progress: 37,
      aiProvider: null,
      trainingJobId: '4242',
      modelUrl: null,
      trainedAt: null,
      errorMessage: 'boom',
      estimatedTime: 12,
      createdAt: EXACT_TIME,
      updatedAt: new Date(EXACT_TIME.getTime() + 1),
    });

    const defaulted = await readModel(db.pool, 'm-2');
    expect(defaulted).toMatchObject({ userId: 'user-1', aiProvider: 'astria', progress: 0, trainingJobId: null });
    expect(Math.abs(defaulted.createdAt.getTime() - (before - 3_600_000))).toBeLessThan(60_000);
    expect(defaulted.updatedAt).toEqual(defaulted.createdAt);

    expect(await readModel(db.pool, 'm-4999')).toMatchObject({ userId: 'user-1', status: 'TRAINING', trainingJobId: '104999' });
  });

  it('stores UTC wall-clock time whatever the session time zone', async () => {
    const client = new pg.Client({ connectionString: db.url, options: '-c TimeZone=Pacific/Chatham' });
    await client.connect();
    try {
      await seedModels(client, [{ id: 'tz', status: 'TRAINING', trainingJobId: '1', createdAt: EXACT_TIME }]);
      const stored = await client.query<{ text: string }>(
        `SELECT to_char("createdAt", 'YYYY-MM-DD"T"HH24:MI:SS.MS') AS text FROM ai_models WHERE id = 'tz'`,
      );
      expect(stored.rows[0]?.text).toBe('2024-03-10T02:30:45.123');
      expect((await readModel(client, 'tz')).createdAt).toEqual(EXACT_TIME);
    } finally {
      await client.end();
    }
  });

  it('gives each caller an isolated database', async () => {
    const other = await createTestDatabase();
    try {
      expect(other.url).not.toBe(db.url);
      await seedModels(other.pool, [{ id: 'only-in-other', status: 'TRAINING', trainingJobId: '7' }]);
      const here = await db.pool.query(`SELECT 1 FROM ai_models WHERE id = 'only-in-other'`);
      const there = await other.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ai_models`);
      expect(here.rowCount).toBe(0);
      expect(there.rows[0]?.n).toBe(1);
    } finally {
      await other.drop();
    }
  });
});
