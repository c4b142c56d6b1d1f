-- A refund is taken back when its failure heals (ERROR, then READY): one row per such event.
CREATE TABLE "credit_refund_reversals" (
    "eventId" UUID NOT NULL,
    "modelId" TEXT NOT NULL,
    "userId" TEXT NOT NULL,
    "refundEventId" UUID,
    "createdAt" TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT "credit_refund_reversals_pkey" PRIMARY KEY ("eventId")
);
CREATE UNIQUE INDEX "credit_refund_reversals_refundEventId_key" ON "credit_refund_reversals"("refundEventId");
CREATE INDEX "credit_refund_reversals_modelId_idx" ON "credit_refund_reversals"("modelId");
CREATE INDEX "credit_refunds_modelId_idx" ON "credit_refunds"("modelId");
ALTER TABLE "credit_refund_reversals" ADD CONSTRAINT "credit_refund_reversals_refundEventId_fkey" FOREIGN KEY ("refundEventId") REFERENCES "credit_refunds"("eventId") ON DELETE SET NULL ON UPDATE CASCADE;
