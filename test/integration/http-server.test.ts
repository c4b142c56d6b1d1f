import { connect } from 'node:net';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import fc from 'fast-check';
import pLimit from 'p-limit';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { seedModels } from '../../dev/host-schema.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { createHttpServer, type HttpServer } from '../../src/http/server.js';
import { createWebhookHandler } from '../../src/http/webhook.js';
import { createLogger } from '../../src/log.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { createStatusService } from '../../src/status/service.js';
import { documentedTune } from '../support/astria-tune.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { waitUntil } from '../support/daemon.js';

const SECRET = 'http-server-test-secret';
const log = createLogger('silent');

let db: TestDatabase;
let server: HttpServer;
let metrics: Metrics;
let port: number;

beforeAll(async () => {
  db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
  metrics = createMetrics();
  const service = createStatusService({ pool: db.pool });
  server = createHttpServer({
    pool: db.pool,
    metrics,
    log,
    webhook: createWebhookHandler({ secret: SECRET, pool: db.pool, service, log, clock: systemClock, trainingTimeoutMs: 86_400_000 }),
  });
  port = ((await server.listen(0, '127.0.0.1')) as AddressInfo).port;
}, 60_000);

afterAll(async () => {
  await server?.close();
  await db?.drop();
});

/** Sends raw bytes on a fresh connection; resolves with the status code answered (null when none). */
function rawRequest(bytes: Buffer | string, timeoutMs = 2_000): Promise<number | null> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    const done = () => {
      clearTimeout(timer);
      socket.destroy();
      const status = /^HTTP\/1\.[01] (\d{3})/.exec(answer);
      resolve(status ? Number(status[1]) : null);
    };
    const timer = setTimeout(done, timeoutMs);
    socket.on('data', (chunk) => (answer += chunk.toString('latin1')));
    socket.on('close', done);
    socket.on('error', done);
    socket.write(bytes);
  });
}

const request = (method: string, target: string, headers: [string, string][] = []) =>
  rawRequest(`${method} ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\n${headers.map(([n, v]) => `${n}: ${v}\r\n`).join('')}Connection: close\r\n\r\n`);

async function alive(): Promise<boolean> {
  return (await fetch(`http://127.0.0.1:${port}/livez`)).status === 200;
}

describe('the HTTP server against hostile requests', () => {
  it.each(['//[', 'http://[', 'http://a:99999/', 'http://%zz/', '//[/webhooks/astria'])('request target %s: 400, and it keeps serving', async (target) => {
    expect(await request('GET', target)).toBe(400);
    expect(await request('POST', target)).toBe(400);
    expect(await alive()).toBe(true);
  });

  it('arbitrary request targets, methods and headers: never a 5xx, never down (fast-check, 400 runs)', async () => {
    const token = fc.stringMatching(/^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,12}$/);
    const target = fc.oneof(
      fc.string({ unit: 'binary', maxLength: 60 }),
      fc.webUrl({ withQueryParameters: true, withFragments: true }),
      fc.constantFrom('/', '*', '/livez', '/readyz', '/metrics', '/webhooks/astria', `/webhooks/astria?secret=${SECRET}`, '//', '/%', '/%zz', '//[', 'http://[::1', 'http://a:99999/', 'http://%zz/'),
      fc.tuple(fc.constantFrom('/', '//', 'http://', 'http://a:', '/webhooks/astria?'), fc.string({ unit: 'grapheme', maxLength: 30 })).map(([a, b]) => a + b),
    );
    const method = fc.oneof(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'OPTIONS', 'PATCH', 'CONNECT', 'TRACE', 'get'), token);
    // A body announced but never sent would only make the server wait for it.
    const header = fc
      .tuple(fc.oneof(token, fc.string({ maxLength: 12 })), fc.string({ unit: 'binary', maxLength: 40 }))
      .filter(([name]) => !/^(content-length|transfer-encoding)$/i.test(name.trim()));
    await fc.assert(
      fc.asyncProperty(method, target, fc.array(header, { maxLength: 4 }), async (m, t, h) => {
        const status = await request(m, t, h);
        // Every request gets an answer (CONNECT asks for a tunnel: Node hangs up on it) and none is a 5xx.
        if (m.toUpperCase() === 'CONNECT') return;
        expect(status).not.toBeNull();
        expect(status).toBeLessThan(500);
      }),
      { numRuns: 400 },
    );
    expect(await alive()).toBe(true);
  }, 120_000);
});

