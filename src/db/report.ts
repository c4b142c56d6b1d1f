import type pg from 'pg';
import { quoteIdentifier } from './identifier.js';

/**
 * What `report` reads of the event log, over a window of the database's own times (`recorded_at`):
 * the writers' clocks may disagree with each other and with the machine running the report.
 */

/** The database's time now: where a report's window ends. */
export async function databaseNow(pool: pg.Pool): Promise<Date> {
  const { rows } = await pool.query<{ now: Date }>(`SELECT now() AS now`);
  return rows[0]!.now;
}

export interface ReportWindow {
  since: Date;
  until: Date;
}

const window = ({ since, until }: ReportWindow) => [since.toISOString(), until.toISOString()];

/** Status changes in the window, by target status and by who applied them. */
export async function countTransitions(
  pool: pg.Pool,
  schema: string,
  range: ReportWindow,
  kind: 'tune' | 'prompt' = 'tune',
): Promise<{ to_status: string; source: string; n: number }[]> {
  const { rows } = await pool.query<{ to_status: string; source: string; n: number }>(
    `SELECT to_status, source, count(*)::int AS n
       FROM ${quoteIdentifier(schema)}.events
      WHERE recorded_at >= $1 AND recorded_at <= $2 AND kind = $3
      GROUP BY to_status, source`,
    [...window(range), kind],
  );
  return rows;
}

/** The reconciler's recoveries to READY in the window, with Astria's `trained_at`. */
const recoveries = (schema: string) => `
    FROM ${quoteIdentifier(schema)}.events
   WHERE recorded_at >= $1 AND recorded_at <= $2
     AND kind = 'tune' AND source = 'reconciler' AND to_status = 'READY' AND trained_at IS NOT NULL`;
/** Detection lag in seconds: Astria's `trained_at` to the database writing READY. */
const LAG = `GREATEST(0, extract(epoch FROM recorded_at - trained_at))::float8`;

export interface LagStatistics {
  n: number;
  p50: number | null;
  p90: number | null;
  p99: number | null;
  max: number | null;
}

export async function recoveryLag(pool: pg.Pool, schema: string, range: ReportWindow): Promise<LagStatistics> {
  const { rows } = await pool.query<LagStatistics>(
    `SELECT count(*)::int AS n,
            percentile_cont(0.5) WITHIN GROUP (ORDER BY ${LAG}) AS p50,
            percentile_cont(0.9) WITHIN GROUP (ORDER BY ${LAG}) AS p90,
            percentile_cont(0.99) WITHIN GROUP (ORDER BY ${LAG}) AS p99,
            max(${LAG}) AS max
     ${recoveries(schema)}`,
    window(range),
  );
  return rows[0]!;
}

export interface SlowRecoveryRow {
  model_id: string;
  tune_id: string | null;
  lag: number;
  trained_at: Date;
  recorded_at: Date;
}

/** The `limit` slowest recoveries of the window, slowest first. */
export async function slowestRecoveries(pool: pg.Pool, schema: string, range: ReportWindow, limit: number): Promise<SlowRecoveryRow[]> {
  const { rows } = await pool.query<SlowRecoveryRow>(
    `SELECT model_id, payload->'data'->>'modelUrl' AS tune_id, ${LAG} AS lag, trained_at, recorded_at
     ${recoveries(schema)}
     ORDER BY lag DESC, recorded_at DESC
     LIMIT $3`,
    [...window(range), limit],
  );
  return rows;
}
