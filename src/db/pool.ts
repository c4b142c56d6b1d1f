import pg from 'pg';
import type { Logger } from '../log.js';

/**
 * Every wait on the database is bounded. A row the app holds locked (an idle interactive transaction)
 * costs one model a lock timeout; a statement that runs away, or a server that stops answering
 * behind a hung TCP path, costs one query, never a pass that does not end.
 */
export const DB_LOCK_TIMEOUT_MS = 5_000;
export const DB_STATEMENT_TIMEOUT_MS = 30_000;
/** Our side gives up a little after the server would have: a dead path answers nothing at all. */
const DB_QUERY_TIMEOUT_MS = DB_STATEMENT_TIMEOUT_MS + 5_000;

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
    query_timeout: DB_QUERY_TIMEOUT_MS,
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
 * becomes the search path, so the app's `ai_models` is found in whatever schema Prisma put it. The
 * session's lock and statement timeouts bound every query of ours.
 */
function connectionOptions(databaseUrl: string): pg.ClientConfig {
  const schema = new URL(databaseUrl).searchParams.get('schema');
  const settings = [`-c lock_timeout=${DB_LOCK_TIMEOUT_MS}`, `-c statement_timeout=${DB_STATEMENT_TIMEOUT_MS}`];
  // Quoted as Prisma quotes it: `?schema=MyApp` names "MyApp", not the lower-cased myapp.
  if (schema) settings.push(`-c search_path=${escapeStartupOption(`"${schema.replaceAll('"', '""')}"`)}`);
  return sessionOptions(databaseUrl, settings);
}

/**
 * `pg` lets a connection string's `?options=` replace the config's `options` whole (Neon URLs carry
 * `options=endpoint%3D...`), which would silently drop our session settings. This keeps the URL's own
 * options and appends ours after them, so ours win where both set the same thing.
 */
export function sessionOptions(databaseUrl: string, settings: string[]): { connectionString: string; options: string } {
  const url = new URL(databaseUrl);
  const own = url.searchParams.get('options');
  if (own === null) return { connectionString: databaseUrl, options: settings.join(' ') };
  url.searchParams.delete('options');
  return { connectionString: url.toString(), options: [own, ...settings].join(' ') };
}

/** The server splits `options` on whitespace; a backslash keeps the next character (a space, a backslash) literal. */
function escapeStartupOption(value: string): string {
  return value.replace(/[\\\s]/g, '\\$&');
}
