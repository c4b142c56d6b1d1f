import type { Prisma } from '@/lib/generated/prisma/client';
import type { ModelStatusChangedEvent } from 'astria-reconciler';

/** What one training costs, given back when it fails. */
export const TRAINING_CREDITS = 10;

/**
 * The app's side effect of a status change, exactly once per event, inside the caller's Prisma
 * transaction: on `ERROR` the training's credits are given back; on `READY` after `ERROR` they are
 * taken back. An `ERROR` the reconciler set (Astria had no such tune, or the training ran past its
 * timeout) heals to `READY` when the tune trains after all: the user then has the model, so the
 * refund goes. Each event's row (`credit_refunds`, `credit_refund_reversals`, keyed by `eventId`) and
 * its credit update commit together, so an event seen twice (the webhook's hook, then a redelivery of
 * the `http` broadcast) counts once.
 *
 * The two may arrive in either order: the sidecar's `ERROR` reaches the broadcast receiver after the
 * app's own route has already healed the model. A reversal that finds no refund waits for it, and the
 * refund that then comes is taken back as it is made, moving no credits.
 */
export async function refundFailedTraining(event: ModelStatusChangedEvent, tx: Prisma.TransactionClient): Promise<void> {
  const healed = event.status === 'READY' && event.previousStatus === 'ERROR';
  if (event.status !== 'ERROR' && !healed) return;
  // One model's refunds and reversals, which concurrent requests may bring, are settled one at a time:
  // each must see the other's row. The two-key lock space is apart from the one-key locks of others.
  await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext('credit_refunds'), hashtext(${event.modelId}::text))`;
  if (event.status === 'ERROR') await refund(event, tx);
  else await reverseRefund(event, tx);
}

async function refund(event: ModelStatusChangedEvent, tx: Prisma.TransactionClient): Promise<void> {
  const { count } = await tx.creditRefund.createMany({
    data: [{ eventId: event.eventId, modelId: event.modelId, userId: event.userId, credits: TRAINING_CREDITS }],
    skipDuplicates: true,
  });
  if (count === 0) return;
  const waiting = await tx.creditRefundReversal.findFirst({
    where: { modelId: event.modelId, refundEventId: null },
    orderBy: [{ createdAt: 'asc' }, { eventId: 'asc' }],
  });
  if (waiting) {
    await tx.creditRefundReversal.update({ where: { eventId: waiting.eventId }, data: { refundEventId: event.eventId } });
    return;
  }
  await tx.user.updateMany({ where: { id: event.userId }, data: { credits: { increment: TRAINING_CREDITS } } });
}

async function reverseRefund(event: ModelStatusChangedEvent, tx: Prisma.TransactionClient): Promise<void> {
  const { count } = await tx.creditRefundReversal.createMany({
    data: [{ eventId: event.eventId, modelId: event.modelId, userId: event.userId }],
    skipDuplicates: true,
  });
  if (count === 0) return;
  const refunded = await tx.creditRefund.findFirst({
    where: { modelId: event.modelId, reversal: null },
    orderBy: [{ createdAt: 'asc' }, { eventId: 'asc' }],
  });
  // Not refunded yet: the refund is taken back when it comes.
  if (!refunded) return;
  await tx.creditRefundReversal.update({ where: { eventId: event.eventId }, data: { refundEventId: refunded.eventId } });
  await tx.user.updateMany({ where: { id: refunded.userId }, data: { credits: { decrement: refunded.credits } } });
}
