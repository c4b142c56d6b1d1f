import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { seedModels } from '../../dev/host-schema.js';
import { GENERATION_IN_FLIGHT_STATUSES } from '../../src/status/generation-rules.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { GENERATIONS_SCHEMA_SQL, readGeneration, seedGenerations } from '../support/generations-schema.js';

const CREATED = new Date('2026-11-25T09:00:00.123Z');

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(GENERATIONS_SCHEMA_SQL);
  await seedModels(db.pool, [{ id: 'model-1', status: 'READY', trainingJobId: '788416' }]);
});
afterAll(() => db.drop());

describe('the generations host-table fixture', () => {
  it('stores a generation as the app does: images as jsonb strings, UTC timestamps, the app-only defaults', async () => {
    const images = ['https://sdbooth2-production.s3.amazonaws.com/a.jpg', 'https://cdn.test/é "quoted".jpg'];
    await seedGenerations(db.pool, [
      { id: 'gen-done', modelId: 'model-1', status: 'COMPLETED', jobId: '29012345', imageUrls: images, createdAt: CREATED },
    ]);
    expect(await readGeneration(db.pool, 'gen-done')).toEqual({
      id: 'gen-done',
      userId: 'user-1',
      modelId: 'model-1',
      aiProvider: 'astria',
      jobId: '29012345',
      status: 'COMPLETED',
      imageUrls: images,
      errorMessage: null,
      completedAt: null,
      createdAt: CREATED,
      updatedAt: CREATED,
      creditsRefunded: false,
    });
    const { rows } = await db.pool.query<{ types: string[] }>(
      `SELECT array_agg(DISTINCT jsonb_typeof(url)) AS types FROM generations, unnest("imageUrls") AS url WHERE id = 'gen-done'`,
    );
    expect(rows[0]!.types).toEqual(['string']);
  });

  it('defaults imageUrls to an empty array and refuses a status outside the enum', async () => {
    await seedGenerations(db.pool, [{ id: 'gen-new', modelId: 'model-1', status: 'PENDING', jobId: null }]);
    expect((await readGeneration(db.pool, 'gen-new')).imageUrls).toEqual([]);
    await expect(
      db.pool.query(`UPDATE generations SET status = 'DONE' WHERE id = 'gen-new'`),
    ).rejects.toThrow(/invalid input value for enum "GenerationStatus"/);
  });

  it("the in-flight condition picks Astria's pending and processing generations that have a prompt id, no other", async () => {
    await seedGenerations(db.pool, [
      { id: 'if-pending', modelId: 'model-1', status: 'PENDING', jobId: '101' },
      { id: 'if-processing', modelId: null, status: 'PROCESSING', jobId: '102' },
      { id: 'if-no-job', modelId: 'model-1', status: 'PROCESSING', jobId: null },
      { id: 'if-replicate', modelId: 'model-1', status: 'PROCESSING', jobId: '103', aiProvider: 'replicate' },
      { id: 'if-no-provider', modelId: 'model-1', status: 'PROCESSING', jobId: '104', aiProvider: null },
      { id: 'if-failed', modelId: 'model-1', status: 'FAILED', jobId: '105', errorMessage: 'Astria prompt 105 not found' },
    ]);
    const { rows } = await db.pool.query<{ id: string }>(
      `SELECT id FROM generations
       WHERE "aiProvider" = 'astria' AND "jobId" IS NOT NULL AND status = ANY($1::"GenerationStatus"[]) AND id LIKE 'if-%'
       ORDER BY id`,
      [GENERATION_IN_FLIGHT_STATUSES],
    );
    expect(rows.map((row) => row.id)).toEqual(['if-pending', 'if-processing']);
  });

  it("keeps a generation when its model is deleted (modelId set to NULL), as the app's relation does", async () => {
    await seedModels(db.pool, [{ id: 'model-gone', status: 'READY', trainingJobId: '9' }]);
    await seedGenerations(db.pool, [{ id: 'gen-orphan', modelId: 'model-gone', status: 'PROCESSING', jobId: '201' }]);
    await db.pool.query(`DELETE FROM ai_models WHERE id = 'model-gone'`);
    expect(await readGeneration(db.pool, 'gen-orphan')).toMatchObject({ modelId: null, status: 'PROCESSING' });
  });
});
