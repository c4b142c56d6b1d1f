-- Generations (images asked of Astria as prompts), the copies of their images, and refunds of a
-- failed generation in the same ledger as a failed training's (`generationId` set; `modelId` is then
-- the generation's model, null once that model is gone).
CREATE TYPE "GenerationStatus" AS ENUM ('PENDING', 'PROCESSING', 'COMPLETED', 'FAILED');

CREATE TABLE "generations" (
    "id" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "modelId" TEXT,
    "prompt" TEXT NOT NULL,
    "aiProvider" TEXT DEFAULT 'replicate',
    "jobId" TEXT,
    "status" "GenerationStatus" NOT NULL DEFAULT 'PENDING',
    "imageUrls" JSONB[] NOT NULL DEFAULT ARRAY[]::JSONB[],
    "creditsUsed" INTEGER NOT NULL DEFAULT 1,
    "errorMessage" TEXT,
    "completedAt" TIMESTAMP(3),
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updatedAt" TIMESTAMP(3) NOT NULL,
    CONSTRAINT "generations_pkey" PRIMARY KEY ("id")
);
CREATE INDEX "generations_userId_idx" ON "generations"("userId");
CREATE INDEX "generations_modelId_idx" ON "generations"("modelId");
CREATE INDEX "generations_jobId_idx" ON "generations"("jobId");
ALTER TABLE "generations" ADD CONSTRAINT "generations_userId_fkey" FOREIGN KEY ("userId") REFERENCES "demo_users"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
ALTER TABLE "generations" ADD CONSTRAINT "generations_modelId_fkey" FOREIGN KEY ("modelId") REFERENCES "ai_models"("id") ON DELETE SET NULL ON UPDATE CASCADE;

CREATE TABLE "stored_images" (
    "generationId" TEXT NOT NULL,
    "position" INTEGER NOT NULL,
    "sourceUrl" TEXT NOT NULL,
    "eventId" UUID NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "stored_images_pkey" PRIMARY KEY ("generationId", "position")
);
ALTER TABLE "stored_images" ADD CONSTRAINT "stored_images_generationId_fkey" FOREIGN KEY ("generationId") REFERENCES "generations"("id") ON DELETE CASCADE ON UPDATE CASCADE;

ALTER TABLE "credit_refunds" ALTER COLUMN "modelId" DROP NOT NULL, ADD COLUMN "generationId" TEXT;
CREATE INDEX "credit_refunds_generationId_idx" ON "credit_refunds"("generationId");
ALTER TABLE "credit_refund_reversals" ALTER COLUMN "modelId" DROP NOT NULL, ADD COLUMN "generationId" TEXT;
CREATE INDEX "credit_refund_reversals_generationId_idx" ON "credit_refund_reversals"("generationId");
