import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as realSleep } from 'node:timers/promises';
import { MockAgent, type Interceptable } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { RequestBudget } from '../../src/astria/budget.js';
import {
  AstriaAuthError,
  createAstriaClient,
  parseRetryAfter,
  type AstriaClient,
  type AstriaClientOptions,
} from '../../src/astria/client.js';
import type { Clock } from '../../src/clock.js';
import { createLogger } from '../../src/log.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { documentedPrompt } from '../support/astria-prompt.js';
import { documentedTune } from '../support/astria-tune.js';

const API_URL = 'https://api.astria.test';
const API_KEY = 'sd_S3CRET_k3y_do_not_log_7f4a9c';
const T0 = Date.parse('2026-03-01T12:00:00.000Z');

/**
 * A clock that never waits for real: every `sleep` is recorded and resolves on the next macrotask,
 * earliest deadline first, moving `now` to its deadline. Timings are exact and tests stay fast.
 */
class FakeClock implements Clock {
  private t = T0;
  private seq = 0;
  readonly sleeps: number[] = [];
  private timers: { at: number; seq: number; resolve: () => void }[] = [];

  now(): number {
    return this.t;
  }

  advance(ms: number): void {
    this.t += ms;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) return reject(signal.reason);
      const timer = { at: this.t + Math.max(0, ms), seq: this.seq++, resolve };
      this.timers.push(timer);
      signal?.addEventListener(
        'abort',
        () => {
          this.timers = this.timers.filter((other) => other !== timer);
          reject(signal.reason);
        },
        { once: true },
      );
      setImmediate(() => this.fireNext());
    });
  }

  private fireNext(): void {
    this.timers.sort((a, b) => a.at - b.at || a.seq - b.seq);
    const next = this.timers.shift();
    if (!next) return;
    this.t = Math.max(this.t, next.at);
    next.resolve();
  }
}

/** Astria's documented tune object for `id`, with its own `url` and the optional `callback`. */
function tuneBody(id: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return documentedTune({
    id,
    url: `https://www.astria.ai/tunes/${id}.json`,
    callback: `https://app.test/hooks/astria?model=${id}&secret=callback-secret`,
    ...extra,
  });
}

interface RecordedRequest {
  path: string;
  at: number;
  headers: Record<string, string>;
}

function normalizeHeaders(raw: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  if (Array.isArray(raw)) {
    for (let i = 0; i + 1 < raw.length; i += 2) out[String(raw[i]).toLowerCase()] = String(raw[i + 1]);
  } else if (raw instanceof Headers) {
    raw.forEach((value, name) => (out[name.toLowerCase()] = value));
  } else if (raw && typeof raw === 'object') {
    for (const [name, value] of Object.entries(raw)) out[name.toLowerCase()] = String(value);
  }
  return out;
}

interface Harness {
  client: AstriaClient;
  pool: Interceptable;
  agent: MockAgent;
  clock: FakeClock;
  metrics: Metrics;
  log: ReturnType<typeof createLogger>;
  logText: () => string;
  logEntries: () => Record<string, unknown>[];
  requests: RecordedRequest[];
  /** Intercepts `GET path` once (or `times`), records the request and answers `status` with `data`. */
  reply: (
    path: string | ((path: string) => boolean),
    status: number,
    data?: unknown,
    headers?: Record<string, string>,
    times?: number,
  ) => void;
}

const agents: MockAgent[] = [];

afterEach(async () => {
  for (const agent of agents.splice(0)) await agent.close();
});

function setup(overrides: Partial<AstriaClientOptions> = {}, logLevel = 'trace'): Harness {
  const agent = new MockAgent();
  agent.disableNetConnect();
  agents.push(agent);
  const pool = agent.get(API_URL);
  const clock = new FakeClock();
  const metrics = createMetrics();
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, callback) {
      chunks.push(chunk.toString());
      callback();
    },
  });
  const log = createLogger(logLevel, stream);
  const client = createAstriaClient({
    apiUrl: API_URL,
    apiKey: API_KEY,
    maxRps: 10,
    concurrency: 4,
    timeoutMs: 5_000,
    log,
    metrics,
    clock,
    dispatcher: agent,
    ...overrides,
  });
  const requests: RecordedRequest[] = [];
  const logText = () => chunks.join('');
  return {
    client,
    pool,
    agent,
    clock,
    metrics,
    log,
    requests,
    logText,
    logEntries: () =>
      logText()
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    reply(path, status, data = '', headers = {}, times = 1) {
      pool
        .intercept({ path, method: 'GET' })
        .reply((opts) => {
          requests.push({ path: opts.path, at: clock.now(), headers: normalizeHeaders(opts.headers) });
          return {
            statusCode: status,
            data: typeof data === 'string' ? data : JSON.stringify(data),
            responseOptions: { headers: { 'content-type': 'application/json', ...headers } },
          };
        })
        .times(times);
    },
  };
}

async function requestCounts(metrics: Metrics): Promise<Record<string, number>> {
  const { values } = await metrics.astriaRequests.get();
  // Every series exists from the start at 0: only those that counted something say what happened.
  return Object.fromEntries(
    values.filter((value) => value.value > 0).map((value) => [`${value.labels.endpoint}:${value.labels.outcome}`, value.value]),
  );
}

function gaps(requests: RecordedRequest[]): number[] {
  return requests.slice(1).map((request, index) => request.at - requests[index]!.at);
}

