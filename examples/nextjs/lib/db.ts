import { PrismaPg } from '@prisma/adapter-pg';
import { PrismaClient } from '@/lib/generated/prisma/client';

/**
 * The app's one PrismaClient, which the status service uses too: its interactive `$transaction` runs
 * the compare-and-set, event row, NOTIFY and the refund on one connection. Kept on globalThis so hot
 * reloads (and warm serverless invocations) reuse it.
 */
const globalForDb = globalThis as unknown as { prisma?: PrismaClient };

/** Prisma's `?schema=`: the generated queries use it, and the search path makes raw SQL find it too. */
export function databaseSchema(databaseUrl: string | undefined): string | undefined {
  if (!databaseUrl) return undefined;
  const schema = new URL(databaseUrl).searchParams.get('schema');
  return schema !== null && /^[A-Za-z_][A-Za-z0-9_]*$/.test(schema) ? schema : undefined;
}

function createPrisma(): PrismaClient {
  // Read at the first query, not here: `next build` imports this module without a database.
  const connectionString = process.env.DATABASE_URL;
  const schema = databaseSchema(connectionString);
  const adapter = new PrismaPg(
    // Serverless: many instances, each with a small pool.
    { connectionString, max: 5, ...(schema ? { options: `-c search_path=${schema}` } : {}) },
    schema ? { schema } : undefined,
  );
  return new PrismaClient({ adapter });
}

export const prisma: PrismaClient = (globalForDb.prisma ??= createPrisma());
