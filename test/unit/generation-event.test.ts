import { describe, expect, it } from 'vitest';
import {
  generationStatusChangedEvent,
  generationStatusChangedEventSchema,
  type UpdatedGeneration,
} from '../../src/status/generation-event.js';
import { MAX_NOTIFY_PAYLOAD_BYTES } from '../../src/status/sanitize.js';

const OCCURRED = new Date('2026-03-01T12:00:05.250Z');
const IMAGES = ['https://sdbooth2-production.s3.amazonaws.com/a.jpg', 'https://sdbooth2-production.s3.amazonaws.com/b.jpg'];

const completed: UpdatedGeneration = {
  id: 'gen_1',
  userId: 'user_1',
  modelId: 'model_1',
  status: 'COMPLETED',
  imageUrls: IMAGES,
  completedAt: new Date('2026-03-01T12:00:01.000Z'),
  errorMessage: null,
};

describe('generationStatusChangedEvent', () => {
  it('reports the updated row in the documented shape, which the schema accepts', () => {
    const event = generationStatusChangedEvent(completed, 'PROCESSING', 'reconciler', OCCURRED);
    expect(event).toEqual({
      type: 'generation_status_changed',
      eventId: expect.stringMatching(/^[0-9a-f-]{36}$/),
      generationId: 'gen_1',
      modelId: 'model_1',
      userId: 'user_1',
      status: 'COMPLETED',
      previousStatus: 'PROCESSING',
      source: 'reconciler',
      occurredAt: '2026-03-01T12:00:05.250Z',
      data: { imageUrls: IMAGES, imageCount: 2, completedAt: '2026-03-01T12:00:01.000Z', errorMessage: null },
    });
    expect(generationStatusChangedEventSchema.parse(JSON.parse(JSON.stringify(event)))).toEqual(event);
  });

  it('gives every event its own id', () => {
    const first = generationStatusChangedEvent(completed, 'PROCESSING', 'webhook', OCCURRED);
    const second = generationStatusChangedEvent(completed, 'PROCESSING', 'webhook', OCCURRED);
    expect(first.eventId).not.toBe(second.eventId);
  });

  it('reports a failure with its message, and a generation without a model', () => {
    const event = generationStatusChangedEvent(
      { ...completed, modelId: null, status: 'FAILED', imageUrls: [], completedAt: null, errorMessage: 'Astria prompt 9 not found' },
      'PENDING',
      'webhook',
      OCCURRED,
    );
    expect(event).toMatchObject({
      modelId: null,
      status: 'FAILED',
      previousStatus: 'PENDING',
      data: { imageUrls: [], imageCount: 0, completedAt: null, errorMessage: 'Astria prompt 9 not found' },
    });
    expect(generationStatusChangedEventSchema.safeParse(event).success).toBe(true);
  });

  it('carries whole URLs only: as many as fit, in order, with the count of all', () => {
    const many = Array.from({ length: 60 }, (_, index) => `https://sdbooth2-production.s3.amazonaws.com/${String(index).padStart(3, '0')}.jpg`);
    const event = generationStatusChangedEvent({ ...completed, imageUrls: many }, 'PROCESSING', 'reconciler', OCCURRED);
    expect(event.data.imageCount).toBe(60);
    expect(event.data.imageUrls.length).toBeGreaterThan(20);
    expect(event.data.imageUrls.length).toBeLessThan(60);
    expect(event.data.imageUrls).toEqual(many.slice(0, event.data.imageUrls.length));
  });

  it('drops a URL it would have to alter (a NUL, or longer than the whole budget)', () => {
    const event = generationStatusChangedEvent(
      { ...completed, imageUrls: ['https://cdn.test/a\u0000.jpg', `https://cdn.test/${'x'.repeat(10_000)}`, IMAGES[0]!] },
      'PROCESSING',
      'reconciler',
      OCCURRED,
    );
    expect(event.data).toMatchObject({ imageUrls: [IMAGES[0]], imageCount: 3 });
  });

  it('the largest event (every string at its bound, all escapes) stays within MAX_NOTIFY_PAYLOAD_BYTES', () => {
    // A control character takes 6 JSON bytes: the worst any text can do against a byte bound.
    const huge = '\u0001'.repeat(20_000);
    const event = generationStatusChangedEvent(
      {
        id: huge,
        userId: huge,
        modelId: huge,
        status: 'FAILED',
        imageUrls: Array.from({ length: 2_000 }, () => '\u0001'),
        completedAt: new Date(),
        errorMessage: huge,
      },
      'PROCESSING',
      'reconciler',
      new Date(),
    );
    expect(event.data.imageUrls.length).toBeGreaterThan(0);
    expect(Buffer.byteLength(JSON.stringify(event))).toBeLessThanOrEqual(MAX_NOTIFY_PAYLOAD_BYTES);
  });
});
