import type { Executor, PrismaLike, PrismaRawClient, SqlExecutor } from './executor.js';

/**
 * Every statement, read or not, runs in a transaction whose session time zone is UTC: driver adapters
 * hand `timestamptz` text to Prisma without its offset, so in any other session zone a timestamp read
 * back would be shifted by that offset.
 */
const UTC_SESSION = `SET LOCAL TIME ZONE 'UTC'`;

/** Prisma's default wait for a pooled connection (2 s) fails a burst of callbacks that a short queue absorbs. */
const TRANSACTION_OPTIONS = { maxWait: 10_000 };

function txExecutor(tx: PrismaRawClient): SqlExecutor {
  return {
    driverClient: tx,
    async query<Row>(sql: string, params: readonly unknown[] = []) {
      const rows = await tx.$queryRawUnsafe<Record<string, unknown>[]>(sql, ...params);
      return rows.map(normalizeRow) as Row[];
    },
    // `$queryRaw` of a `void` column (`SELECT pg_notify(...)`) fails and aborts the transaction.
    async execute(sql, params = []) {
      await tx.$executeRawUnsafe(sql, ...params);
    },
  };
}

/** Prisma reads `bigint` as a JS bigint; the library's rows carry it as `pg` does, a decimal string. */
function normalizeRow(row: Record<string, unknown>): Record<string, unknown> {
  const normalized: Record<string, unknown> = {};
  for (const [column, value] of Object.entries(row)) normalized[column] = typeof value === 'bigint' ? value.toString() : value;
  return normalized;
}

/** The Prisma driver: the app's own PrismaClient (Prisma 7 with `@prisma/adapter-pg`, or older). */
export function prismaExecutor(prisma: PrismaLike): Executor {
  const transaction = <T>(work: (tx: SqlExecutor) => Promise<T>) =>
    prisma.$transaction(async (tx: PrismaRawClient) => {
      await tx.$executeRawUnsafe(UTC_SESSION);
      return work(txExecutor(tx));
    }, TRANSACTION_OPTIONS);
  return {
    driverClient: prisma,
    transaction,
    query: (sql, params) => transaction((tx) => tx.query(sql, params)),
    execute: (sql, params) => transaction((tx) => tx.execute(sql, params)),
  };
}
