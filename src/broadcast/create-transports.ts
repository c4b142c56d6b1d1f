import type { Config } from '../config.js';
import type { Logger } from '../log.js';
import { createHttpTransport } from './http.js';
import type { Transport } from './transport.js';

/**
 * The asynchronous transports `BROADCAST` names (`pg` needs none: the status service NOTIFYs inside
 * its transaction). `loadConfig` has already required the URL and secret each one needs. The redis
 * adapter is imported only when named, so `ioredis` (an optional peer dependency) is needed only then.
 */
export async function createTransports(
  broadcast: Pick<Config['broadcast'], 'transports' | 'pgChannel' | 'httpUrl' | 'httpSecret' | 'redisUrl' | 'redisChannel'>,
  log: Logger,
): Promise<Transport[]> {
  const transports: Transport[] = [];
  if (broadcast.transports.includes('http')) {
    if (!broadcast.httpUrl || !broadcast.httpSecret) throw new Error('BROADCAST_HTTP_URL and BROADCAST_HTTP_SECRET are required for http');
    transports.push(createHttpTransport({ url: broadcast.httpUrl, secret: broadcast.httpSecret }));
  }
  if (broadcast.transports.includes('redis')) {
    if (!broadcast.redisUrl) throw new Error('REDIS_URL is required for redis');
    const { createRedisTransport } = await importRedisAdapter();
    transports.push(createRedisTransport({ url: broadcast.redisUrl, channel: broadcast.redisChannel, log }));
  }
  return transports;
}

async function importRedisAdapter(): Promise<typeof import('./redis.js')> {
  try {
    return await import('./redis.js');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((error as Error).message).includes("'ioredis'")) {
      throw new Error('BROADCAST names redis, which needs the ioredis package next to astria-reconciler: npm install ioredis');
    }
    throw error;
  }
}
