import pg from 'pg';

/**
 * A plain `pg` pool next to Prisma: the status service runs its compare-and-set, event row and NOTIFY
 * in one transaction on one connection, which Prisma's client does not hand out. Kept on globalThis so
 * Next.js hot reloads (and warm serverless invocations) reuse it instead of opening a new pool each time.
 */
const globalForDb = globalThis as unknown as { astriaPool?: pg.Pool };

export const pool: pg.Pool = (globalForDb.astriaPool ??= new pg.Pool({
  connectionString: process.env.DATABASE_URL,
  // Serverless: many instances, each with a small pool.
  max: 3,
  idleTimeoutMillis: 10_000,
}));
pool.on('error', () => undefined);
