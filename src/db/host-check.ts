import type pg from 'pg';
import { asExecutor } from './drivers.js';
import type { Database, SqlExecutor } from './executor.js';
import { DEFAULT_HOST_SCHEMA, quoteLiteral, type HostSchema, type HostTable } from './host-names.js';

/**
 * The database answers but the app's tables are not as the names say: no `ai_models` (or the mapped
 * table) where the search path looks (the wrong database or `?schema=`), or a mapped column or status
 * value the table does not have.
 */
export class HostTableMissingError extends Error {
  override name = 'HostTableMissingError';
}

interface TableShape {
  database: string;
  search_path: string;
  found: boolean;
  /** Column name → enum labels (null: not an enum). */
  columns: Record<string, string[] | null> | null;
}

/** The table's columns as the catalog has them; `found` false when the name resolves to no table. */
async function readTableShape(db: SqlExecutor, table: HostTable<string, string>): Promise<TableShape> {
  const rows = await db.query<TableShape>(
    `SELECT current_database() AS database, current_setting('search_path') AS search_path,
            to_regclass(${quoteLiteral(table.sql)}) IS NOT NULL AS found,
            (SELECT jsonb_object_agg(a.attname, CASE WHEN t.typtype = 'e' THEN (SELECT jsonb_agg(e.enumlabel ORDER BY e.enumsortorder) FROM pg_enum e WHERE e.enumtypid = t.oid) END)
               FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
              WHERE a.attrelid = to_regclass(${quoteLiteral(table.sql)}) AND a.attnum > 0 AND NOT a.attisdropped) AS columns`,
  );
  return rows[0]!;
}

/**
 * Throws HostTableMissingError when the app's models table is not visible on the search path (naming
 * the database and search path it looked in and the two settings that decide them), when a column the
 * mapping names is missing from either table (naming `table.column`), or when a status value is no
 * label of the status column's enum. The generations table is checked only when the mapping names
 * one (then it must exist). Any other error (unreachable, refused) propagates as is.
 */
export async function assertHostTable(database: pg.Pool | SqlExecutor | Database, host: HostSchema = DEFAULT_HOST_SCHEMA): Promise<void> {
  const db = asExecutor(database);
  const models = await readTableShape(db, host.models);
  if (!models.found) {
    throw new HostTableMissingError(
      `table ${host.models.label} not found in database "${models.database}" (search_path ${models.search_path}): ` +
        `check that DATABASE_URL names the app's database and, when Prisma keeps its tables in another schema than public, ` +
        `that it ends in ?schema=<that schema>${host === DEFAULT_HOST_SCHEMA ? '' : ', and RECONCILER_HOST_MAPPING'}`,
    );
  }
  const problems = tableProblems(host.models, models);
  // Only a generations table the mapping names is checked: the default one may be absent (prompts are
  // then off) or hold other columns than ours, as it could before mappings existed.
  if (host.generations.named) {
    const generations = await readTableShape(db, host.generations);
    if (generations.found) problems.push(...tableProblems(host.generations, generations));
    else problems.push(`table ${host.generations.label} not found (search_path ${generations.search_path})`);
  }
  const against = host === DEFAULT_HOST_SCHEMA ? 'the columns read (RECONCILER_HOST_MAPPING names others)' : 'RECONCILER_HOST_MAPPING';
  if (problems.length > 0) throw new HostTableMissingError(`the app's tables do not match ${against}: ${problems.join('; ')}`);
}

function tableProblems(table: HostTable<string, string>, shape: TableShape): string[] {
  const columns = shape.columns ?? {};
  const problems = Object.values(table.columns)
    .filter((name): name is string => name !== null && !(name in columns))
    .map((name) => `column ${table.label}.${name} not found`);
  const labels = columns[table.columns.status!];
  if (labels) {
    for (const [status, value] of table.statuses) {
      if (value !== null && !labels.includes(value)) problems.push(`status ${status} is "${value}", which is no value of ${table.label}.${table.columns.status} (${labels.join(', ')})`);
    }
  }
  return problems;
}
