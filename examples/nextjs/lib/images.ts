import type { Prisma } from '@/lib/generated/prisma/client';
import type { GenerationStatusChangedEvent } from 'astria-reconciler';

/**
 * The app's side effect of a generation's `COMPLETED`: it keeps its own copy of the images, because
 * Astria deletes them 30 days after the prompt. One `stored_images` row per image, keyed by generation
 * and position, in the caller's transaction: an event seen twice (the webhook's hook, then the `http`
 * broadcast's redelivery) stores nothing twice, and `COMPLETED` is never left, so it happens once.
 *
 * Here the row stands for the copy (its `sourceUrl` is Astria's URL). A real app would make the row
 * its download job: a worker fetches each image into the app's bucket and records the key. Fetching
 * inside this transaction would hold the status write open for as long as the download.
 */
export async function storeCompletedImages(event: GenerationStatusChangedEvent, tx: Prisma.TransactionClient): Promise<void> {
  if (event.status !== 'COMPLETED') return;
  // The event carries the URLs that fit a NOTIFY (`data.imageCount` says how many there are): the row has them all.
  const generation = await tx.generation.findUnique({ where: { id: event.generationId }, select: { imageUrls: true } });
  if (!generation) return;
  const urls = generation.imageUrls.filter((url): url is string => typeof url === 'string');
  await tx.storedImage.createMany({
    data: urls.map((sourceUrl, position) => ({ generationId: event.generationId, position, sourceUrl, eventId: event.eventId })),
    skipDuplicates: true,
  });
}
