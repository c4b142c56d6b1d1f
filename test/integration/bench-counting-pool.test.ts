import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { countStatements } from '../../bench/counting-pool.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());

describe("the bench's statement counter", () => {
  it('counts every statement on the pool and on the connections it hands out, each connection wrapped once', async () => {
    const counting = countStatements(db.pool);
    await counting.pool.query('SELECT 1');
    for (let transaction = 0; transaction < 2; transaction++) {
      const client = await counting.pool.connect();
      try {
        await client.query('BEGIN');
        await client.query('SELECT 2');
        await client.query('COMMIT');
      } finally {
        client.release();
      }
    }
    // The first statement, then BEGIN, SELECT and COMMIT twice; a connection handed out again is not counted twice.
    expect(counting.statements()).toBe(7);
  });
});