describe('webhook requests in metrics and logs', () => {
  it('counts every request to the webhook path by the status it got', async () => {
    const counted = async (code: string) =>
      (await metrics.webhookRequests.get()).values.find((value) => value.labels.code === code)?.value ?? 0;
    const before = { '401': await counted('401'), '405': await counted('405'), '400': await counted('400') };
    expect((await fetch(`http://127.0.0.1:${port}/webhooks/astria?secret=wrong`, { method: 'POST', body: '{}' })).status).toBe(401);
    expect((await fetch(`http://127.0.0.1:${port}/webhooks/astria`, { method: 'GET' })).status).toBe(405);
    expect((await fetch(`http://127.0.0.1:${port}/webhooks/astria?secret=${SECRET}`, { method: 'POST', body: 'not json' })).status).toBe(400);
    expect(await counted('401')).toBe(before['401'] + 1);
    expect(await counted('405')).toBe(before['405'] + 1);
    expect(await counted('400')).toBe(before['400'] + 1);
  });
});

describe('a rejected webhook whose client is still sending', () => {
  /**
   * Sends `before` bytes of a chunked body, waits for the answer, then sends `after` more bytes and
   * finishes the body, the way a client that writes its whole body before reading does. Resolves with
   * the answer, whether the server hung up before the body was all sent, and any socket error.
   */
  function sendPastTheAnswer(target: string, before: number, after: number) {
    return new Promise<{ answer: string; hungUpEarly: boolean; error: string | null }>((resolve) => {
      const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      const chunk = `${(64 * 1024).toString(16)}\r\n${'a'.repeat(64 * 1024)}\r\n`;
      let answer = '';
      let bodySent = false;
      let hungUpEarly = false;
      let error: string | null = null;
      socket.on('data', (data) => {
        const first = answer === '';
        answer += data.toString('latin1');
        if (first)
          setTimeout(() => {
            for (let sent = 0; sent < after && !socket.destroyed; sent += 64 * 1024) socket.write(chunk);
            socket.end('0\r\n\r\n', () => (bodySent = true));
          }, 300);
      });
      socket.on('end', () => {
        hungUpEarly = !bodySent;
        socket.end();
      });
      socket.on('error', (cause: NodeJS.ErrnoException) => (error = cause.code ?? cause.message));
      socket.on('close', () => resolve({ answer, hungUpEarly, error }));
      socket.write(`POST ${target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n`);
      for (let sent = 0; sent < before; sent += 64 * 1024) socket.write(chunk);
    });
  }

  // Closing under a client still sending resets the connection, and a client that sees the reset
  // before it reads loses the answer (EPIPE on its next write).
  it.each([
    ['an oversized body (413)', `/webhooks/astria?secret=${SECRET}`, 2 * 1024 * 1024, '413'],
    ['a wrong secret (401)', '/webhooks/astria?secret=wrong', 256 * 1024, '401'],
  ])('%s: answered at once, then the rest is read before the connection closes', async (_name, target, before, code) => {
    const result = await sendPastTheAnswer(target, before, 1024 * 1024);
    expect(result.answer).toMatch(new RegExp(`^HTTP/1\\.1 ${code} `));
    expect(result.answer.toLowerCase()).toContain('connection: close');
    expect({ hungUpEarly: result.hungUpEarly, error: result.error }).toEqual({ hungUpEarly: false, error: null });
  });

  it('a client that never finishes its body is cut off after the linger, not held forever', async () => {
    const socket = connect(port, '127.0.0.1');
    let answer = '';
    socket.on('data', (data) => (answer += data.toString('latin1')));
    socket.write(`POST /webhooks/astria?secret=wrong HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{"a"\r\n`);
    const startedAt = Date.now();
    await new Promise((resolve) => socket.on('close', resolve).on('error', () => undefined));
    expect(answer).toMatch(/^HTTP\/1\.1 401 /);
    expect(Date.now() - startedAt).toBeLessThan(10_000);
  }, 15_000);
});

describe('a callback meeting a row the app holds locked', () => {
  it('is answered 503 once the lock timeout passes, and applied by the next callback once the lock is gone', async () => {
    await seedModels(db.pool, [{ id: 'locked-model', status: 'TRAINING', trainingJobId: '9101', aiProvider: 'astria' }]);
    const callback = () =>
      fetch(`http://127.0.0.1:${port}/webhooks/astria?secret=${SECRET}`, { method: 'POST', body: JSON.stringify(documentedTune({ id: 9101 })) });
    const app = await db.pool.connect();
    try {
      await app.query('BEGIN');
      await app.query(`UPDATE ai_models SET name = 'renamed by the app' WHERE id = 'locked-model'`);
      const response = await callback();
      expect(response.status).toBe(503);
      expect(await response.json()).toMatchObject({ matched: 1, failed: 1 });
    } finally {
      await app.query('ROLLBACK');
      app.release();
    }
    expect((await readModel(db.pool, 'locked-model')).status).toBe('TRAINING');
    expect((await callback()).status).toBe(200);
    expect((await readModel(db.pool, 'locked-model')).status).toBe('READY');
  }, 30_000);
});

