import type pg from 'pg';
import { executorFor } from './drivers.js';
import type { Database, SqlExecutor } from './executor.js';
import { assertHostTable } from './host-check.js';
import { DEFAULT_HOST_SCHEMA, type HostSchema } from './host-names.js';
import { quoteIdentifier } from './identifier.js';
import { MIGRATIONS } from './migrations/index.js';

const LATEST = MIGRATIONS.at(-1)!.id;

/** The highest migration recorded in the schema; 0 when there is no migrations table (a fresh database, or one from before migrations). */
async function appliedMigration(db: SqlExecutor, quoted: string): Promise<number> {
  const table = await db.query<{ found: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS found`, [`${quoted}.migrations`]);
  if (!table[0]?.found) return 0;
  const rows = await db.query<{ id: number }>(`SELECT coalesce(max(id), 0)::int AS id FROM ${quoted}.migrations`);
  return rows[0]!.id;
}

/** Our schema exists but an older release made it: a read-only command cannot use it as it is. */
export class OwnSchemaOutdatedError extends Error {
  override name = 'OwnSchemaOutdatedError';
}

/**
 * For the commands that only read or fix up our tables (`report`, `requeue-dead`), which never create
 * or upgrade them: false when there is nothing of ours yet (no daemon ever ran here), true when every
 * migration is applied; throws OwnSchemaOutdatedError when an older release made the schema.
 */
export async function ownSchemaReady(pool: pg.Pool, schema: string): Promise<boolean> {
  const db = executorFor({ pool });
  const quoted = quoteIdentifier(schema);
  const applied = await appliedMigration(db, quoted);
  if (applied >= LATEST) return true;
  const events = await db.query<{ found: boolean }>(`SELECT to_regclass($1) IS NOT NULL AS found`, [`${quoted}.events`]);
  if (applied === 0 && !events[0]?.found) return false;
  throw new OwnSchemaOutdatedError(
    `schema ${quoted} was made by an older release of astria-reconciler: start this release once (the daemon or --once upgrades it), then run this again`,
  );
}

/**
 * Tables of our own, in a schema of our own so the app's `prisma migrate` never sees them, built by
 * the numbered migrations of `migrations/`, each applied once and recorded in `<schema>.migrations`.
 * They run in one transaction under a transaction-scoped advisory lock, so any number of replicas can
 * start at once: the first applies what is missing, the others wait and find it done. The lock's key
 * is the one the releases before migrations took, so an older replica starting meanwhile waits too.
 *
 * Only beside the app's `ai_models` (or the tables `host` names, as it names them): a wrong `DATABASE_URL` fails with HostTableMissingError and gets
 * nothing of ours. When every migration is recorded nothing else runs: PostgreSQL checks privileges
 * before `IF NOT EXISTS`, so a role that may only use the schema (created once by an administrator)
 * could not even run a no-op DDL.
 */
export async function ensureOwnSchema(database: pg.Pool | Database, schema: string, host: HostSchema = DEFAULT_HOST_SCHEMA): Promise<void> {
  // A bare pool (the sidecar's callers), or `{ pool }` / `{ prisma }` as the other entry points take.
  const db = executorFor('pool' in database || 'prisma' in database ? (database as Database) : { pool: database as pg.Pool });
  await assertHostTable(db, host);
  const quoted = quoteIdentifier(schema);
  if ((await appliedMigration(db, quoted)) >= LATEST) return;
  await db.transaction(async (tx) => {
    await tx.execute(`SELECT pg_advisory_xact_lock(hashtext('astria_reconciler:schema:' || $1::text))`, [schema]);
    const exists = await tx.query<{ found: boolean }>(`SELECT to_regnamespace($1) IS NOT NULL AS found`, [quoted]);
    if (!exists[0]?.found) await tx.execute(`CREATE SCHEMA ${quoted}`);
    await tx.execute(
      `CREATE TABLE IF NOT EXISTS ${quoted}.migrations (
         id int PRIMARY KEY,
         name text NOT NULL,
         applied_at timestamptz NOT NULL DEFAULT now()
       )`,
    );
    // Read again under the lock: another replica may have applied them while this one waited.
    const applied = await appliedMigration(tx, quoted);
    for (const migration of MIGRATIONS) {
      if (migration.id <= applied) continue;
      for (const statement of migration.statements(quoted)) await tx.execute(statement);
      await tx.execute(`INSERT INTO ${quoted}.migrations (id, name) VALUES ($1::int, $2::text)`, [migration.id, migration.name]);
    }
  });
}