describe('ASTRIA_API_KEY_FILE', () => {
  it('sends the key the file holds now: a rotated Secret is used without a restart, never logged', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'astria-key-'));
    const file = join(dir, 'key');
    await writeFile(file, 'sd_old_key\n');
    const h = setup({ apiKey: 'sd_old_key', apiKeyFile: file });
    h.reply('/tunes/1', 401, { error: 'bad key' });
    await expect(h.client.getTune('1')).rejects.toThrow(/ASTRIA_API_KEY_FILE/);

    // The kubelet swaps the file in place; a later mtime is what tells us.
    await writeFile(file, 'sd_new_key\n');
    await utimes(file, new Date(), new Date(Date.now() + 5_000));
    h.reply('/tunes/1', 200, tuneBody(1));
    expect((await h.client.getTune('1')).kind).toBe('tune');
    expect(h.requests.map((request) => request.headers.authorization)).toEqual(['Bearer sd_old_key', 'Bearer sd_new_key']);

    // A file that disappears keeps the last good key.
    await rm(dir, { recursive: true });
    h.reply('/tunes/1', 200, tuneBody(1));
    expect((await h.client.getTune('1')).kind).toBe('tune');
    expect(h.requests.at(-1)!.headers.authorization).toBe('Bearer sd_new_key');
    expect(h.logText()).toContain('ASTRIA_API_KEY_FILE changed');
    expect(h.logText()).not.toMatch(/sd_old_key|sd_new_key/);
  });
});

