import { Agent, request } from 'undici';
import type { ModelEvent } from '../status/event.js';
import { signBody, standardWebhookHeaders } from './signature.js';
import { DeliveryFailedError, DeliveryRejectedError, type Transport } from './transport.js';

export interface HttpTransportOptions {
  url: string;
  secret: string;
  /** Connect, headers and body timeout of one POST (default 10 s). */
  timeoutMs?: number;
}

/** 4xx answers that mean "not now" rather than "not this": timeout, too early, rate limited. */
const RETRYABLE_4XX = new Set([408, 425, 429]);
/** 5xx answers of a receiver that is away (a proxy's bad gateway or timeout, unavailable), not failing on the event. */
const UNAVAILABLE_5XX = new Set([502, 503, 504]);

/**
 * A non-2xx answer that is a rejection of the event: a 4xx other than 408, 425, 429, or a 3xx (redirects
 * are not followed: a signed POST is not re-sent to wherever a receiver points, so a moved receiver, or
 * one redirecting to add a trailing slash, needs BROADCAST_HTTP_URL corrected).
 */
export function isRejection(statusCode: number): boolean {
  if (statusCode >= 300 && statusCode < 400) return true;
  return statusCode >= 400 && statusCode < 500 && !RETRYABLE_4XX.has(statusCode);
}

/** A non-2xx answer that is the receiver failing on the event: a 5xx other than 502, 503, 504. */
export function isFailure(statusCode: number): boolean {
  return statusCode >= 500 && statusCode < 600 && !UNAVAILABLE_5XX.has(statusCode);
}

/** The error a non-2xx answer throws: what it is decides whether the delivery may be parked. */
function answerError(statusCode: number, message: string): Error {
  if (isRejection(statusCode)) return new DeliveryRejectedError(message);
  if (isFailure(statusCode)) return new DeliveryFailedError(message);
  return new Error(message);
}

/**
 * POSTs each event as JSON to `BROADCAST_HTTP_URL`, signed with `BROADCAST_HTTP_SECRET` (Standard
 * Webhooks headers and `X-Signature`, see signature.ts). A 2xx answer is a delivery; anything else
 * (non-2xx, refused connection, timeout) throws and the dispatcher retries.
 * A 3xx or a 4xx other than 408/425/429 is a rejection (parked by attempts or age), a 5xx other than 502/503/504
 * a failure (parked by age); 408/425/429/502/503/504, a refused connection or a timeout is the receiver
 * away and is retried for as long as it takes.
 * Receivers verify the signature over the raw body (`createBroadcastVerifier`) and drop duplicates by `eventId`.
 */
export function createHttpTransport(options: HttpTransportOptions): Transport {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const agent = new Agent({
    connect: { timeout: timeoutMs },
    headersTimeout: timeoutMs,
    bodyTimeout: timeoutMs,
    keepAliveTimeout: 10_000,
  });
  return {
    name: 'http',
    async deliver(event: ModelEvent) {
      const body = JSON.stringify(event);
      const response = await request(options.url, {
        method: 'POST',
        body,
        dispatcher: agent,
        headers: {
          'content-type': 'application/json',
          ...standardWebhookHeaders(body, event.eventId, options.secret, new Date()),
          'x-signature': signBody(body, options.secret),
          'x-event-id': event.eventId,
          'user-agent': 'astria-reconciler',
        },
      });
      // Read the (bounded) answer so the keep-alive connection can be reused.
      const text = await response.body.text().catch(() => '');
      if (response.statusCode < 200 || response.statusCode >= 300) {
        const location = response.headers.location;
        const detail = (location ? `redirect to ${String(location)}` : text.trim()).slice(0, 200);
        const message = `HTTP ${response.statusCode}${detail ? `: ${detail}` : ''}`;
        throw answerError(response.statusCode, message);
      }
    },
    async close() {
      await agent.close();
    },
  };
}
