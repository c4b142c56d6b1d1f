import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { EVENT_SOURCES, type EventSource } from './event.js';
import { GENERATION_STATUSES, type GenerationStatus } from './generation-rules.js';
import { safeNullableText, safeText } from './sanitize.js';
import type { UpdatedGeneration } from '../model.js';

/**
 * JSON bytes each app-written value may take in an event. The row's ids, `errorMessage` and
 * `imageUrls` may be anything the app left there, and the whole event (about 7.4 kB at most) must fit
 * a NOTIFY payload (`MAX_NOTIFY_PAYLOAD_BYTES`) and a jsonb row.
 */
const MAX_EVENT_ID_BYTES = 1_000;
const MAX_EVENT_TEXT_BYTES = 1_500;
/** The image URLs together; a prompt's few images of about a hundred bytes each fit many times over. */
const MAX_EVENT_IMAGE_URLS_BYTES = 2_600;

/** The columns of the updated row an event reports. */
export type { UpdatedGeneration } from '../model.js';

const status = z.enum(GENERATION_STATUSES);
const isoTimestamp = z.iso.datetime({ offset: true });

/**
 * Sent on the same channel as the model's events; consumers parse with this, drop duplicates by
 * `eventId` and skip types they do not know. `imageUrls` holds whole URLs only, as many as fit the
 * payload; `imageCount` says how many the row has, so a consumer that got fewer reads the row.
 */
export const generationStatusChangedEventSchema = z.object({
  type: z.literal('generation_status_changed'),
  eventId: z.string().min(1),
  generationId: z.string(),
  modelId: z.string().nullable(),
  userId: z.string(),
  status,
  previousStatus: status,
  source: z.enum(EVENT_SOURCES),
  occurredAt: isoTimestamp,
  data: z.object({
    imageUrls: z.array(z.string()),
    imageCount: z.number().int().nonnegative(),
    completedAt: isoTimestamp.nullable(),
    errorMessage: z.string().nullable(),
  }),
});
export type GenerationStatusChangedEvent = z.infer<typeof generationStatusChangedEventSchema>;

export function generationStatusChangedEvent(
  row: UpdatedGeneration,
  previousStatus: GenerationStatus,
  source: EventSource,
  occurredAt: Date,
): GenerationStatusChangedEvent {
  return {
    type: 'generation_status_changed',
    eventId: randomUUID(),
    generationId: safeText(row.id, MAX_EVENT_ID_BYTES),
    modelId: safeNullableText(row.modelId, MAX_EVENT_ID_BYTES),
    userId: safeText(row.userId, MAX_EVENT_ID_BYTES),
    status: row.status,
    previousStatus,
    source,
    occurredAt: occurredAt.toISOString(),
    data: {
      imageUrls: urlsThatFit(row.imageUrls),
      imageCount: row.imageUrls.length,
      completedAt: row.completedAt?.toISOString() ?? null,
      errorMessage: safeNullableText(row.errorMessage, MAX_EVENT_TEXT_BYTES),
    },
  };
}

/** The URLs, in order, while they fit the budget whole: a cut URL would point nowhere. */
function urlsThatFit(urls: string[]): string[] {
  const fitting: string[] = [];
  let bytes = 0;
  for (const url of urls) {
    const safe = safeText(url, MAX_EVENT_IMAGE_URLS_BYTES);
    if (safe !== url) continue; // cut or altered: unusable as a link
    const size = Buffer.byteLength(JSON.stringify(safe)) + 1; // its quotes and the comma
    if (bytes + size > MAX_EVENT_IMAGE_URLS_BYTES) break;
    fitting.push(safe);
    bytes += size;
  }
  return fitting;
}