describe('AstriaClient.getTune', () => {
  it('returns the tune with parsed dates, unknown fields passed through, sent with the Bearer key', async () => {
    const h = setup();
    h.reply('/tunes/788416', 200, tuneBody(788416));

    const result = await h.client.getTune('788416');

    expect(result.kind).toBe('tune');
    if (result.kind !== 'tune') throw new Error('unreachable');
    const tune = result.tune as Record<string, unknown> & typeof result.tune;
    expect(tune.id).toBe(788416);
    expect(tune.title).toBe('John Doe');
    expect(tune.trained_at).toEqual(new Date('2023-10-02T14:32:40.363Z'));
    expect(tune.started_training_at).toEqual(new Date('2023-10-02T14:32:05.229Z'));
    expect(tune.eta).toBeInstanceOf(Date);
    expect(tune.created_at).toBe('2023-10-02T14:32:05.067Z'); // the rules never read it: untouched
    // Fields the schema does not declare are kept as Astria sent them.
    expect(tune.branch).toBe('sdxl1');
    expect(tune.model_type).toBe('lora');
    expect(tune.callback).toBe('https://app.test/hooks/astria?model=788416&secret=callback-secret');
    expect(tune.ckpt_urls).toEqual(['https://example.test/mock']);
    expect(tune.expires_at).toBe('2023-11-01T14:32:40.363Z');

    expect(h.requests).toHaveLength(1);
    expect(h.requests[0]!.path).toBe('/tunes/788416');
    expect(h.requests[0]!.headers.authorization).toBe(`Bearer ${API_KEY}`);
    expect(h.client.calls).toBe(1);
    h.agent.assertNoPendingInterceptors();
  });

  it('accepts null timestamps and a string id of digits', async () => {
    const h = setup();
    h.reply('/tunes/42', 200, tuneBody(42, { id: '42', trained_at: null, eta: null, started_training_at: null }));
    const result = await h.client.getTune('42');
    expect(result).toMatchObject({ kind: 'tune', tune: { id: 42, trained_at: null, eta: null, started_training_at: null } });
  });

  it('reports 404 as gone, without retrying', async () => {
    const h = setup();
    h.reply('/tunes/7', 404, { error: 'Not found' });
    expect(await h.client.getTune('7')).toEqual({ kind: 'gone', tuneId: '7' });
    expect(h.client.calls).toBe(1);
    expect(h.clock.sleeps).toEqual([]);
  });

  it.each(['abc', '12a', '', '0012', '0', '-1', ' 12', '12 ', '1.5', '1e3', '1234567890123456', '../tunes/1', '12/../13'])(
    'never sends a non-id trainingJobId %j to Astria',
    async (tuneId) => {
      const h = setup();
      const result = await h.client.getTune(tuneId);
      expect(result.kind).toBe('failed');
      if (result.kind === 'failed') expect(result.reason).toContain('not an Astria tune id');
      expect(h.client.calls).toBe(0);
      expect(h.requests).toHaveLength(0);
      expect(await requestCounts(h.metrics)).toEqual({});
    },
  );

  it('fails when Astria answers a different tune than the one asked for', async () => {
    const h = setup();
    h.reply('/tunes/5', 200, tuneBody(6));
    const result = await h.client.getTune('5');
    expect(result).toMatchObject({ kind: 'failed' });
  });

  it('retries 500, 502 and 503 with growing backoff, then returns the tune', async () => {
    const h = setup(); // default policy: 4 attempts, base 1 s (virtual time)
    h.reply('/tunes/11', 500, { error: 'boom' });
    h.reply('/tunes/11', 502, 'Bad Gateway');
    h.reply('/tunes/11', 503, { message: 'unavailable' });
    h.reply('/tunes/11', 200, tuneBody(11));

    const result = await h.client.getTune('11');

    expect(result).toMatchObject({ kind: 'tune', tune: { id: 11 } });
    expect(h.requests).toHaveLength(4);
    expect(h.client.calls).toBe(4);
    const [first, second, third] = gaps(h.requests);
    // Full-jitter halves: [base*2^n / 2, base*2^n]
    expect(first).toBeGreaterThanOrEqual(500);
    expect(first).toBeLessThanOrEqual(1_000);
    expect(second).toBeGreaterThanOrEqual(1_000);
    expect(second).toBeLessThanOrEqual(2_000);
    expect(third).toBeGreaterThanOrEqual(2_000);
    expect(third).toBeLessThanOrEqual(4_000);
    expect(await requestCounts(h.metrics)).toEqual({ 'get_tune:server_error': 3, 'get_tune:ok': 1 });
    h.agent.assertNoPendingInterceptors();
  });

  it('gives up after `attempts` tries of repeated 500s, without a trailing wait', async () => {
    const h = setup({ retry: { attempts: 3 } });
    h.reply('/tunes/12', 500, { error: 'boom' }, {}, 3);
    // A fourth request would find this interceptor (and fail the assertion below).
    h.reply('/tunes/12', 200, tuneBody(12));

    const result = await h.client.getTune('12');

    expect(result.kind).toBe('failed');
    if (result.kind === 'failed') {
      expect(result.reason).toContain('HTTP 500');
      expect(result.reason).toContain('after 3 attempts');
    }
    expect(h.requests).toHaveLength(3);
    expect(h.client.calls).toBe(3);
    expect(h.clock.sleeps).toHaveLength(2); // between attempts only
    expect(h.agent.pendingInterceptors()).toHaveLength(1);
  });

  it('retries a 504 gateway timeout, waiting longer than after a 500', async () => {
    const h = setup();
    h.reply('/tunes/21', 500, { error: 'boom' });
    h.reply('/tunes/21', 200, tuneBody(21));
    h.reply('/tunes/22', 504, 'Gateway Timeout');
    h.reply('/tunes/22', 200, tuneBody(22));

    expect(await h.client.getTune('21')).toMatchObject({ kind: 'tune' });
    expect(await h.client.getTune('22')).toMatchObject({ kind: 'tune' });

    const [after500, , after504] = gaps(h.requests);
    expect(after500).toBeGreaterThanOrEqual(500);
    expect(after500).toBeLessThanOrEqual(1_000);
    expect(after504).toBeGreaterThanOrEqual(2_000); // not at once: four times the usual backoff
    expect(after504).toBeGreaterThan(after500!);
    expect(await requestCounts(h.metrics)).toMatchObject({ 'get_tune:gateway_timeout': 1, 'get_tune:server_error': 1 });
  });

  it('pauses for Retry-After after a 429, then succeeds', async () => {
    const h = setup();
    h.reply('/tunes/31', 429, { error: 'Too Many Requests' }, { 'retry-after': '1' });
    h.reply('/tunes/31', 200, tuneBody(31));

    const result = await h.client.getTune('31');

    expect(result).toMatchObject({ kind: 'tune', tune: { id: 31 } });
    expect(h.requests).toHaveLength(2);
    expect(h.requests[1]!.at - h.requests[0]!.at).toBe(1_000);
    expect(h.clock.sleeps).toEqual([1_000]);
    expect(await requestCounts(h.metrics)).toEqual({ 'get_tune:rate_limited': 1, 'get_tune:ok': 1 });
  });

  it('pauses with a backoff after a 429 without Retry-After', async () => {
    const h = setup();
    h.reply('/tunes/32', 429, '');
    h.reply('/tunes/32', 200, tuneBody(32));
    expect(await h.client.getTune('32')).toMatchObject({ kind: 'tune' });
    const [pause] = gaps(h.requests);
    expect(pause).toBeGreaterThanOrEqual(500);
    expect(pause).toBeLessThanOrEqual(1_000);
  });

  it('slows every later request down after a 429 (lower shared rate)', async () => {
    const h = setup({ maxRps: 10 });
    for (const id of [41, 42, 43]) h.reply(`/tunes/${id}`, 200, tuneBody(id));
    h.reply('/tunes/44', 429, '', { 'retry-after': '1' });
    for (const id of [44, 45, 46]) h.reply(`/tunes/${id}`, 200, tuneBody(id));

    for (const id of [41, 42, 43, 44, 45, 46]) expect(await h.client.getTune(String(id))).toMatchObject({ kind: 'tune' });

    const spacing = gaps(h.requests);
    // 1/rps before the 429 ...
    expect(spacing.slice(0, 3)).toEqual([100, 100, 100]);
    // ... the Retry-After pause ...
    expect(spacing[3]).toBe(1_000);
    // ... then a halved rate that climbs back slowly.
    for (const gap of spacing.slice(4)) expect(gap).toBeGreaterThan(150);
  });

  it('throws AstriaAuthError on 401, without retrying', async () => {
    const h = setup();
    h.reply('/tunes/51', 401, { error: 'Unauthorized' });
    await expect(h.client.getTune('51')).rejects.toBeInstanceOf(AstriaAuthError);
    expect(h.client.calls).toBe(1);
    expect(await requestCounts(h.metrics)).toEqual({ 'get_tune:unauthorized': 1 });
  });

  it("fails only that tune on a 403 (the key works; this tune is off limits), counted as forbidden, not retried", async () => {
    const h = setup();
    h.reply('/tunes/52', 403, { error: 'You do not have access to this tune' });
    h.reply('/tunes/53', 200, tuneBody(53));
    const result = await h.client.getTune('52');
    expect(result.kind).toBe('failed');
    if (result.kind === 'failed') expect(result.reason).toMatch(/403.*do not have access/);
    expect(await h.client.getTune('53')).toMatchObject({ kind: 'tune', tune: { id: 53 } });
    expect(h.client.calls).toBe(2);
    expect(await requestCounts(h.metrics)).toEqual({ 'get_tune:forbidden': 1, 'get_tune:ok': 1 });
  });

  it("fails, never 'gone', on a 404 without Astria's JSON body (a website, an ingress default backend)", async () => {
    const h = setup();
    h.reply('/tunes/54', 404, '<html><body><h1>404 Not Found</h1></body></html>', { 'content-type': 'text/html' });
    h.reply('/tunes/55', 404, '');
    for (const id of ['54', '55']) {
      const result = await h.client.getTune(id);
      expect(result.kind).toBe('failed');
      if (result.kind === 'failed') expect(result.reason).toMatch(/404.*ASTRIA_API_URL/);
    }
    expect(h.client.calls).toBe(2);
    expect(await requestCounts(h.metrics)).toEqual({ 'get_tune:client_error': 2 });
  });

  it('fails on 422 without retrying, quoting the error body', async () => {
    const h = setup();
    h.reply('/tunes/61', 422, { errors: ['id is invalid'] });
    const result = await h.client.getTune('61');
    expect(result.kind).toBe('failed');
    if (result.kind === 'failed') {
      expect(result.reason).toContain('422');
      expect(result.reason).toContain('id is invalid');
    }
    expect(h.client.calls).toBe(1);
    expect(h.clock.sleeps).toEqual([]);
    expect(await requestCounts(h.metrics)).toEqual({ 'get_tune:client_error': 1 });
  });

  it('fails on malformed JSON without retrying', async () => {
    const h = setup();
    h.reply('/tunes/71', 200, '{"id": 71, "title": ');
    const result = await h.client.getTune('71');
    expect(result.kind).toBe('failed');
    if (result.kind === 'failed') expect(result.reason).toMatch(/malformed JSON/);
    expect(h.client.calls).toBe(1);
    expect(h.clock.sleeps).toEqual([]);
    expect(await requestCounts(h.metrics)).toEqual({ 'get_tune:invalid_body': 1 });
    // NB: the client returns the reason but writes no log line of its own for this case
    // (the reconciler pass logs `reason`); see report.
  });

  it('fails on a body that does not validate, and logs it', async () => {
    const h = setup();
    h.reply('/tunes/81', 200, tuneBody(81, { id: 'x' }));
    h.reply('/tunes/82', 200, tuneBody(82, { trained_at: 'not a date' }));

    expect(await h.client.getTune('81')).toEqual({ kind: 'failed', reason: 'invalid tune body from Astria' });
    expect(await h.client.getTune('82')).toEqual({ kind: 'failed', reason: 'invalid tune body from Astria' });
    expect(h.client.calls).toBe(2);
    const warnings = h.logEntries().filter((entry) => entry.msg === 'skipping invalid tune body from Astria');
    expect(warnings.map((entry) => entry.tuneId)).toEqual(['81', '82']);
    expect(warnings.every((entry) => entry.level === 40)).toBe(true);
  });

  it('retries network errors', async () => {
    const h = setup();
    h.pool.intercept({ path: '/tunes/91', method: 'GET' }).replyWithError(new Error('socket hang up'));
    h.reply('/tunes/91', 200, tuneBody(91));
    expect(await h.client.getTune('91')).toMatchObject({ kind: 'tune' });
    expect(h.client.calls).toBe(2);
    expect(await requestCounts(h.metrics)).toEqual({ 'get_tune:network_error': 1, 'get_tune:ok': 1 });
  });

  it('times out a hung request (timeoutMs) and retries it', async () => {
    const h = setup({ timeoutMs: 40 });
    // Hung for a minute: only the 40 ms timeout ends the first try well before that.
    h.pool.intercept({ path: '/tunes/92', method: 'GET' }).reply(200, JSON.stringify(tuneBody(92))).delay(60_000);
    h.reply('/tunes/92', 200, tuneBody(92));
    const started = Date.now();
    expect(await h.client.getTune('92')).toMatchObject({ kind: 'tune', tune: { id: 92 } });
    expect(Date.now() - started).toBeLessThan(30_000);
    expect(await requestCounts(h.metrics)).toEqual({ 'get_tune:timeout': 1, 'get_tune:ok': 1 });
  });

  it('stops retrying when the caller aborts', async () => {
    const h = setup();
    const controller = new AbortController();
    h.reply('/tunes/93', 500, '', {}, 4);
    const pending = h.client.getTune('93', controller.signal);
    controller.abort(new Error('shutting down'));
    await expect(pending).rejects.toThrow('shutting down');
    expect(h.client.calls).toBeLessThanOrEqual(1);
  });
});

