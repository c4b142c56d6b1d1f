import type pg from 'pg';
import { asExecutor } from './drivers.js';
import type { SqlExecutor } from './executor.js';

/** The database answers but holds no `ai_models` where the search path looks: the wrong database or `?schema=`. */
export class HostTableMissingError extends Error {
  override name = 'HostTableMissingError';
}

/**
 * Throws HostTableMissingError when the app's `ai_models` is not visible on the search path, naming
 * the database and search path it looked in and the two settings that decide them. Any other error
 * (unreachable, refused) propagates as is.
 */
export async function assertHostTable(database: pg.Pool | SqlExecutor): Promise<void> {
  const db = asExecutor(database);
  const rows = await db.query<{ database: string; search_path: string; found: boolean }>(
    `SELECT current_database() AS database, current_setting('search_path') AS search_path,
            to_regclass('ai_models') IS NOT NULL AS found`,
  );
  const row = rows[0]!;
  if (row.found) return;
  throw new HostTableMissingError(
    `table ai_models not found in database "${row.database}" (search_path ${row.search_path}): ` +
      `check that DATABASE_URL names the app's database and, when Prisma keeps its tables in another schema than public, ` +
      `that it ends in ?schema=<that schema>`,
  );
}
