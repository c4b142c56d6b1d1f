import { Redis, ReplyError } from 'ioredis';
import type { Logger } from '../log.js';
import type { ModelEvent } from '../status/event.js';
import { DeliveryRejectedError, type Transport } from './transport.js';

/** Error replies of a server that is starting, busy or failing over: it is away, not refusing the event. */
const UNAVAILABLE_REPLY = /^(LOADING|BUSY|TRYAGAIN|CLUSTERDOWN|MASTERDOWN)\b/;

export interface RedisTransportOptions {
  url: string;
  channel: string;
  log: Logger;
  /** Connect and command timeout (default 5 s). */
  timeoutMs?: number;
}

/**
 * `PUBLISH`es each event on `BROADCAST_REDIS_CHANNEL`. The client reconnects in the background forever,
 * but never queues a command while disconnected (`enableOfflineQueue: false`, one try per command): a
 * PUBLISH during an outage fails at once and the event stays in our outbox, where it is durable, instead
 * of in an in-memory queue that dies with the process.
 *
 * Redis pub/sub reaches only the subscribers connected at that moment; a subscriber that reconnects must
 * re-read model status rather than expect a replay.
 */
export function createRedisTransport(options: RedisTransportOptions): Transport {
  const timeoutMs = options.timeoutMs ?? 5_000;
  const redis = new Redis(options.url, {
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
    enableOfflineQueue: false,
    maxRetriesPerRequest: 0,
    // Keep trying to reconnect, at most every 5 s; the outbox holds events meanwhile.
    retryStrategy: (times) => Math.min(times * 250, 5_000),
    connectionName: 'astria-reconciler',
  });
  let lastError = '';
  // Without a listener ioredis prints every connection error; log each distinct one once per outage.
  redis.on('error', (error: Error) => {
    if (error.message === lastError) return;
    lastError = error.message;
    options.log.warn({ err: error.message, transport: 'redis' }, 'redis connection error');
  });
  redis.on('ready', () => {
    if (lastError) options.log.info({ transport: 'redis' }, 'redis connection restored');
    lastError = '';
  });
  return {
    name: 'redis',
    async deliver(event: ModelEvent) {
      try {
        await redis.publish(options.channel, JSON.stringify(event));
      } catch (error) {
        // An error reply (NOAUTH, NOPERM, ...) is Redis refusing; no connection or a timeout is Redis away.
        if (error instanceof ReplyError && !UNAVAILABLE_REPLY.test((error as Error).message)) {
          throw new DeliveryRejectedError(`redis refused PUBLISH: ${(error as Error).message}`);
        }
        throw error;
      }
    },
    async close() {
      // quit() waits for replies in flight; disconnect() when the server is unreachable.
      if (redis.status === 'ready') await redis.quit().catch(() => redis.disconnect());
      else redis.disconnect();
    },
  };
}
