import type pg from 'pg';
import { pgExecutor } from './pg-driver.js';
import { prismaExecutor, type PrismaLike } from './prisma-driver.js';

/**
 * The one database seam: the status service and the callback path speak SQL through this, whichever
 * client the caller has. Parameters are `$1, $2, ...`; rows come back with `timestamptz` as `Date`,
 * `bigint` as a decimal string (as `pg` gives them), whatever the process `TZ` or the session time zone.
 */
export interface SqlExecutor {
  query<Row>(sql: string, params?: readonly unknown[]): Promise<Row[]>;
  /** A statement whose result is not read (`pg_notify`, `INSERT` without `RETURNING`). */
  execute(sql: string, params?: readonly unknown[]): Promise<void>;
  /**
   * The driver's own client these statements run on: inside a transaction, Prisma's interactive
   * transaction client (`tx`, for typed calls such as `tx.user.update`) or pg's `PoolClient`. Cast it
   * to your client's type.
   */
  readonly driverClient: unknown;
}

export interface Executor extends SqlExecutor {
  /** Runs `work` in one transaction on one connection: committed if it returns, rolled back if it throws. */
  transaction<T>(work: (tx: SqlExecutor) => Promise<T>): Promise<T>;
}

/** The app's database as the library's entry points accept it: a `pg.Pool`, or the app's PrismaClient (one of them). */
export interface Database {
  pool?: pg.Pool;
  prisma?: PrismaLike;
}

export function executorFor(database: Database): Executor {
  if (database.pool && database.prisma) throw new TypeError('astria-reconciler: pass { pool } or { prisma }, not both');
  if (database.pool) return pgExecutor(database.pool);
  if (database.prisma) return prismaExecutor(database.prisma);
  throw new TypeError('astria-reconciler: pass { pool } (a pg.Pool) or { prisma } (a PrismaClient)');
}
