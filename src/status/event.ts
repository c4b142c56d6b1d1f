import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { MODEL_STATUSES, type ModelStatus } from './rules.js';

const MAX_EVENT_ERROR_MESSAGE_LENGTH = 1_000;

export const EVENT_SOURCES = ['webhook', 'reconciler'] as const;
export type EventSource = (typeof EVENT_SOURCES)[number];

/** The columns of the updated row an event reports. */
export interface UpdatedModel {
  id: string;
  userId: string;
  status: ModelStatus;
  progress: number;
  modelUrl: string | null;
  trainedAt: Date | null;
  errorMessage: string | null;
  estimatedTime: number | null;
}

const status = z.enum(MODEL_STATUSES);
const isoTimestamp = z.iso.datetime({ offset: true });

/** The broadcast of SPEC.md; consumers parse with this and drop duplicates by `eventId`. */
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
    modelId: row.id,
    userId: row.userId,
    status: row.status,
    previousStatus,
    progress: row.progress,
    source,
    occurredAt: occurredAt.toISOString(),
    data: {
      modelUrl: row.modelUrl,
      trainedAt: row.trainedAt?.toISOString() ?? null,
      // The app may have left a long message of its own on the row: NOTIFY payloads stop at 8000 bytes.
      errorMessage: row.errorMessage === null ? null : row.errorMessage.slice(0, MAX_EVENT_ERROR_MESSAGE_LENGTH),
    },
  };
}

export function progressEvent(row: UpdatedModel, source: EventSource, occurredAt: Date): ModelProgressEvent {
  return {
    type: 'model_progress',
    eventId: randomUUID(),
    modelId: row.id,
    userId: row.userId,
    status: row.status,
    progress: row.progress,
    estimatedTime: row.estimatedTime,
    source,
    occurredAt: occurredAt.toISOString(),
  };
}
