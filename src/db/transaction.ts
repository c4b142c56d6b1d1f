import type pg from 'pg';
import type { SqlExecutor } from './executor.js';
import { DB_LOCK_TIMEOUT_MS, DB_STATEMENT_TIMEOUT_MS } from './pool.js';

/** Runs `work` in one transaction on a pooled connection: committed if it returns, rolled back if it throws. */
export async function withTransaction<T>(pool: pg.Pool, work: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const result = await work(client);
    await client.query('COMMIT');
    return result;
  } catch (error) {
    // A connection that cannot even roll back is dead: drop it from the pool instead of reusing it.
    await client.query('ROLLBACK').catch(() => (broken = true));
    throw error;
  } finally {
    client.release(broken);
  }
}

/**
 * A row the app keeps locked (an idle interactive transaction) costs that model one lock timeout, not
 * the pass; SET LOCAL so the bound holds whoever's pool this runs on, and ends with the transaction.
 */
export async function boundLocalWaits(tx: SqlExecutor): Promise<void> {
  // One statement each: a driver that prepares statements (Prisma's) refuses two in one.
  await tx.execute(`SET LOCAL lock_timeout = '${DB_LOCK_TIMEOUT_MS}ms'`);
  await tx.execute(`SET LOCAL statement_timeout = '${DB_STATEMENT_TIMEOUT_MS}ms'`);
}
