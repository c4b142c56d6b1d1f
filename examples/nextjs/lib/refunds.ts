import type { Prisma } from '@/lib/generated/prisma/client';
import type { GenerationStatusChangedEvent, ModelStatusChangedEvent } from 'astria-reconciler';

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
  const subject: RefundSubject = { modelId: event.modelId, generationId: null, lockKey: event.modelId };
  await settle(event, subject, event.status === 'ERROR' ? TRAINING_CREDITS : null, tx);
}

/**
 * The same for a generation: on `FAILED` its `creditsUsed` are given back; on `COMPLETED` after
 * `FAILED` (the reconciler's "Astria prompt N not found" healed by the prompt's callback) taken back.
 */
export async function refundFailedGeneration(event: GenerationStatusChangedEvent, tx: Prisma.TransactionClient): Promise<void> {
  const healed = event.status === 'COMPLETED' && event.previousStatus === 'FAILED';
  if (event.status !== 'FAILED' && !healed) return;
  const subject: RefundSubject = { modelId: event.modelId, generationId: event.generationId, lockKey: `generation:${event.generationId}` };
  let credits: number | null = null;
  if (!healed) {
    const generation = await tx.generation.findUnique({ where: { id: event.generationId }, select: { creditsUsed: true } });
    // A generation the app deleted since has nothing left to give back.
    if (!generation) return;
    credits = generation.creditsUsed;
  }
  await settle(event, subject, credits, tx);
}

/** What a refund is for: a model's training (no `generationId`), or one generation. */
interface RefundSubject {
  modelId: string | null;
  generationId: string | null;
  /** One subject's refunds and reversals are settled one at a time under a lock on this. */
  lockKey: string;
}

/** `credits`: the refund of a failure; null: the reversal of a heal. */
async function settle(event: { eventId: string; userId: string }, subject: RefundSubject, credits: number | null, tx: Prisma.TransactionClient): Promise<void> {
  // Concurrent requests may bring a subject's refund and its reversal: each must see the other's row.
  // The two-key lock space is apart from the one-key locks of others.
  await tx.$executeRaw`SELECT pg_advisory_xact_lock(hashtext('credit_refunds'), hashtext(${subject.lockKey}::text))`;
  if (credits !== null) await refund(event, subject, credits, tx);
  else await reverseRefund(event, subject, tx);
}

/** A training's rows are those of its model without a generation; a generation's, its own. */
function rowsOf(subject: RefundSubject) {
  return subject.generationId === null ? { modelId: subject.modelId, generationId: null } : { generationId: subject.generationId };
}

async function refund(event: { eventId: string; userId: string }, subject: RefundSubject, credits: number, tx: Prisma.TransactionClient): Promise<void> {
  const { count } = await tx.creditRefund.createMany({
    data: [{ eventId: event.eventId, modelId: subject.modelId, generationId: subject.generationId, userId: event.userId, credits }],
    skipDuplicates: true,
  });
  if (count === 0) return;
  const waiting = await tx.creditRefundReversal.findFirst({
    where: { ...rowsOf(subject), refundEventId: null },
    orderBy: [{ createdAt: 'asc' }, { eventId: 'asc' }],
  });
  if (waiting) {
    await tx.creditRefundReversal.update({ where: { eventId: waiting.eventId }, data: { refundEventId: event.eventId } });
    return;
  }
  await tx.user.updateMany({ where: { id: event.userId }, data: { credits: { increment: credits } } });
}

async function reverseRefund(event: { eventId: string; userId: string }, subject: RefundSubject, tx: Prisma.TransactionClient): Promise<void> {
  const { count } = await tx.creditRefundReversal.createMany({
    data: [{ eventId: event.eventId, modelId: subject.modelId, generationId: subject.generationId, userId: event.userId }],
    skipDuplicates: true,
  });
  if (count === 0) return;
  const refunded = await tx.creditRefund.findFirst({
    where: { ...rowsOf(subject), reversal: null },
    orderBy: [{ createdAt: 'asc' }, { eventId: 'asc' }],
  });
  // Not refunded yet: the refund is taken back when it comes.
  if (!refunded) return;
  await tx.creditRefundReversal.update({ where: { eventId: event.eventId }, data: { refundEventId: refunded.eventId } });
  await tx.user.updateMany({ where: { id: refunded.userId }, data: { credits: { decrement: refunded.credits } } });
}
