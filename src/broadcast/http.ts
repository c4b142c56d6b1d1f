import { Agent, request } from 'undici';
import type { ModelEvent } from '../status/event.js';
import { signBody } from './signature.js';
import type { Transport } from './transport.js';

export interface HttpTransportOptions {
  url: string;
  secret: string;
  /** Connect, headers and body timeout of one POST (default 10 s). */
  timeoutMs?: number;
}

export class HttpDeliveryError extends Error {
  override name = 'HttpDeliveryError';
  constructor(
    message: string,
    readonly statusCode?: number,
  ) {
    super(message);
  }
}

/**
 * POSTs each event as JSON to `BROADCAST_HTTP_URL`, signed with `BROADCAST_HTTP_SECRET`. A 2xx answer is
 * a delivery; anything else (non-2xx, refused connection, timeout) throws and the dispatcher retries.
 * Receivers verify the signature over the raw body and drop duplicates by `eventId`.
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
          'x-signature': signBody(body, options.secret),
          'x-event-id': event.eventId,
          'user-agent': 'astria-reconciler',
        },
      });
      // Read the (bounded) answer so the keep-alive connection can be reused.
      const text = await response.body.text().catch(() => '');
      if (response.statusCode < 200 || response.statusCode >= 300) {
        const detail = text.trim().slice(0, 200);
        throw new HttpDeliveryError(`HTTP ${response.statusCode}${detail ? `: ${detail}` : ''}`, response.statusCode);
      }
    },
    async close() {
      await agent.close();
    },
  };
}
