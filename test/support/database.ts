import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { inject } from 'vitest';
import { createDatabase, dropDatabase } from '../../dev/embedded-postgres.js';
import { HOST_SCHEMA_SQL } from '../../dev/host-schema.js';
import type { ModelStatus } from '../../src/status/rules.js';

export interface TestDatabase {
  url: string;
  pool: pg.Pool;
  drop(): Promise<void>;
}

/** A fresh database holding the host app's tables, private to the caller. */
export async function createTestDatabase(): Promise<TestDatabase> {
  const adminUrl = inject('adminDatabaseUrl');
  const name = `t_${randomBytes(6).toString('hex')}`;
  const url = await createDatabase(adminUrl, name);
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  // Tests that cut connections (outage simulations) would otherwise crash the worker through an idle
  // client's error; queries still reject with their own errors.
  pool.on('error', () => undefined);
  try {
    await pool.query(HOST_SCHEMA_SQL);
  } catch (error) {
    await pool.end();
    await dropDatabase(adminUrl, name);
    throw error;
  }
  return {
    url,
    pool,
    async drop() {
      await pool.end();
      await dropDatabase(adminUrl, name);
    },
  };
}

/** The `ai_models` columns of SPEC.md. */
export interface ModelRow {
  id: string;
  userId: string;
  status: ModelStatus;
  progress: number;
  aiProvider: string | null;
  trainingJobId: string | null;
  modelUrl: string | null;
  trainedAt: Date | null;
  errorMessage: string | null;
  estimatedTime: number | null;
  createdAt: Date;
  updatedAt: Date;
}

// The timestamp(3) columns hold UTC wall-clock time; AT TIME ZONE 'UTC' turns them into timestamptz,
// which pg parses to the right instant whatever the process TZ.
const SELECT_MODEL = `
  SELECT id, "userId", status, progress, "aiProvider", "trainingJobId", "modelUrl",
         "trainedAt" AT TIME ZONE 'UTC' AS "trainedAt", "errorMessage", "estimatedTime",
         "createdAt" AT TIME ZONE 'UTC' AS "createdAt", "updatedAt" AT TIME ZONE 'UTC' AS "updatedAt"
  FROM ai_models WHERE id = $1`;

/** Reads one model; throws if it does not exist. */
export async function readModel(db: pg.Pool | pg.ClientBase, id: string): Promise<ModelRow> {
  const { rows } = await db.query<ModelRow>(SELECT_MODEL, [id]);
  const row = rows[0];
  if (!row) throw new Error(`ai_models row ${id} not found`);
  return row;
}