describe('AstriaClient.listTunes', () => {
  const isList = (path: string) => path.startsWith('/tunes?');

  function query(path: string): Record<string, string> {
    return Object.fromEntries(new URL(path, API_URL).searchParams);
  }

  it('sends limit (default and clamped to 120) and before_id, and returns the lowest id as the next cursor', async () => {
    const h = setup();
    h.reply(isList, 200, [tuneBody(130), tuneBody(120), tuneBody(101)]);
    h.reply(isList, 200, [tuneBody(99), tuneBody(97)]);
    h.reply(isList, 200, [tuneBody(50)]);

    const first = await h.client.listTunes({});
    const second = await h.client.listTunes({ beforeId: 101, limit: 500 });
    const third = await h.client.listTunes({ beforeId: 97, limit: 25 });

    expect(h.requests.map((request) => query(request.path))).toEqual([
      { limit: '120' },
      { limit: '120', before_id: '101' },
      { limit: '25', before_id: '97' },
    ]);
    expect(first).toMatchObject({ kind: 'page', nextBeforeId: 101, skipped: 0 });
    if (first.kind === 'page') {
      expect(first.tunes.map((tune) => tune.id)).toEqual([130, 120, 101]);
      expect(first.tunes[0]!.trained_at).toEqual(new Date('2023-10-02T14:32:40.363Z'));
      expect((first.tunes[0] as Record<string, unknown>).branch).toBe('sdxl1');
    }
    expect(second).toMatchObject({ kind: 'page', nextBeforeId: 97 });
    expect(third).toMatchObject({ kind: 'page', nextBeforeId: 50 });
    for (const request of h.requests) expect(request.headers.authorization).toBe(`Bearer ${API_KEY}`);
  });

  it('ends the list on an empty page (nextBeforeId null)', async () => {
    const h = setup();
    h.reply(isList, 200, []);
    expect(await h.client.listTunes({ beforeId: 3 })).toEqual({ kind: 'page', tunes: [], nextBeforeId: null, skipped: 0 });
  });

  it('skips one invalid tune, keeps the rest, and still pages past it', async () => {
    const h = setup();
    // The invalid one has the lowest id: the cursor must still move past it, or the same page comes back.
    h.reply(isList, 200, [tuneBody(30), tuneBody(20), tuneBody(10, { trained_at: 'garbage' })]);
    h.reply(isList, 200, [tuneBody(9), { id: 'x', title: 'broken' }, tuneBody(5)]);

    const first = await h.client.listTunes({});
    expect(first).toMatchObject({ kind: 'page', skipped: 1, nextBeforeId: 10 });
    if (first.kind === 'page') expect(first.tunes.map((tune) => tune.id)).toEqual([30, 20]);

    const second = await h.client.listTunes({ beforeId: 10 });
    expect(second).toMatchObject({ kind: 'page', skipped: 1, nextBeforeId: 5 });
    if (second.kind === 'page') expect(second.tunes.map((tune) => tune.id)).toEqual([9, 5]);

    expect(h.logEntries().filter((entry) => entry.msg === 'skipping invalid tune in list')).toHaveLength(2);
  });

  it('fails on a body that is not an array, on 404 and on 422', async () => {
    const h = setup();
    h.reply(isList, 200, { tunes: [tuneBody(1)] });
    h.reply(isList, 404, { error: 'Not found' });
    h.reply(isList, 422, { error: 'bad limit' });
    expect(await h.client.listTunes({})).toMatchObject({ kind: 'failed' });
    expect(await h.client.listTunes({})).toMatchObject({ kind: 'failed' });
    expect(await h.client.listTunes({})).toMatchObject({ kind: 'failed' });
    expect(h.client.calls).toBe(3);
  });

  it('throws AstriaAuthError on 401', async () => {
    const h = setup();
    h.reply(isList, 401, { error: 'Unauthorized' });
    await expect(h.client.listTunes({})).rejects.toBeInstanceOf(AstriaAuthError);
  });

  it('marks a 404 of the list itself, JSON or not, as a missing endpoint', async () => {
    const h = setup();
    h.reply(isList, 404, { error: 'Not found' });
    h.reply(isList, 404, '<html>Not Found</html>', { 'content-type': 'text/html' });
    expect(await h.client.listTunes({})).toMatchObject({ kind: 'failed', endpointMissing: true });
    expect(await h.client.listTunes({})).toMatchObject({ kind: 'failed', endpointMissing: true });
  });
});

