import type pg from 'pg';
import type { Executor, SqlExecutor } from './executor.js';
import { withTransaction } from './transaction.js';

/** One client's (or the pool's) statements, outside any transaction of ours: the caller may hold one open. */
export function clientExecutor(client: pg.Pool | pg.PoolClient): SqlExecutor {
  return {
    driverClient: client,
    async query<Row>(sql: string, params: readonly unknown[] = []) {
      return (await client.query(sql, params as unknown[])).rows as Row[];
    },
    async execute(sql, params = []) {
      await client.query(sql, params as unknown[]);
    },
  };
}

/** The `pg.Pool` driver: `pg` already parses `timestamptz` to an exact `Date` and keeps `bigint` a string. */
export function pgExecutor(pool: pg.Pool): Executor {
  return {
    ...clientExecutor(pool),
    transaction: (work) => withTransaction(pool, (client) => work(clientExecutor(client))),
  };
}
