import type { ModelStatusChangedEvent, SqlExecutor } from 'astria-reconciler';

/** What one training costs, given back when it fails. */
export const TRAINING_CREDITS = 10;

/**
 * The app's side effect of a status change, exactly once per event: the `credit_refunds` row keyed by
 * `eventId` and the credit update commit together, so an event seen twice (the webhook's hook, then a
 * redelivery of the `http` broadcast) refunds once. Runs inside the caller's transaction.
 */
export async function refundFailedTraining(event: ModelStatusChangedEvent, tx: SqlExecutor): Promise<void> {
  if (event.status !== 'ERROR') return;
  const inserted = await tx.query<{ eventId: string }>(
    `INSERT INTO credit_refunds ("eventId", "modelId", "userId", credits) VALUES ($1::uuid, $2, $3, $4)
     ON CONFLICT ("eventId") DO NOTHING RETURNING "eventId"`,
    [event.eventId, event.modelId, event.userId, TRAINING_CREDITS],
  );
  if (inserted.length === 0) return;
  await tx.execute('UPDATE demo_users SET credits = credits + $1 WHERE id = $2', [TRAINING_CREDITS, event.userId]);
}