describe('AstriaClient body cap', () => {
  it.each([
    ['a tune', 2, 'get_tune'],
    ['a list page', 16, 'list_tunes'],
  ] as const)('refuses a 64 MB chunked body for %s at its %i MiB cap while it arrives, without buffering or retrying it', async (_what, capMiB, endpoint) => {
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    let sentMiB = 0;
    const server = createServer((_req, res) => {
      // No content-length: chunked, so the cap can only be enforced while reading.
      res.writeHead(200, { 'content-type': 'application/json' });
      const pump = () => {
        while (sentMiB < 64) {
          sentMiB += 1;
          if (!res.write(chunk)) return void res.once('drain', pump);
        }
        res.end();
      };
      res.on('error', () => undefined);
      pump();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    const metrics = createMetrics();
    const client = createAstriaClient({
      apiUrl: `http://127.0.0.1:${port}`,
      apiKey: API_KEY,
      maxRps: 100,
      concurrency: 1,
      timeoutMs: 30_000,
      log: createLogger('silent'),
      metrics,
      clock: new FakeClock(),
    });
    const rssBefore = process.memoryUsage().rss;
    try {
      const result = endpoint === 'get_tune' ? await client.getTune('56') : await client.listTunes({});
      expect(result.kind).toBe('failed');
      if (result.kind === 'failed') expect(result.reason).toMatch(new RegExp(`exceeds ${capMiB * 1024 * 1024}`));
      expect(client.calls).toBe(1);
      expect(await requestCounts(metrics)).toEqual({ [`${endpoint}:invalid_body`]: 1 });
      // Reading stopped at the cap: most of the 64 MB was never sent (socket buffers hold a few MiB).
      expect(sentMiB).toBeLessThan(capMiB + 24);
      expect(process.memoryUsage().rss - rssBefore).toBeLessThan(48 * 1024 * 1024);
    } finally {
      await client.close();
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  });
});

describe('AstriaClient metrics', () => {
  it('counts requests by endpoint and outcome', async () => {
    const h = setup({ retry: { attempts: 2 } });
    const isList = (path: string) => path.startsWith('/tunes?');
    h.reply('/tunes/1', 200, tuneBody(1));
    h.reply('/tunes/2', 404, { error: 'Not found' });
    h.reply('/tunes/3', 500, '', {}, 2); // two attempts, both 500
    h.reply('/tunes/4', 429, '', { 'retry-after': '0' });
    h.reply('/tunes/4', 200, tuneBody(4));
    h.reply('/tunes/5', 422, '');
    h.reply('/tunes/6', 504, '');
    h.reply('/tunes/6', 200, tuneBody(6));
    h.reply(isList, 200, [tuneBody(3)]);
    h.reply(isList, 503, '');
    h.reply(isList, 200, []);

    await h.client.getTune('1');
    await h.client.getTune('2');
    await h.client.getTune('3');
    await h.client.getTune('4');
    await h.client.getTune('5');
    await h.client.getTune('6');
    await h.client.getTune('nope');
    await h.client.listTunes({});
    await h.client.listTunes({ beforeId: 3 });

    expect(await requestCounts(h.metrics)).toEqual({
      'get_tune:ok': 3,
      'get_tune:not_found': 1,
      'get_tune:server_error': 2,
      'get_tune:rate_limited': 1,
      'get_tune:client_error': 1,
      'get_tune:gateway_timeout': 1,
      'list_tunes:ok': 2,
      'list_tunes:server_error': 1,
    });
    expect(h.client.calls).toBe(12);
    const exposition = await h.metrics.registry.getSingleMetricAsString('astria_reconciler_astria_requests_total');
    expect(exposition).toContain('astria_reconciler_astria_requests_total{endpoint="get_tune",outcome="ok"} 3');
    expect(exposition).toContain('astria_reconciler_astria_requests_total{endpoint="list_tunes",outcome="server_error"} 1');
  });
});

describe('AstriaClient secrets', () => {
  it('never writes the API key to the log, even at trace level with failures and a 401', async () => {
    const h = setup({ retry: { attempts: 2 } }, 'trace');
    const isList = (path: string) => path.startsWith('/tunes?');
    h.reply('/tunes/1', 500, { error: 'boom' });
    h.reply('/tunes/1', 503, '');
    h.pool.intercept({ path: '/tunes/2', method: 'GET' }).replyWithError(new Error('ECONNRESET'));
    h.reply('/tunes/2', 429, '', { 'retry-after': '1' });
    h.reply('/tunes/3', 200, tuneBody(3, { id: 'x' }));
    h.reply('/tunes/4', 200, 'not json');
    h.reply(isList, 200, [tuneBody(9), { id: 8, trained_at: 'nope' }]);
    h.reply('/tunes/5', 401, { error: 'Unauthorized' });

    await h.client.getTune('1');
    await h.client.getTune('2');
    await h.client.getTune('3');
    await h.client.getTune('4');
    await h.client.listTunes({});
    const error = await h.client.getTune('5').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(AstriaAuthError);
    // What the CLI would do with it: log it whole.
    h.log.fatal({ err: error }, 'Astria rejected the API key');
    expect(String(error)).not.toContain(API_KEY);
    expect((error as Error).stack ?? '').not.toContain(API_KEY);

    const text = h.logText();
    // The run did produce debug and warn lines, so the check below is not vacuous.
    expect(h.logEntries().some((entry) => entry.level === 20)).toBe(true);
    expect(h.logEntries().some((entry) => entry.level === 40)).toBe(true);
    expect(text).not.toContain(API_KEY);
    expect(text).not.toContain(API_KEY.slice(3)); // without the sd_ prefix either
  });
});

describe('AstriaClient concurrency', () => {
  async function maxInFlight(concurrency: number): Promise<{ max: number; results: string[] }> {
    const h = setup({ concurrency, maxRps: 1_000 });
    let inFlight = 0;
    let max = 0;
    h.pool
      .intercept({ path: (path) => /^\/tunes\/\d+$/.test(path), method: 'GET' })
      // A reply function may return a promise: the response is held until it settles.
      .reply(200, (async (opts: { path: string }) => {
        inFlight += 1;
        max = Math.max(max, inFlight);
        await realSleep(50);
        inFlight -= 1;
        return JSON.stringify(tuneBody(Number(opts.path.split('/').pop())));
      }) as never)
      .times(6);
    const results = await Promise.all([1, 2, 3, 4, 5, 6].map((id) => h.client.getTune(String(id))));
    h.agent.assertNoPendingInterceptors();
    return { max, results: results.map((result) => result.kind) };
  }

  it('never has more than `concurrency` requests in flight', async () => {
    const capped = await maxInFlight(2);
    expect(capped.results).toEqual(Array(6).fill('tune'));
    expect(capped.max).toBe(2);
  });

  it('(control) the measurement does see parallel requests when the cap allows them', async () => {
    const uncapped = await maxInFlight(6);
    expect(uncapped.max).toBeGreaterThan(2);
  });
});

describe('parseRetryAfter', () => {
  const now = Date.parse('2015-10-21T07:27:00.000Z');

  it('reads seconds', () => {
    expect(parseRetryAfter('1', now)).toBe(1_000);
    expect(parseRetryAfter('0', now)).toBe(0);
    expect(parseRetryAfter('120', now)).toBe(120_000);
    expect(parseRetryAfter('1.5', now)).toBe(1_500);
    expect(parseRetryAfter(['3', '4'], now)).toBe(3_000);
  });

  it('reads an HTTP date relative to now', () => {
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:28:00 GMT', now)).toBe(60_000);
  });

  it('returns null for absent, garbage, negative or past values', () => {
    expect(parseRetryAfter(undefined, now)).toBeNull();
    expect(parseRetryAfter('', now)).toBeNull();
    expect(parseRetryAfter('soon', now)).toBeNull();
    expect(parseRetryAfter('Infinity', now)).toBeNull();
    expect(parseRetryAfter('-5', now)).toBeNull();
    expect(parseRetryAfter('Wed, 21 Oct 2015 07:00:00 GMT', now)).toBeNull();
  });

  it('caps long pauses at 5 minutes', () => {
    expect(parseRetryAfter('86400', now)).toBe(300_000);
    expect(parseRetryAfter('Thu, 22 Oct 2015 07:27:00 GMT', now)).toBe(300_000);
  });
});

describe('RequestBudget', () => {
  async function takeTimes(budget: RequestBudget, clock: FakeClock, count: number): Promise<number[]> {
    const times: number[] = [];
    await Promise.all(Array.from({ length: count }, () => budget.take().then(() => times.push(clock.now() - T0))));
    return times.sort((a, b) => a - b);
  }

  it('spaces requests at 1/rps, concurrent or sequential', async () => {
    const clock = new FakeClock();
    const budget = new RequestBudget(10, clock);
    expect(await takeTimes(budget, clock, 5)).toEqual([0, 100, 200, 300, 400]);
    await budget.take();
    expect(clock.now() - T0).toBe(500);
  });

  it('does not save up unused turns for a burst after idling', async () => {
    const clock = new FakeClock();
    const budget = new RequestBudget(10, clock);
    await budget.take();
    clock.advance(10_000);
    expect(await takeTimes(budget, clock, 4)).toEqual([10_000, 10_100, 10_200, 10_300]);
  });

  it('halves the rate on rateLimited, down to ceiling/32, and pauses everyone', async () => {
    const clock = new FakeClock();
    const budget = new RequestBudget(32, clock);
    expect(budget.currentRate).toBe(32);
    budget.rateLimited(0);
    expect(budget.currentRate).toBe(16);
    budget.rateLimited(0);
    expect(budget.currentRate).toBe(8);
    for (let i = 0; i < 10; i += 1) budget.rateLimited(0);
    expect(budget.currentRate).toBe(1);

    const other = new RequestBudget(10, clock);
    await other.take();
    const start = clock.now();
    other.rateLimited(2_000);
    expect(other.currentRate).toBe(5);
    const times: number[] = [];
    await Promise.all([0, 1, 2].map(() => other.take().then(() => times.push(clock.now() - start))));
    expect(times).toEqual([2_000, 2_200, 2_400]); // after the pause, at the halved rate
  });

  it('holds a caller already waiting when a 429 arrives', async () => {
    const clock = new FakeClock();
    const budget = new RequestBudget(10, clock);
    await budget.take();
    const start = clock.now();
    const waiting = budget.take().then(() => clock.now() - start); // its turn was at +100
    budget.rateLimited(1_000);
    expect(await waiting).toBe(1_000);
  });

  it('recovers a twentieth of the ceiling per success and never exceeds the ceiling', () => {
    const clock = new FakeClock();
    const budget = new RequestBudget(20, clock);
    budget.succeeded();
    expect(budget.currentRate).toBe(20);
    budget.rateLimited(0);
    budget.rateLimited(0);
    expect(budget.currentRate).toBe(5);
    budget.succeeded();
    expect(budget.currentRate).toBe(6);
    for (let i = 0; i < 100; i += 1) budget.succeeded();
    expect(budget.currentRate).toBe(20);
  });
});

describe('AstriaClient.getPrompt', () => {
  it("reads the prompt under its tune: images, parsed dates, Astria's other fields kept, sent with the Bearer key", async () => {
    const h = setup();
    h.reply('/tunes/788416/prompts/29012345', 200, documentedPrompt({ id: 29012345, tune_id: 788416 }));

    const result = await h.client.getPrompt('788416', '29012345');

    expect(result.kind).toBe('prompt');
    if (result.kind !== 'prompt') throw new Error('unreachable');
    const prompt = result.prompt as Record<string, unknown> & typeof result.prompt;
    expect(prompt).toMatchObject({ id: 29012345, tune_id: 788416, text: 'a painting of ohwx man in the style of Van Gogh' });
    expect(prompt.images).toEqual([
      'https://sdbooth2-production.s3.amazonaws.com/29012345-1.jpg',
      'https://sdbooth2-production.s3.amazonaws.com/29012345-2.jpg',
    ]);
    expect(prompt.trained_at).toEqual(new Date('2022-10-06T16:13:40.115Z'));
    expect(prompt.started_training_at).toEqual(new Date('2022-10-06T16:12:58.010Z'));
    expect(h.requests.map((request) => request.path)).toEqual(['/tunes/788416/prompts/29012345']);
    expect(h.requests[0]!.headers.authorization).toBe(`Bearer ${API_KEY}`);
  });

  it.each([null, 'abc', ''])('asks /prompts/:id when the tune id is unknown (%j)', async (tuneId) => {
    const h = setup();
    h.reply('/prompts/31', 200, documentedPrompt({ id: 31, tune_id: 4 }));
    expect(await h.client.getPrompt(tuneId, '31')).toMatchObject({ kind: 'prompt', prompt: { id: 31, tune_id: 4 } });
    expect(h.requests.map((request) => request.path)).toEqual(['/prompts/31']);
  });

  it('reports 404 as gone (the prompt, never a tune of that number), without retrying', async () => {
    const h = setup();
    h.reply('/tunes/7/prompts/7', 404, { error: 'Not found' });
    expect(await h.client.getPrompt('7', '7')).toEqual({ kind: 'gone', promptId: '7' });
    expect(h.client.calls).toBe(1);
    expect(h.clock.sleeps).toEqual([]);
  });

  it("fails, never 'gone', on a 404 without Astria's JSON body", async () => {
    const h = setup();
    h.reply('/prompts/8', 404, '<html>Not Found</html>', { 'content-type': 'text/html' });
    expect(await h.client.getPrompt(null, '8')).toMatchObject({ kind: 'failed' });
  });

  it.each(['abc', '0', '-3', '1e3', '../tunes/1', '1234567890123456'])('never sends a non-id jobId %j to Astria', async (promptId) => {
    const h = setup();
    const result = await h.client.getPrompt('5', promptId);
    expect(result).toMatchObject({ kind: 'failed', reason: expect.stringContaining('not an Astria prompt id') });
    expect(h.client.calls).toBe(0);
  });

  it('fails when Astria answers another prompt, or the prompt of another tune', async () => {
    const h = setup();
    h.reply('/tunes/5/prompts/9', 200, documentedPrompt({ id: 10, tune_id: 5 }));
    h.reply('/tunes/5/prompts/9', 200, documentedPrompt({ id: 9, tune_id: 6 }));
    expect(await h.client.getPrompt('5', '9')).toMatchObject({ kind: 'failed', reason: 'Astria answered prompt 10 for 9' });
    expect(await h.client.getPrompt('5', '9')).toMatchObject({ kind: 'failed', reason: expect.stringContaining('of tune 6') });
  });

  it('fails on a prompt whose trained_at names no instant, and logs it without the key', async () => {
    const h = setup();
    h.reply('/prompts/12', 200, documentedPrompt({ id: 12, trained_at: 'yesterday' }));
    expect(await h.client.getPrompt(null, '12')).toEqual({ kind: 'failed', reason: 'invalid prompt body from Astria' });
    expect(h.logEntries().some((entry) => entry.msg === 'skipping invalid prompt body from Astria' && entry.promptId === '12')).toBe(true);
    expect(h.logText()).not.toContain(API_KEY);
  });

  it('retries a 500 with backoff like a tune, counted under get_prompt', async () => {
    const h = setup();
    h.reply('/tunes/3/prompts/40', 500, { error: 'boom' });
    h.reply('/tunes/3/prompts/40', 200, documentedPrompt({ id: 40, tune_id: 3 }));
    expect(await h.client.getPrompt('3', '40')).toMatchObject({ kind: 'prompt' });
    expect(h.clock.sleeps).toHaveLength(1);
    expect(await requestCounts(h.metrics)).toEqual({ 'get_prompt:server_error': 1, 'get_prompt:ok': 1 });
  });

  it('shares one request budget with tunes: tune and prompt calls together keep 1/rps', async () => {
    const h = setup({ maxRps: 4 });
    h.reply('/tunes/1', 200, tuneBody(1));
    h.reply('/tunes/1/prompts/1', 200, documentedPrompt({ id: 1, tune_id: 1 }));
    h.reply((path) => path.startsWith('/prompts?'), 200, []);
    h.reply((path) => path.startsWith('/tunes?'), 200, []);

    await Promise.all([h.client.getTune('1'), h.client.getPrompt('1', '1'), h.client.listPrompts({}), h.client.listTunes({})]);

    expect(gaps(h.requests)).toEqual([250, 250, 250]);
  });
});

describe('AstriaClient.listPrompts', () => {
  const isList = (path: string) => path.startsWith('/prompts?');
  const query = (path: string) => Object.fromEntries(new URL(path, API_URL).searchParams);

  it('pages /prompts newest first with limit (clamped to 120) and before_id; the lowest id is the next cursor', async () => {
    const h = setup();
    h.reply(isList, 200, [documentedPrompt({ id: 503 }), documentedPrompt({ id: 502, trained_at: null, images: [] })]);
    h.reply(isList, 200, [documentedPrompt({ id: 501 })]);
    h.reply(isList, 200, []);

    const first = await h.client.listPrompts({ limit: 500 });
    const second = await h.client.listPrompts({ beforeId: 502, limit: 2 });
    const last = await h.client.listPrompts({ beforeId: 501 });

    expect(h.requests.map((request) => query(request.path))).toEqual([
      { limit: '120' },
      { limit: '2', before_id: '502' },
      { limit: '120', before_id: '501' },
    ]);
    expect(first).toMatchObject({ kind: 'page', nextBeforeId: 502, skipped: 0 });
    if (first.kind === 'page') {
      expect(first.prompts.map((prompt) => [prompt.id, prompt.images.length, prompt.trained_at])).toEqual([
        [503, 2, new Date('2022-10-06T16:13:40.115Z')],
        [502, 0, null],
      ]);
    }
    expect(second).toMatchObject({ kind: 'page', nextBeforeId: 501 });
    expect(last).toEqual({ kind: 'page', prompts: [], nextBeforeId: null, skipped: 0 });
    expect(await requestCounts(h.metrics)).toEqual({ 'list_prompts:ok': 3 });
  });

  it('skips one invalid prompt, keeps the rest, and still pages past it', async () => {
    const h = setup();
    h.reply(isList, 200, [documentedPrompt({ id: 30 }), documentedPrompt({ id: 20, trained_at: 'garbage' })]);
    const page = await h.client.listPrompts({});
    expect(page).toMatchObject({ kind: 'page', skipped: 1, nextBeforeId: 20 });
    if (page.kind === 'page') expect(page.prompts.map((prompt) => prompt.id)).toEqual([30]);
    expect(h.logEntries().filter((entry) => entry.msg === 'skipping invalid prompt in list')).toHaveLength(1);
  });

  it('marks a 404 of the prompt list as a missing endpoint, and fails on a body that is not an array', async () => {
    const h = setup();
    h.reply(isList, 404, { error: 'Not found' });
    h.reply(isList, 200, { prompts: [] });
    expect(await h.client.listPrompts({})).toMatchObject({ kind: 'failed', endpointMissing: true });
    expect(await h.client.listPrompts({})).toEqual({ kind: 'failed', reason: 'prompt list from Astria is not an array' });
  });
});
