/** `RECONCILER_SCHEMA`'s default: the schema of our own tables. */
export const DEFAULT_SCHEMA = 'astria_reconciler';

/**
 * An SQL identifier quoted for interpolation: `RECONCILER_SCHEMA` may be a reserved word (`user`,
 * `order`) or mixed case, which only a quoted identifier names as written.
 */
export function quoteIdentifier(name: string): string {
  return `"${name.replaceAll('"', '""')}"`;
}
