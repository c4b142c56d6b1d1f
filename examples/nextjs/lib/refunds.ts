import type { Prisma } from '@/lib/generated/prisma/client';
import type { ModelStatusChangedEvent } from 'astria-reconciler';

/** What one training costs, given back when it fails. */
export const TRAINING_CREDITS = 10;

/**
 * The app's side effect of a status change, exactly once per event: the `credit_refunds` row keyed by
 * `eventId` and the credit update commit together, so an event seen twice (the webhook's hook, then a
 * redelivery of the `http` broadcast) refunds once. Runs inside the caller's Prisma transaction.
 */
export async function refundFailedTraining(event: ModelStatusChangedEvent, tx: Prisma.TransactionClient): Promise<void> {
  if (event.status !== 'ERROR') return;
  const { count } = await tx.creditRefund.createMany({
    data: [{ eventId: event.eventId, modelId: event.modelId, userId: event.userId, credits: TRAINING_CREDITS }],
    skipDuplicates: true,
  });
  if (count === 0) return;
  await tx.user.updateMany({ where: { id: event.userId }, data: { credits: { increment: TRAINING_CREDITS } } });
}
