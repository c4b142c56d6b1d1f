import type { Prisma } from '@/lib/generated/prisma/client';
import type { StatusChangedEvent } from 'astria-reconciler';
import { storeCompletedImages } from './images';
import { refundFailedGeneration, refundFailedTraining } from './refunds';

/**
 * Everything this app does when a status changes, in the caller's transaction and exactly once per
 * event: from the status service's hook (what this app's own webhook route applies) and from the
 * sidecar's `http` broadcast (what the sidecar applies; the app's own events come there too, and
 * count nothing twice).
 */
export async function applySideEffects(event: StatusChangedEvent, tx: Prisma.TransactionClient): Promise<void> {
  switch (event.type) {
    case 'model_status_changed':
      return refundFailedTraining(event, tx);
    case 'generation_status_changed':
      await storeCompletedImages(event, tx);
      return refundFailedGeneration(event, tx);
  }
}
