import type pg from 'pg';

/**
 * The one database seam: every module of `db/` speaks SQL through this, whichever client the caller
 * has. Parameters are `$1, $2, ...`; rows come back with `timestamptz` as `Date`, `bigint` as a decimal
 * string (as `pg` gives them), whatever the process `TZ` or the session time zone. The adapters that
 * implement it (`pg-driver.ts`, `prisma-driver.ts`) import this file; it imports none of them.
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

/** What the library uses of a Prisma client: any version with interactive transactions fits. */
export interface PrismaRawClient {
  $queryRawUnsafe<T = unknown>(query: string, ...values: unknown[]): Promise<T>;
  $executeRawUnsafe(query: string, ...values: unknown[]): Promise<number>;
}

export interface PrismaLike extends PrismaRawClient {
  // `any`: Prisma's own signature (a tx client type per generated schema, options) must be assignable.
  $transaction<R>(fn: (tx: any) => Promise<R>, options?: any): Promise<R>;
}

/** The app's database as the library's entry points accept it: a `pg.Pool`, or the app's PrismaClient (one of them). */
export interface Database {
  pool?: pg.Pool;
  prisma?: PrismaLike;
}
