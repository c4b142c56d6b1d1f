import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { GENERATION_IN_FLIGHT_STATUSES, GENERATION_STATUSES, IN_FLIGHT_STATUSES, MODEL_STATUSES, type GenerationStatus, type ModelStatus } from '../model.js';
import { quoteIdentifier } from './identifier.js';

/**
 * The app's table names, column names and status values for both kinds (`RECONCILER_HOST_MAPPING`):
 * every SQL statement on the app's tables takes its names from here, quoted, so an app with other
 * names (Astria's headshots-starter: `models` with a text `status` of `processing`/`finished`) needs
 * no view. Built once at start and passed to every function of src/db/ that touches the app's tables.
 */

/** The `ai_models` columns the product reads or writes; `null` in a mapping = the app has no such column. */
const MODEL_COLUMNS = ['id', 'userId', 'status', 'trainingJobId', 'aiProvider', 'progress', 'estimatedTime', 'trainedAt', 'modelUrl', 'errorMessage', 'createdAt', 'updatedAt'] as const;
/** The ones the product cannot do without. */
const REQUIRED_MODEL_COLUMNS = ['id', 'userId', 'status', 'trainingJobId'] as const;
const GENERATION_COLUMNS = ['id', 'userId', 'status', 'jobId', 'modelId', 'aiProvider', 'imageUrls', 'errorMessage', 'completedAt', 'createdAt', 'updatedAt'] as const;
const REQUIRED_GENERATION_COLUMNS = ['id', 'userId', 'status', 'jobId', 'imageUrls'] as const;

export type ModelColumn = (typeof MODEL_COLUMNS)[number];
export type GenerationColumn = (typeof GENERATION_COLUMNS)[number];

/** The statuses the rules write (training started, done, failed): the app must have a value for each. */
const WRITTEN_MODEL_STATUSES: readonly ModelStatus[] = ['TRAINING', 'READY', 'ERROR'];
const WRITTEN_GENERATION_STATUSES: readonly GenerationStatus[] = ['PROCESSING', 'COMPLETED', 'FAILED'];
/**
 * In-flight statuses an app may not tell apart (one `processing` for both): they may share a value,
 * which reads back as the last of them (TRAINING, PROCESSING), so the rules never see a step between
 * the two that the app cannot store.
 */
const SHAREABLE_MODEL_STATUSES = IN_FLIGHT_STATUSES;
const SHAREABLE_GENERATION_STATUSES = GENERATION_IN_FLIGHT_STATUSES;

/** One table of the app: its quoted name, its columns (null: absent) and its status values (null: the app has none). */
export class HostTable<Column extends string, Status extends string> {
  /** The table as SQL: `"schema"."table"` or `"table"` (then found on the search path). */
  readonly sql: string;

  constructor(
    /** As the mapping names it: `schema.table` or `table`, for messages. */
    readonly label: string,
    /** The mapping names this table: it must exist (the default generations table may be absent, and is then not checked). */
    readonly named: boolean,
    schema: string | null,
    table: string,
    readonly columns: Readonly<Record<Column, string | null>>,
    /** Canonical status → the app's value, in canonical order. */
    readonly statuses: ReadonlyMap<Status, string | null>,
  ) {
    this.sql = schema === null ? quoteIdentifier(table) : `${quoteIdentifier(schema)}.${quoteIdentifier(table)}`;
  }

  has(column: Column): boolean {
    return this.columns[column] !== null;
  }

  /** The quoted column, or the SQL `fallback` when the app has none. */
  or(column: Column, fallback: string): string {
    return this.has(column) ? this.col(column) : fallback;
  }

  /** The quoted column; a column the app lacks is a programming error here (callers check `has` first). */
  col(column: Column, alias?: string): string {
    const name = this.columns[column];
    if (name === null) throw new Error(`${this.label} has no ${column} column`);
    return alias === undefined ? quoteIdentifier(name) : `${alias}.${quoteIdentifier(name)}`;
  }

  /**
   * A value of the column's own type from SQL `json` (or text) `expression`, whatever that type is (text,
   * bigint, uuid, an enum, timestamp or timestamptz, jsonb[]): the table's row type converts it. The
   * column is compared as it is, so its index is used; a text parameter is no cast of the column.
   */
  value(column: Column, expression: string): string {
    const name = this.columns[column]!;
    return `(json_populate_record(NULL::${this.sql}, json_build_object(${quoteLiteral(name)}, ${expression}))).${quoteIdentifier(name)}`;
  }

  /** An array of the column's type from the SQL `text[]` `expression`. */
  values(column: Column, expression: string): string {
    return `ARRAY(SELECT ${this.value(column, 'element')} FROM unnest(${expression}) AS element)`;
  }

