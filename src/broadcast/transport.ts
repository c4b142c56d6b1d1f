import type { AsyncBroadcastTransport } from '../config.js';
import type { ModelEvent } from '../status/event.js';

/**
 * The peer answered and failed on this event (an HTTP 5xx other than 502/503/504). It may be this event
 * that breaks the receiver, and the model's later events wait behind it, so it is parked once older than
 * `BROADCAST_DEAD_AFTER`; never by attempts, which pile up at the capped backoff within a short episode.
 */
export class DeliveryFailedError extends Error {
  override name = 'DeliveryFailedError';
}

/**
 * The peer answered and refused this event (an HTTP 4xx, a Redis error reply): parked after
 * `BROADCAST_DEAD_AFTER_ATTEMPTS` attempts too. A peer that is down, unreachable or unavailable
 * (502/503/504) is waited for, however long.
 */
export class DeliveryRejectedError extends DeliveryFailedError {
  override name = 'DeliveryRejectedError';
}

/**
 * An asynchronous broadcast transport: the dispatcher hands it one event at a time from the outbox.
 * `deliver` resolves once the peer has accepted the event and throws otherwise (the dispatcher retries
 * with backoff); it must give up within a bounded time of its own (a timeout), never hang. It throws a
 * `DeliveryFailedError` (or its `DeliveryRejectedError`) when the peer answered and failed on the event;
 * anything else thrown means the peer is away, which never parks a delivery.
 */
export interface Transport {
  name: AsyncBroadcastTransport;
  deliver(event: ModelEvent): Promise<void>;
  close(): Promise<void>;
}
