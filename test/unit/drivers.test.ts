import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { executorFor } from '../../src/db/drivers.js';
import type { PrismaLike } from '../../src/db/executor.js';

// A client that is never reached: these cases are refused before any statement runs.
const prisma = {} as PrismaLike;

describe('executorFor', () => {
  it('refuses to guess when given both a pool and a Prisma client, or neither', async () => {
    const pool = new pg.Pool();
    try {
      expect(() => executorFor({ pool, prisma })).toThrow('pass { pool } or { prisma }, not both');
      expect(() => executorFor({})).toThrow('pass { pool } (a pg.Pool) or { prisma } (a PrismaClient)');
    } finally {
      await pool.end();
    }
  });
});