  /** The column as text (ids of any type read as the rules read them). */
  text(column: Column): string {
    return `${this.col(column)}::text`;
  }

  /**
   * A timestamp column as a `timestamptz`, whichever of the two types it is: a `timestamp` holds UTC
   * wall-clock time (Prisma's `DateTime`), and `extract(epoch ...)` reads it so, a `timestamptz` its instant.
   */
  instant(column: Column): string {
    return `to_timestamp(extract(epoch FROM ${this.col(column)}))`;
  }

  /** A timestamp column read as an instant, null when not finite (or the app has none). */
  utc(column: Column): string {
    if (!this.has(column)) return 'NULL::timestamptz';
    return `CASE WHEN isfinite(${this.col(column)}) THEN ${this.instant(column)} END`;
  }

  /** The status read as its canonical name; a value the mapping does not name reads as it is. */
  status(): string {
    const col = `${this.col('status' as Column)}::text`;
    const cases = [...this.readBack()].filter(([value, canonical]) => value !== canonical).map(([value, canonical]) => `WHEN ${quoteLiteral(value)} THEN ${quoteLiteral(canonical)}`);
    return cases.length === 0 ? col : `CASE ${col} ${cases.join(' ')} ELSE ${col} END`;
  }

  /** The app's value of a canonical status (which a write of that status stores). */
  statusValue(status: Status): string {
    const value = this.statuses.get(status);
    if (value === null || value === undefined) throw new Error(`${this.label} has no value for status ${status}`);
    return value;
  }

  /** `status IN (...)` for canonical statuses (those the app has no value for match nothing). */
  statusIn(statuses: readonly Status[]): string {
    const values = [...new Set(statuses.map((status) => this.statuses.get(status)).filter((value): value is string => typeof value === 'string'))];
    return values.length === 0 ? 'false' : `${this.col('status' as Column)} IN (${values.map(quoteLiteral).join(', ')})`;
  }

  /** `"aiProvider" = 'astria'`, or nothing when every row of the table is Astria's. */
  astriaRows(): string[] {
    return this.has('aiProvider' as Column) ? [`${this.col('aiProvider' as Column)} = 'astria'`] : [];
  }

  /** The app's status value → the canonical status it reads back as (the last sharing it). */
  private readBack(): Map<string, string> {
    const back = new Map<string, string>();
    for (const [canonical, value] of this.statuses) if (value !== null) back.set(value, canonical);
    return back;
  }
}

export type ModelTable = HostTable<ModelColumn, ModelStatus>;
export type GenerationTable = HostTable<GenerationColumn, GenerationStatus>;

/** The app's two tables as the product names them. */
export interface HostSchema {
  models: ModelTable;
  generations: GenerationTable;
}

/**
 * The database could not read a given value as the column's type (`&model=abc` for a bigint id, a
 * number out of its range): such a value names no row of that table.
 */
export function isNotOfColumnType(error: unknown): boolean {
  const code = (error as { code?: unknown } | null)?.code;
  return code === '22P02' || code === '22003';
}

/** A PostgreSQL string literal, as `quote_literal` writes it (an `E''` literal when it holds a backslash). */
export function quoteLiteral(value: string): string {
  const quoted = `'${value.replaceAll("'", "''")}'`;
  return value.includes('\\') ? `E${quoted.replaceAll('\\', '\\\\')}` : quoted;
}

/** A PostgreSQL identifier: quoted wherever used, so any name works as written, within 63 bytes. */
const identifier = z
  .string({ error: 'must be a string (a name)' })
  .min(1, 'must not be empty')
  .refine((name) => Buffer.byteLength(name, 'utf8') <= 63, 'must be at most 63 bytes (a PostgreSQL identifier)')
  .refine((name) => !name.includes('\0'), 'must not contain a NUL character');
const statusValue = z.string({ error: 'must be a string (a status value) or null' }).min(1, 'must not be empty').refine((value) => !value.includes('\0'), 'must not contain a NUL character');

function columnsSchema<Column extends string>(all: readonly Column[], required: readonly Column[]) {
  return z.strictObject(Object.fromEntries(all.map((column) => [column, (required.includes(column) ? identifier : identifier.nullable()).optional()])) as Record<Column, z.ZodOptional<typeof identifier>>);
}

function statusesSchema<Status extends string>(all: readonly Status[], written: readonly Status[]) {
  return z.strictObject(Object.fromEntries(all.map((status) => [status, (written.includes(status) ? statusValue : statusValue.nullable()).optional()])) as Record<Status, z.ZodOptional<typeof statusValue>>);
}

