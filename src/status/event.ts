import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { MODEL_STATUSES, type ModelStatus, type UpdatedModel } from '../model.js';
import { safeNullableText, safeText } from './sanitize.js';

export type { UpdatedModel } from '../model.js';

/**
 * JSON bytes each app-written string may take in an event: the row's `modelUrl` and `errorMessage`
 * may be anything the app left there, and the whole event (ids, statuses, timestamps and these,
 * about 6.4 kB at most) must fit a NOTIFY payload (`MAX_NOTIFY_PAYLOAD_BYTES`) and a jsonb row.
 */
const MAX_EVENT_TEXT_BYTES = 2_000;
const MAX_EVENT_ID_BYTES = 1_000;

export const EVENT_SOURCES = ['webhook', 'reconciler'] as const;
export type EventSource = (typeof EVENT_SOURCES)[number];

const status = z.enum(MODEL_STATUSES);
const isoTimestamp = z.iso.datetime({ offset: true });

/** The event every broadcast transport carries; consumers parse with this and drop duplicates by `eventId`. */
export const modelStatusChangedEventSchema = z.object({
  type: z.literal('model_status_changed'),
  eventId: z.string().min(1),
  modelId: z.string(),
  userId: z.string(),
  status,
  previousStatus: status,
  progress: z.number().int(),
  source: z.enum(EVENT_SOURCES),
  occurredAt: isoTimestamp,
  data: z.object({
    modelUrl: z.string().nullable(),
    trainedAt: isoTimestamp.nullable(),
    errorMessage: z.string().nullable(),
  }),
});
export type ModelStatusChangedEvent = z.infer<typeof modelStatusChangedEventSchema>;

/** Progress-only updates: sent on the same channel; consumers ignore types they do not know. */
export const modelProgressEventSchema = z.object({
  type: z.literal('model_progress'),
  eventId: z.string().min(1),
  modelId: z.string(),
  userId: z.string(),
  status,
  progress: z.number().int(),
  estimatedTime: z.number().int().nullable(),
  source: z.enum(EVENT_SOURCES),
  occurredAt: isoTimestamp,
});
export type ModelProgressEvent = z.infer<typeof modelProgressEventSchema>;

export type ModelEvent = ModelStatusChangedEvent | ModelProgressEvent;

export function statusChangedEvent(
  row: UpdatedModel,
  previousStatus: ModelStatus,
  source: EventSource,
  occurredAt: Date,
): ModelStatusChangedEvent {
  return {
    type: 'model_status_changed',
    eventId: randomUUID(),
    modelId: safeText(row.id, MAX_EVENT_ID_BYTES),
    userId: safeText(row.userId, MAX_EVENT_ID_BYTES),
    status: row.status,
    previousStatus,
    progress: row.progress,
    source,
    occurredAt: occurredAt.toISOString(),
    data: {
      modelUrl: safeNullableText(row.modelUrl, MAX_EVENT_TEXT_BYTES),
      trainedAt: row.trainedAt?.toISOString() ?? null,
      errorMessage: safeNullableText(row.errorMessage, MAX_EVENT_TEXT_BYTES),
    },
  };
}

export function progressEvent(row: UpdatedModel, source: EventSource, occurredAt: Date): ModelProgressEvent {
  return {
    type: 'model_progress',
    eventId: randomUUID(),
    modelId: safeText(row.id, MAX_EVENT_ID_BYTES),
    userId: safeText(row.userId, MAX_EVENT_ID_BYTES),
    status: row.status,
    progress: row.progress,
    estimatedTime: row.estimatedTime,
    source,
    occurredAt: occurredAt.toISOString(),
  };
}
