/**
 * Database statements a strategy sends, counted at the pool: every `query` on the pool and on the
 * connections it hands out (a transaction's BEGIN, its statements, NOTIFY and COMMIT each count one).
 */
import type pg from 'pg';

export interface CountingPool {
  /** Use this instead of the pool it wraps. */
  pool: pg.Pool;
  statements(): number;
}

export function countStatements(pool: pg.Pool): CountingPool {
  let statements = 0;
  const counted = new WeakSet<pg.PoolClient>();
  const wrapped = {
    query: (...args: unknown[]) => {
      statements += 1;
      return (pool.query as (...a: unknown[]) => Promise<unknown>)(...args);
    },
    connect: async () => {
      const client = await pool.connect();
      // The pool hands the same connections out again: wrap each once.
      if (!counted.has(client)) {
        counted.add(client);
        const query = client.query.bind(client) as (...a: unknown[]) => unknown;
        client.query = ((...args: unknown[]) => {
          statements += 1;
          return query(...args);
        }) as typeof client.query;
      }
      return client;
    },
    end: () => pool.end(),
    on: (...args: Parameters<pg.Pool['on']>) => pool.on(...args),
  };
  return { pool: wrapped as unknown as pg.Pool, statements: () => statements };
}