function tableSchema<Column extends string, Status extends string>(columns: z.ZodType<Partial<Record<Column, string | null>>>, statuses: z.ZodType<Partial<Record<Status, string | null>>>) {
  return z.strictObject({ schema: identifier.optional(), table: identifier.optional(), columns: columns.optional(), statuses: statuses.optional() });
}

const mappingSchema = z.strictObject({
  models: tableSchema(columnsSchema(MODEL_COLUMNS, REQUIRED_MODEL_COLUMNS), statusesSchema(MODEL_STATUSES, WRITTEN_MODEL_STATUSES)).optional(),
  generations: tableSchema(columnsSchema(GENERATION_COLUMNS, REQUIRED_GENERATION_COLUMNS), statusesSchema(GENERATION_STATUSES, WRITTEN_GENERATION_STATUSES)).optional(),
});

/** The mapping file as written: every key optional, absent = the default name. */
export type HostMapping = z.input<typeof mappingSchema>;

/** A mapping that cannot be used; the message names `RECONCILER_HOST_MAPPING` and the key (a JSON path). */
export class HostMappingError extends Error {
  override name = 'HostMappingError';
}

const SOURCE = 'RECONCILER_HOST_MAPPING';

/**
 * The names of a mapping (already parsed JSON), every absent key defaulting to vibephoto's tables
 * (`ai_models`, `generations`, their Prisma column names and enum labels). Throws HostMappingError
 * naming each bad key: unknown, of the wrong type, or a status value two statuses share ambiguously.
 */
export function hostSchemaFromMapping(mapping: unknown): HostSchema {
  const parsed = mappingSchema.safeParse(mapping);
  if (!parsed.success) {
    throw new HostMappingError(`invalid ${SOURCE}: ${parsed.error.issues.map(describeIssue).join('; ')}`);
  }
  const problems: string[] = [];
  const models = buildTable(parsed.data.models, 'models', 'ai_models', MODEL_COLUMNS, MODEL_STATUSES, SHAREABLE_MODEL_STATUSES, problems);
  const generations = buildTable(parsed.data.generations, 'generations', 'generations', GENERATION_COLUMNS, GENERATION_STATUSES, SHAREABLE_GENERATION_STATUSES, problems);
  if (problems.length > 0) throw new HostMappingError(`invalid ${SOURCE}: ${problems.join('; ')}`);
  return { models, generations };
}

/** Reads and validates the mapping file (what `RECONCILER_HOST_MAPPING` names). */
export function loadHostMapping(path: string): HostSchema {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new HostMappingError(`${SOURCE} cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'}): ${path}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new HostMappingError(`${SOURCE} is not JSON (${(error as Error).message}): ${path}`);
  }
  return hostSchemaFromMapping(json);
}

/** vibephoto's tables: what the product reads with no mapping. */
export const DEFAULT_HOST_SCHEMA: HostSchema = hostSchemaFromMapping({});

function buildTable<Column extends string, Status extends string>(
  given: { schema?: string; table?: string; columns?: Partial<Record<Column, string | null>>; statuses?: Partial<Record<Status, string | null>> } | undefined,
  key: string,
  defaultTable: string,
  columnNames: readonly Column[],
  statusNames: readonly Status[],
  shareable: readonly Status[],
  problems: string[],
): HostTable<Column, Status> {
  const columns = Object.fromEntries(columnNames.map((column) => [column, given?.columns?.[column] === undefined ? column : given.columns[column]])) as Record<Column, string | null>;
  const statuses = new Map(statusNames.map((status) => [status, given?.statuses?.[status] === undefined ? status : given.statuses[status]!]));
  const owners = new Map<string, Status[]>();
  for (const [status, value] of statuses) if (value !== null) owners.set(value, [...(owners.get(value) ?? []), status]);
  for (const [value, sharing] of owners) {
    if (sharing.length > 1 && !sharing.every((status) => shareable.includes(status))) {
      problems.push(`${key}.statuses.${sharing.join(' and ')} share the value "${value}": only ${shareable.join(' and ')} may (an app that does not tell them apart)`);
    }
  }
  const schema = given?.schema ?? null;
  const table = given?.table ?? defaultTable;
  return new HostTable(schema === null ? table : `${schema}.${table}`, given !== undefined, schema, table, columns, statuses);
}

function describeIssue(issue: z.core.$ZodIssue): string {
  const path = issue.path.map(String).join('.');
  if (issue.code === 'unrecognized_keys') return issue.keys.map((unknown) => `${path ? `${path}.` : ''}${unknown} is not a known key`).join('; ');
  return `${path || '(top level)'} ${issue.message}`;
}