describe('the log of rejected requests', () => {
  const REQUESTS = 2_000;
  const userAgent = `flood/${'u'.repeat(15 * 1024)}`;
  let logged: string[];
  let floodMetrics: Metrics;
  let floodServer: HttpServer;
  let floodPort: number;
  // A frozen clock: the rate limit lets its first burst through and nothing more until the clock moves.
  let now = Date.parse('2026-01-01T00:00:00Z');
  const clock = { now: () => now, sleep: systemClock.sleep };

  beforeAll(async () => {
    logged = [];
    const destination = new Writable({
      write(chunk: Buffer, _encoding, callback) {
        logged.push(...chunk.toString('utf8').split('\n').filter((line) => line !== ''));
        callback();
      },
    });
    const floodLog = createLogger('info', destination);
    floodMetrics = createMetrics();
    floodServer = createHttpServer({
      pool: db.pool,
      metrics: floodMetrics,
      log: floodLog,
      clock,
      webhook: createWebhookHandler({ secret: SECRET, pool: db.pool, log: floodLog, clock, trainingTimeoutMs: 86_400_000 }),
    });
    floodPort = ((await floodServer.listen(0, '127.0.0.1')) as AddressInfo).port;
  });

  afterAll(async () => {
    await floodServer?.close();
  });

  const webhookRequestsCounted = async () => (await floodMetrics.webhookRequests.get()).values.reduce((sum, value) => sum + value.value, 0);

  it(`${REQUESTS} rejected requests with a 15 KB user agent: a few short lines, none with the secret, the rest counted`, async () => {
    // Wrong secret (401), wrong method (405), not JSON (400): the secret in the query of each.
    const kinds = [
      { method: 'POST', query: `?secret=guessed-${SECRET}`, body: '{}', status: 401 },
      { method: 'GET', query: `?secret=${SECRET}`, body: undefined, status: 405 },
      { method: 'POST', query: `?secret=${SECRET}`, body: 'not json', status: 400 },
    ];
    const limit = pLimit(16);
    const statuses = await Promise.all(
      Array.from({ length: REQUESTS }, (_, i) =>
        limit(async () => {
          const kind = kinds[i % kinds.length]!;
          const response = await fetch(`http://127.0.0.1:${floodPort}/webhooks/astria${kind.query}`, {
            method: kind.method,
            body: kind.body,
            headers: { 'user-agent': userAgent },
          });
          await response.arrayBuffer();
          return response.status === kind.status;
        }),
      ),
    );
    expect(statuses.every(Boolean)).toBe(true);
    // Every answer's close has been seen (the count and the log line hang on the same event).
    await waitUntil(async () => (await webhookRequestsCounted()) === REQUESTS, 10_000, 'every request counted');

    expect(logged).toHaveLength(5);
    const bytes = logged.reduce((sum, line) => sum + Buffer.byteLength(line), 0);
    expect(bytes).toBeLessThan(5 * 1024);
    for (const line of logged) {
      expect(line).not.toContain(SECRET);
      const entry = JSON.parse(line) as Record<string, unknown>;
      expect(entry).toMatchObject({ msg: 'Astria webhook request rejected', path: '/webhooks/astria', remoteAddress: '127.0.0.1' });
      expect(Buffer.byteLength(entry.userAgent as string)).toBeLessThanOrEqual(200);
      expect(entry.userAgent as string).toMatch(/^flood\/u+…$/);
    }
    for (const line of logged) expect([401, 405, 400]).toContain((JSON.parse(line) as { status: number }).status);

    // A second later the next rejection is logged again, with the count of those left out.
    now += 1_000;
    const response = await fetch(`http://127.0.0.1:${floodPort}/no/such/path?secret=${SECRET}`, { headers: { 'user-agent': userAgent } });
    expect(response.status).toBe(404);
    await waitUntil(() => logged.length === 6, 10_000, 'the next rejection logged');
    expect(logged[5]).not.toContain(SECRET);
    expect(JSON.parse(logged[5]!)).toMatchObject({
      msg: 'HTTP request rejected',
      method: 'GET',
      path: '/no/such/path',
      status: 404,
      reason: 'not found',
      remoteAddress: '127.0.0.1',
      suppressedBefore: REQUESTS - 5,
    });
  }, 120_000);
});
