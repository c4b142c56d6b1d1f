import type pg from 'pg';
import type { GenerationStatus } from '../../src/status/generation-rules.js';

/**
 * The host app's `generations` table as `prisma migrate` creates it (Prisma model `Generation`), for
 * tests only: production never creates or alters it. Applied after the host schema (it references
 * `users` and `ai_models`). The columns the reconciler never touches (`prompt`, `negativePrompt`,
 * `packageId`, the storage and credit columns…) are here, NOT NULL ones included, so our queries are
 * proven against the full table.
 */
export const GENERATIONS_SCHEMA_SQL = `
CREATE TYPE "GenerationStatus" AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED');

CREATE TABLE "generations" (
    "id" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "modelId" TEXT,
    "prompt" TEXT NOT NULL,
    "negativePrompt" TEXT,
    "packageId" TEXT,
    "aspectRatio" TEXT NOT NULL DEFAULT '1:1',
    "numImages" INTEGER NOT NULL DEFAULT 4,
    "aiProvider" TEXT DEFAULT 'replicate',
    "jobId" TEXT,
    "status" "GenerationStatus" NOT NULL DEFAULT 'PENDING',
    "imageUrls" JSONB[] NOT NULL DEFAULT ARRAY[]::JSONB[],
    "thumbnailUrls" JSONB[] NOT NULL DEFAULT ARRAY[]::JSONB[],
    "storageProvider" TEXT,
    "storageKeys" JSONB[] NOT NULL DEFAULT ARRAY[]::JSONB[],
    "creditsUsed" INTEGER NOT NULL DEFAULT 1,
    "creditsRefunded" BOOLEAN NOT NULL DEFAULT false,
    "errorMessage" TEXT,
    "processingTime" INTEGER,
    "completedAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,

    CONSTRAINT "generations_pkey" PRIMARY KEY ("id")
);

CREATE INDEX "generations_userId_idx" ON "generations"("userId");

CREATE INDEX "generations_modelId_idx" ON "generations"("modelId");

CREATE INDEX "generations_status_idx" ON "generations"("status");

CREATE INDEX "generations_jobId_idx" ON "generations"("jobId");

ALTER TABLE "generations" ADD CONSTRAINT "generations_userId_fkey" FOREIGN KEY ("userId") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE;

ALTER TABLE "generations" ADD CONSTRAINT "generations_modelId_fkey" FOREIGN KEY ("modelId") REFERENCES "ai_models"("id") ON DELETE SET NULL ON UPDATE CASCADE;
`;

export interface SeedGeneration {
  id: string;
  /** Must exist in `users`. Default `user-1`, which seeding a model creates. */
  userId?: string;
  /** Must exist in `ai_models` (or be null). */
  modelId: string | null;
  status: GenerationStatus;
  jobId: string | null;
  aiProvider?: string | null;
  imageUrls?: string[];
  errorMessage?: string | null;
  createdAt?: Date;
  updatedAt?: Date;
}

type Queryable = pg.Pool | pg.ClientBase;

/**
 * Inserts generations the way the app writes them. Timestamps travel as ISO strings, converted
 * server-side to UTC wall-clock time (the columns are timestamp(3)); each image URL is stored as a
 * jsonb string, one array element per image.
 */
export async function seedGenerations(db: Queryable, generations: SeedGeneration[], now = new Date()): Promise<void> {
  for (const generation of generations) {
    await db.query(
      `INSERT INTO generations (id, "userId", "modelId", prompt, "aiProvider", "jobId", status, "imageUrls",
                                "errorMessage", "createdAt", "updatedAt")
       VALUES ($1, $2, $3, 'ohwx person, studio portrait', $4, $5, $6::"GenerationStatus",
               ARRAY(SELECT to_jsonb(url) FROM unnest($7::text[]) AS url), $8,
               $9::timestamptz AT TIME ZONE 'UTC', $10::timestamptz AT TIME ZONE 'UTC')`,
      [
        generation.id,
        generation.userId ?? 'user-1',
        generation.modelId,
        generation.aiProvider === undefined ? 'astria' : generation.aiProvider,
        generation.jobId,
        generation.status,
        generation.imageUrls ?? [],
        generation.errorMessage ?? null,
        (generation.createdAt ?? now).toISOString(),
        (generation.updatedAt ?? generation.createdAt ?? now).toISOString(),
      ],
    );
  }
}

/** The `generations` columns the reconciler reads and writes. */
export interface StoredGeneration {
  id: string;
  userId: string;
  modelId: string | null;
  aiProvider: string | null;
  jobId: string | null;
  status: GenerationStatus;
  imageUrls: unknown[];
  errorMessage: string | null;
  completedAt: Date | null;
  createdAt: Date;
  updatedAt: Date;
  creditsRefunded: boolean;
}

/** Reads one generation; throws if it does not exist. */
export async function readGeneration(db: Queryable, id: string): Promise<StoredGeneration> {
  const { rows } = await db.query<StoredGeneration>(
    `SELECT id, "userId", "modelId", "aiProvider", "jobId", status, "imageUrls", "errorMessage",
            "completedAt" AT TIME ZONE 'UTC' AS "completedAt", "createdAt" AT TIME ZONE 'UTC' AS "createdAt",
            "updatedAt" AT TIME ZONE 'UTC' AS "updatedAt", "creditsRefunded"
     FROM generations WHERE id = $1`,
    [id],
  );
  const row = rows[0];
  if (!row) throw new Error(`generations row ${id} not found`);
  return row;
}
