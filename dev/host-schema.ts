import type pg from 'pg';
import type { ModelStatus } from '../src/status/rules.js';

/**
 * A copy of the host app's tables as `prisma migrate` creates them. Used only by tests, the demo and
 * benchmarks: production never creates or alters these tables. The columns we do not use (`name`,
 * `class`, `classWord`, `facePhotos`, `triggerWord`) are here so our queries are proven against the
 * full table, NOT NULL columns included.
 */
export const HOST_SCHEMA_SQL = `
CREATE TYPE "ModelStatus" AS ENUM ('UPLOADING', 'PROCESSING', 'TRAINING', 'READY', 'ERROR', 'DELETED');

CREATE TYPE "ModelClass" AS ENUM ('man', 'woman', 'person', 'boy', 'girl', 'child', 'dog', 'cat');

CREATE TABLE "users" (
    "id" TEXT NOT NULL,
    "email" TEXT NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "users_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "ai_models" (
    "id" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "class" "ModelClass" NOT NULL,
    "classWord" TEXT NOT NULL,
    "status" "ModelStatus" NOT NULL DEFAULT 'UPLOADING',
    "progress" INTEGER NOT NULL DEFAULT 0,
    "facePhotos" JSONB[] NOT NULL DEFAULT ARRAY[]::JSONB[],
    "triggerWord" TEXT,
    "aiProvider" TEXT DEFAULT 'replicate',
    "trainingJobId" TEXT,
    "modelUrl" TEXT,
    "trainedAt" TIMESTAMP(3),
    "errorMessage" TEXT,
    "estimatedTime" INTEGER,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "ai_models_pkey" PRIMARY KEY ("id")
);

CREATE UNIQUE INDEX "users_email_key" ON "users"("email");

CREATE INDEX "ai_models_userId_idx" ON "ai_models"("userId");

CREATE INDEX "ai_models_status_idx" ON "ai_models"("status");

ALTER TABLE "ai_models" ADD CONSTRAINT "ai_models_userId_fkey" FOREIGN KEY ("userId") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;
`;

export interface SeedModel {
  id: string;
  userId?: string;
  status: ModelStatus;
  trainingJobId: string | null;
  aiProvider?: string | null;
  progress?: number;
  createdAt?: Date;
  updatedAt?: Date;
  estimatedTime?: number | null;
  errorMessage?: string | null;
  name?: string;
}

type Queryable = pg.Pool | pg.ClientBase;

// One statement per batch keeps 30k rows to a handful of round trips.
const BATCH_SIZE = 5000;
const HOUR_MS = 3_600_000;

/** Bulk-inserts models (and the users they reference) the way the host app would have written them. */
export async function seedModels(db: Queryable, models: SeedModel[]): Promise<void> {
  const defaultTime = new Date(Date.now() - HOUR_MS);
  for (let start = 0; start < models.length; start += BATCH_SIZE) {
    const batch = models.slice(start, start + BATCH_SIZE);
    await insertUsers(db, batch);
    await insertModels(db, batch, defaultTime);
  }
}

async function insertUsers(db: Queryable, batch: SeedModel[]): Promise<void> {
  const userIds = [...new Set(batch.map(userIdOf))];
  await db.query(
    `INSERT INTO users (id, email, "updatedAt")
     SELECT id, id || '@example.test', now() AT TIME ZONE 'UTC' FROM unnest($1::text[]) AS u(id)
     ON CONFLICT DO NOTHING`,
    [userIds],
  );
}

// Timestamps travel as ISO strings and are converted server-side: the columns are timestamp(3) holding
// UTC wall-clock time, so neither the Node process TZ nor the session TimeZone may leak in.
async function insertModels(db: Queryable, batch: SeedModel[], defaultTime: Date): Promise<void> {
  const column = <T>(pick: (m: SeedModel) => T): T[] => batch.map(pick);
  await db.query(
    `INSERT INTO ai_models (id, "userId", name, class, "classWord", status, progress, "aiProvider",
                            "trainingJobId", "errorMessage", "estimatedTime", "createdAt", "updatedAt")
     SELECT id, user_id, name, 'person', 'person', status::"ModelStatus", progress, ai_provider,
            training_job_id, error_message, estimated_time,
            created_at::timestamptz AT TIME ZONE 'UTC', updated_at::timestamptz AT TIME ZONE 'UTC'
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int[], $6::text[], $7::text[],
                 $8::text[], $9::int[], $10::text[], $11::text[])
       AS m(id, user_id, name, status, progress, ai_provider, training_job_id, error_message,
            estimated_time, created_at, updated_at)`,
    [
      column((m) => m.id),
      column(userIdOf),
      column((m) => m.name ?? `Model ${m.id}`),
      column((m) => m.status),
      column((m) => m.progress ?? 0),
      column((m) => (m.aiProvider === undefined ? 'astria' : m.aiProvider)),
      column((m) => m.trainingJobId),
      column((m) => m.errorMessage ?? null),
      column((m) => m.estimatedTime ?? null),
      column((m) => (m.createdAt ?? defaultTime).toISOString()),
      column((m) => (m.updatedAt ?? defaultTime).toISOString()),
    ],
  );
}

function userIdOf(model: SeedModel): string {
  return model.userId ?? 'user-1';
}
