import pg from 'pg';
import type { Logger } from '../log.js';

/**
 * A pool on the app's database. Idle connections that die (database restart, failover) are logged
 * and replaced on next use instead of crashing the process.
 */
export function createPool(databaseUrl: string, log: Logger, max = 10): pg.Pool {
  const pool = new pg.Pool({
    ...connectionOptions(databaseUrl),
    max,
    application_name: 'astria-reconciler',
    connectionTimeoutMillis: 10_000,
    idleTimeoutMillis: 30_000,
    keepAlive: true,
  });
  pool.on('error', (error) => log.warn({ err: error.message }, 'idle database connection lost'));
  // pg-pool listens for errors only on idle clients: one that dies while checked out would otherwise
  // throw an unhandled 'error' event and kill the process. Its query rejects and the pass reports it.
  pool.on('connect', (client) => client.on('error', (error) => log.warn({ err: error.message }, 'database connection lost')));
  return pool;
}

/**
 * Connection settings from a `DATABASE_URL` as Prisma writes it: its `?schema=` (which `pg` ignores)
 * becomes the search path, so the app's `ai_models` is found in whatever schema Prisma put it.
 */
function connectionOptions(databaseUrl: string): pg.ClientConfig {
  const schema = new URL(databaseUrl).searchParams.get('schema');
  const usable = schema !== null && /^[A-Za-z_][A-Za-z0-9_]*$/.test(schema);
  return { connectionString: databaseUrl, ...(usable ? { options: `-c search_path=${schema}` } : {}) };
}
