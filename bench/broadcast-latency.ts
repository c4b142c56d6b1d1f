/**
 * Broadcast latency (issue 5): how long after a status write commits do its subscribers hear of it?
 *
 * 1,000 TRAINING → READY transitions are applied one after another through the real status service
 * (`transports: ['pg', 'http']`) on a scratch PostgreSQL database. Two subscribers, both on loopback:
 *   - LISTEN on `model_status_changed` on a connection of its own (the `pg` transport: NOTIFY in the
 *     write's transaction);
 *   - a node:http receiver (verifying `X-Signature`) fed by the real dispatcher (`createDispatcher` with
 *     `createTransports`), which is `kick()`ed after each apply, as the daemon does.
 * Latency = receipt (the subscriber's callback, performance.now()) − the moment `apply()` resolved,
 * i.e. after COMMIT. A receipt can precede the resolve by a hair (the NOTIFY and the COMMIT answer race
 * on two connections): such latencies are negative and reported as they are.
 * The first WARMUP events (connections being opened) are applied and delivered but not measured.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { pino } from 'pino';
import { createDispatcher } from '../src/broadcast/dispatcher.js';
import { createBroadcastVerifier, createMemoryReplayStore } from '../src/broadcast/signature.js';
import { createTransports } from '../src/broadcast/create-transports.js';
import { seedModels } from '../dev/host-schema.js';
import { createPool } from '../src/db/pool.js';
import type { ApplyResult } from '../src/status/service.js';
import { createStatusService } from '../src/status/service.js';
import { scratchDatabase } from './scenario.js';
import { fixedOrDash, formatGrid, maximum, mean, minimum, percentile, target, type SectionResult } from './stats.js';

const EVENTS = 1_000;
const WARMUP = 20;
const CHANNEL = 'model_status_changed';
const SECRET = 'bench-broadcast-secret';
const TARGET_P99_MS = 50;
const DELIVERY_TIMEOUT_MS = 60_000;
const POOL_SIZE = 10;

interface Receiver {
  url: string;
  receivedAt: Map<string, number>;
  duplicates: number;
  badSignatures: number;
  close(): Promise<void>;
}

async function startReceiver(): Promise<Receiver> {
  const receiver = { receivedAt: new Map<string, number>(), duplicates: 0, badSignatures: 0 };
  // What the library's receivers do: the Standard Webhooks check, with a replay store.
  const verifier = createBroadcastVerifier({ secrets: SECRET, replayStore: createMemoryReplayStore() });
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', async () => {
      const at = performance.now();
      const body = Buffer.concat(chunks);
      if (!(await verifier.verify(body, req.headers)).ok) {
        receiver.badSignatures += 1;
        res.writeHead(401).end();
        return;
      }
      const { eventId } = JSON.parse(body.toString('utf8')) as { eventId: string };
      if (receiver.receivedAt.has(eventId)) receiver.duplicates += 1;
      else receiver.receivedAt.set(eventId, at);
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    ...receiver,
    get duplicates() {
      return receiver.duplicates;
    },
    get badSignatures() {
      return receiver.badSignatures;
    },
    url: `http://127.0.0.1:${port}/broadcast`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

async function startListener(url: string): Promise<{ receivedAt: Map<string, number>; duplicates: () => number; close(): Promise<void> }> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  const receivedAt = new Map<string, number>();
  let duplicates = 0;
  client.on('error', () => undefined);
  client.on('notification', (message) => {
    const at = performance.now();
    if (message.channel !== CHANNEL || !message.payload) return;
    const { eventId } = JSON.parse(message.payload) as { eventId: string };
    if (receivedAt.has(eventId)) duplicates += 1;
    else receivedAt.set(eventId, at);
  });
  await client.query(`LISTEN ${CHANNEL}`);
  return { receivedAt, duplicates: () => duplicates, close: () => client.end() };
}

async function waitUntil(check: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = performance.now() + timeoutMs;
  while (!check()) {
    if (performance.now() > deadline) return false;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  return true;
}

export async function runBroadcastLatency(adminUrl: string): Promise<SectionResult> {
  const database = await scratchDatabase(adminUrl);
  const log = pino({ level: 'silent' });
  const pool = createPool(database.url, log, POOL_SIZE);
  const receiver = await startReceiver();
  const listener = await startListener(database.url);
  const transports = await createTransports(
    { transports: ['pg', 'http'], pgChannel: CHANNEL, httpUrl: receiver.url, httpSecret: SECRET, redisUrl: undefined, redisChannel: CHANNEL },
    log,
  );
  const dispatcher = createDispatcher({ pool, transports, log });
  const stop = new AbortController();
  const dispatching = dispatcher.run(stop.signal);
  try {
    const total = WARMUP + EVENTS;
    const now = Date.now();
    const modelIds = Array.from({ length: total }, (_, index) => `latency-model-${String(index).padStart(5, '0')}`);
    await seedModels(
      database.pool,
      modelIds.map((id, index) => ({
        id,
        userId: `user-${index % 50}`,
        status: 'TRAINING' as const,
        trainingJobId: String(10_000 + index),
        progress: 50,
        createdAt: new Date(now - 60 * 60_000),
        updatedAt: new Date(now - 30 * 60_000),
      })),
    );
    const service = createStatusService({ pool, transports: ['pg', 'http'] });

    const resolvedAt = new Map<string, number>();
    const measured: string[] = [];
    let applyMs = 0;
    const started = performance.now();
    for (let index = 0; index < total; index += 1) {
      const before = performance.now();
      const result: ApplyResult = await service.apply(
        {
          modelId: modelIds[index]!,
          userId: `user-${index % 50}`,
          from: 'TRAINING',
          to: 'READY',
          expected: { trainingJobId: String(10_000 + index), errorMessage: null },
          changes: { progress: 100, trainedAt: new Date(now - 1_000), modelUrl: String(10_000 + index), errorMessage: null, estimatedTime: null },
        },
        'reconciler',
      );
      const at = performance.now();
      applyMs += at - before;
      dispatcher.kick();
      if (!result.applied) throw new Error(`apply on ${modelIds[index]} was not applied`);
      resolvedAt.set(result.event.eventId, at);
      if (index >= WARMUP) measured.push(result.event.eventId);
    }
    const appliedMs = performance.now() - started;
    const allIds = [...resolvedAt.keys()];
    const listenDone = await waitUntil(() => allIds.every((id) => listener.receivedAt.has(id)), DELIVERY_TIMEOUT_MS);
    const httpDone = await waitUntil(() => allIds.every((id) => receiver.receivedAt.has(id)), DELIVERY_TIMEOUT_MS);
    const lastHttp = maximum([...receiver.receivedAt.values()]) ?? started;
    // Let a duplicate, if any, arrive before counting.
    await new Promise((resolve) => setTimeout(resolve, 200));

    const latencies = (received: Map<string, number>) =>
      measured.filter((id) => received.has(id)).map((id) => received.get(id)! - resolvedAt.get(id)!);
    const listen = latencies(listener.receivedAt);
    const http = latencies(receiver.receivedAt);
    const ms = (value: number | null) => fixedOrDash(value, 2);
    const row = (name: string, values: number[], received: Map<string, number>, duplicates: number) => [
      name,
      `${values.length}/${EVENTS}`,
      String(measured.length - values.length),
      String(duplicates),
      ms(percentile(values, 0.5)),
      ms(percentile(values, 0.9)),
      ms(percentile(values, 0.99)),
      ms(maximum(values)),
      ms(minimum(values)),
      ms(mean(values)),
      String(values.filter((value) => value < 0).length),
      String([...received.keys()].filter((id) => !resolvedAt.has(id)).length),
    ];
    const grid = formatGrid([
      ['transport', 'received', 'missing', 'dups', 'p50 ms', 'p90 ms', 'p99 ms', 'max ms', 'min ms', 'mean ms', '<0', 'unknown ids'],
      row('pg (LISTEN, same-tx NOTIFY)', listen, listener.receivedAt, listener.duplicates()),
      row('http (outbox → dispatcher → POST)', http, receiver.receivedAt, receiver.duplicates),
    ]);
    // A burst of slow receipts means one stall (GC, a busy CPU, a slow statement); scattered ones, a pattern.
    const slowRuns = (received: Map<string, number>) => {
      const slow = measured
        .map((id, index) => ({ index, latency: received.has(id) ? received.get(id)! - resolvedAt.get(id)! : Infinity }))
        .filter(({ latency }) => latency > TARGET_P99_MS);
      if (slow.length === 0) return 'none';
      return `${slow.length} (events #${slow[0]!.index}–#${slow.at(-1)!.index} of ${EVENTS})`;
    };
    const text = [
      `Broadcast latency: ${EVENTS} TRAINING → READY transitions (after ${WARMUP} unmeasured warm-up ones) applied sequentially through createStatusService({ transports: ['pg','http'] }),`,
      `dispatcher kick()ed after each apply; LISTEN client and node:http receiver on loopback, same process. Latency = receipt − apply() resolved (after COMMIT).`,
      '',
      grid,
      '',
      `applies: ${total} in ${(appliedMs / 1000).toFixed(2)} s (mean ${(applyMs / total).toFixed(2)} ms each, ${(total / (appliedMs / 1000)).toFixed(0)} events/s); ` +
        `last HTTP delivery ${((lastHttp - started - appliedMs) / 1000).toFixed(3)} s after the last apply; bad signatures: ${receiver.badSignatures}`,
      `receipts slower than ${TARGET_P99_MS} ms: LISTEN ${slowRuns(listener.receivedAt)}; HTTP ${slowRuns(receiver.receivedAt)}`,
    ].join('\n');
    const p99 = (values: number[]) => percentile(values, 0.99);
    const targets = [
      target(`latency: LISTEN received all ${EVENTS}, none twice`, listenDone && listen.length === EVENTS && listener.duplicates() === 0, `${listen.length} received, ${listener.duplicates()} dups`),
      target(`latency: HTTP received all ${EVENTS}, none twice`, httpDone && http.length === EVENTS && receiver.duplicates === 0, `${http.length} received, ${receiver.duplicates} dups`),
      target(`latency: LISTEN p99 ≤ ${TARGET_P99_MS} ms`, (p99(listen) ?? Infinity) <= TARGET_P99_MS, `${ms(p99(listen))} ms`),
      target(`latency: HTTP p99 ≤ ${TARGET_P99_MS} ms`, (p99(http) ?? Infinity) <= TARGET_P99_MS, `${ms(p99(http))} ms`),
    ];
    return { text, targets };
  } finally {
    stop.abort();
    await dispatching;
    await Promise.allSettled(transports.map((transport) => transport.close()));
    await listener.close();
    await receiver.close();
    await pool.end();
    await database.drop();
  }
}
