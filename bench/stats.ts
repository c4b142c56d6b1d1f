/** Small helpers shared by the steady-state and broadcast-latency benchmarks. */
import type { TargetResult } from './report.js';

/** Nearest-rank percentile (`p` in 0..1) of `values`; null when empty. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil(p * sorted.length));
  return sorted[Math.min(sorted.length, rank) - 1]!;
}

export function maximum(values: readonly number[]): number | null {
  return values.length === 0 ? null : values.reduce((a, b) => Math.max(a, b), -Infinity);
}

export function minimum(values: readonly number[]): number | null {
  return values.length === 0 ? null : values.reduce((a, b) => Math.min(a, b), Infinity);
}

export function mean(values: readonly number[]): number | null {
  return values.length === 0 ? null : values.reduce((a, b) => a + b, 0) / values.length;
}

export function fixedOrDash(value: number | null, digits: number): string {
  return value === null || !Number.isFinite(value) ? '-' : value.toFixed(digits);
}

/** A table: first row is the header; the first column is left-aligned, the rest right-aligned. */
export function formatGrid(rows: string[][]): string {
  const widths = rows[0]!.map((_, column) => Math.max(...rows.map((row) => (row[column] ?? '').length)));
  const line = (row: string[]) =>
    row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ');
  const rule = widths.map((width) => '-'.repeat(width)).join('  ');
  return [line(rows[0]!), rule, ...rows.slice(1).map(line)].join('\n');
}

export function target(label: string, pass: boolean, actual: string): TargetResult {
  return { label, pass, actual };
}

/** What one benchmark section hands back to `bench/run.ts`. */
export interface SectionResult {
  /** Printed as is: figures, tables and notes. */
  text: string;
  targets: TargetResult[];
}
