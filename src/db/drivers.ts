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

/** A bare pool (the sidecar's own callers), an executor the caller already has, or `{ pool }` / `{ prisma }` as the library takes them. */
export function asExecutor(database: pg.Pool | SqlExecutor | Database): SqlExecutor {
  if ('execute' in database) return database;
  if ('pool' in database || 'prisma' in database) return executorFor(database as Database);
  return pgExecutor(database as pg.Pool);
}
