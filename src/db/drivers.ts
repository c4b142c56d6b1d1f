import type pg from 'pg';
import type { Database, Executor, SqlExecutor } from './executor.js';
import { pgExecutor } from './pg-driver.js';
import { prismaExecutor } from './prisma-driver.js';

/** The executor of the client the caller passed: its `pg.Pool` or its PrismaClient. */
export function executorFor(database: Database): Executor {
  if (database.pool && database.prisma) throw new TypeError('astria-reconciler: pass { pool } or { prisma }, not both');
  if (database.pool) return pgExecutor(database.pool);
  if (database.prisma) return prismaExecutor(database.prisma);
  throw new TypeError('astria-reconciler: pass { pool } (a pg.Pool) or { prisma } (a PrismaClient)');
}

/** A bare pool (the sidecar's own callers), or an executor the caller already has. */
export function asExecutor(database: pg.Pool | SqlExecutor): SqlExecutor {
  return 'execute' in database ? database : pgExecutor(database);
}
