import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDispatcher } from '../../src/broadcast/dispatcher.js';
import { createRedisTransport } from '../../src/broadcast/redis.js';
import { DeliveryRejectedError } from '../../src/broadcast/transport.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { createLogger } from '../../src/log.js';
import type { ModelEvent } from '../../src/status/event.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { advance, readEventLog, seedProcessing } from '../support/events.js';
import { eventually, freePort } from '../support/receiver.js';

const REDIS_URL = process.env.TEST_REDIS_URL ?? 'redis://127.0.0.1:6379';
const log = createLogger('silent');

/** Null when Redis answers PING within 1 s, else why not. */
async function redisUnavailable(): Promise<string | null> {
  const probe = new Redis(REDIS_URL, { lazyConnect: true, connectTimeout: 1_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
  let cause = '';
  probe.on('error', (error: Error) => (cause ||= error.message));
  try {
    await probe.connect();
    await probe.ping();
    return null;
  } catch (error) {
    return `${REDIS_URL} unreachable (${cause || (error as Error).message})`;
  } finally {
    probe.disconnect();
  }
}

const unavailable = await redisUnavailable();
if (unavailable) console.log(`skipping Redis transport test: ${unavailable}`);

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
});
afterAll(() => db.drop());

describe('redis transport', () => {
  it.skipIf(unavailable !== null)('PUBLISHes every event to a real Redis subscriber, in order per model', async () => {
    const channel = `model_status_changed_${randomBytes(4).toString('hex')}`;
    const subscriber = new Redis(REDIS_URL);
    const received: Record<string, unknown>[] = [];
    subscriber.on('message', (from: string, message: string) => {
      if (from === channel) received.push(JSON.parse(message) as Record<string, unknown>);
    });
    await subscriber.subscribe(channel);
    const transport = createRedisTransport({ url: REDIS_URL, channel, log });
    const service = createStatusService({ pool: db.pool, transports: ['pg', 'redis'] });
    const dispatcher = createDispatcher({ pool: db.pool, transports: [transport], log, pollIntervalMs: 100 });
    const stop = new AbortController();
    const running = dispatcher.run(stop.signal);

    const models = await seedProcessing(db.pool, 'redis', 4, 50_000);
    for (const stage of ['started', 'failed', 'trained'] as const) {
      for (const [, tuneId] of models) await advance(db.pool, service, tuneId, stage);
      dispatcher.kick();
    }
    const eventLog = await readEventLog(db.pool);
    await eventually(() => received.length >= eventLog.payloads.size, 5_000, 'every event on the Redis channel');
    stop.abort();
    await running;
    await transport.close();
    subscriber.disconnect();

    expect(eventLog.payloads.size).toBe(12);
    expect(new Set(received.map((event) => event.eventId))).toEqual(new Set(eventLog.payloads.keys()));
    for (const event of received) expect(event).toEqual(eventLog.payloads.get(String(event.eventId)));
    for (const [modelId, eventIds] of eventLog.byModel) {
      expect(received.filter((event) => event.modelId === modelId).map((event) => event.eventId)).toEqual(eventIds);
    }
  });

  it.skipIf(unavailable !== null)('a PUBLISH error reply is a rejection (may be parked); an unreachable Redis is not', async () => {
    const admin = new Redis(REDIS_URL);
    const user = `astria_nopub_${randomBytes(4).toString('hex')}`;
    // A user that may connect but not PUBLISH: Redis answers -NOPERM.
    await admin.call('ACL', 'SETUSER', user, 'on', '>pw', '~*', '&*', '-@all', '+@connection');
    const url = new URL(REDIS_URL);
    url.username = user;
    url.password = 'pw';
    const refused = createRedisTransport({ url: url.toString(), channel: 'x', log });
    const away = createRedisTransport({ url: `redis://127.0.0.1:${await freePort()}`, channel: 'x', log, timeoutMs: 500 });
    try {
      await eventually(async () => {
        const error = await refused.deliver(sampleEvent()).then(() => null, (caught: unknown) => caught);
        return error instanceof DeliveryRejectedError && /NOPERM/.test(error.message);
      }, 5_000, 'PUBLISH refused with NOPERM');
      const error = await away.deliver(sampleEvent()).then(() => null, (caught: unknown) => caught);
      expect(error).toBeInstanceOf(Error);
      expect(error).not.toBeInstanceOf(DeliveryRejectedError);
    } finally {
      await Promise.all([refused.close(), away.close()]);
      await admin.call('ACL', 'DELUSER', user);
      admin.disconnect();
    }
  });

  it('fails fast while Redis is unreachable (no offline queue), leaving the event in the outbox', async () => {
    const port = await freePort();
    // A minute's timeout: a client queueing the command until Redis is back would wait all of it.
    const transport = createRedisTransport({ url: `redis://127.0.0.1:${port}`, channel: 'x', log, timeoutMs: 60_000 });
    const started = Date.now();
    await expect(transport.deliver(sampleEvent())).rejects.toThrow();
    expect(Date.now() - started).toBeLessThan(30_000);
    await transport.close();
  });
});

function sampleEvent(): ModelEvent {
  return {
    type: 'model_status_changed',
    eventId: 'e-1',
    modelId: 'm',
    userId: 'u',
    status: 'READY',
    previousStatus: 'TRAINING',
    progress: 100,
    source: 'reconciler',
    occurredAt: new Date().toISOString(),
    data: { modelUrl: '1', trainedAt: new Date().toISOString(), errorMessage: null },
  };
}
