-- The example app's tables (`npx prisma migrate deploy`, or run this file with psql).
CREATE TYPE "ModelStatus" AS ENUM ('UPLOADING', 'PROCESSING', 'TRAINING', 'READY', 'ERROR', 'DELETED');

CREATE TABLE "demo_users" (
    "id" TEXT NOT NULL,
    "name" TEXT NOT NULL,
    "credits" INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT "demo_users_pkey" PRIMARY KEY ("id")
);

CREATE TABLE "ai_models" (
    "id" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "name" TEXT NOT NULL DEFAULT '',
    "status" "ModelStatus" NOT NULL DEFAULT 'UPLOADING',
    "progress" INTEGER NOT NULL DEFAULT 0,
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
CREATE INDEX "ai_models_userId_idx" ON "ai_models"("userId");
ALTER TABLE "ai_models" ADD CONSTRAINT "ai_models_userId_fkey" FOREIGN KEY ("userId") REFERENCES "demo_users"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

CREATE TABLE "credit_refunds" (
    "eventId" UUID NOT NULL,
    "modelId" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "credits" INTEGER NOT NULL,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "credit_refunds_pkey" PRIMARY KEY ("eventId")
);
