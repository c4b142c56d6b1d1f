import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { startSimulatedAstria, type SimulatedAstria, type SimulatedAstriaOptions } from '../../dev/simulated-astria.js';

const API_KEY = 'sd_test_key';
const AUTH = { authorization: `Bearer ${API_KEY}` };

let astria: SimulatedAstria | undefined;

afterEach(async () => {
  await astria?.close();
  astria = undefined;
});

async function start(options: Partial<SimulatedAstriaOptions> = {}): Promise<SimulatedAstria> {
  astria = await startSimulatedAstria({ apiKey: API_KEY, ...options });
  return astria;
}

async function call(fake: SimulatedAstria, path: string, headers: Record<string, string> = AUTH) {
  const response = await fetch(`${fake.url}${path}`, { headers });
  return { status: response.status, headers: response.headers, body: (await response.json()) as unknown };
}

async function listIds(fake: SimulatedAstria, query: string): Promise<number[]> {
  const { status, body } = await call(fake, `/tunes?${query}`);
  expect(status).toBe(200);
  return (body as { id: number }[]).map((tune) => tune.id);
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('simulated Astria', () => {
  it('requires the Bearer key', async () => {
    const fake = await start();
    const tune = fake.addTune();
    const wrong: Record<string, string>[] = [{}, { authorization: 'Bearer wrong' }, { authorization: API_KEY }];
    for (const headers of wrong) {
      expect(await call(fake, `/tunes/${tune.id}`, headers)).toMatchObject({ status: 401, body: { error: 'Unauthorized' } });
    }
    expect(await call(fake, '/tunes', {})).toMatchObject({ status: 401 });
    expect((await call(fake, `/tunes/${tune.id}`)).status).toBe(200);
  });

  it('answers GET /tunes/:id with the full bare tune object', async () => {
    const createdAt = new Date('2026-01-02T03:04:05.006Z');
    const fake = await start();
    const tune = fake.addTune({ title: 'Jane', createdAt, startedTrainingAt: createdAt, eta: new Date('2026-01-02T03:30:00.000Z') });
    const { status, headers, body } = await call(fake, `/tunes/${tune.id}`);
    expect(status).toBe(200);
    expect(headers.get('content-type')).toMatch(/^application\/json/);
    expect(Object.keys(body as object).sort()).toEqual(
      [
        'id', 'title', 'name', 'is_api', 'token', 'base_tune_id', 'args', 'steps', 'face_crop', 'ckpt_url', 'ckpt_urls',
        'eta', 'trained_at', 'started_training_at', 'expires_at', 'created_at', 'updated_at', 'branch', 'model_type',
        'url', 'orig_images', 'callback',
      ].sort(),
    );
    expect(body).toMatchObject({
      id: tune.id,
      title: 'Jane',
      created_at: '2026-01-02T03:04:05.006Z',
      started_training_at: '2026-01-02T03:04:05.006Z',
      eta: '2026-01-02T03:30:00.000Z',
      trained_at: null,
    });
    expect(body).not.toHaveProperty('status');
  });

  it('answers 404 for unknown, removed and non-digit ids and for other paths', async () => {
    const fake = await start();
    const [kept, removed] = fake.addTunes(2);
    fake.remove(removed!.id);
    const notFound = { status: 404, body: { error: 'Not found' } };
    expect(await call(fake, `/tunes/${removed!.id}`)).toMatchObject(notFound);
    expect(await call(fake, '/tunes/999999')).toMatchObject(notFound);
    expect(await call(fake, '/tunes/12ab')).toMatchObject(notFound);
    expect(await call(fake, '/tunes/-1')).toMatchObject(notFound);
    expect(await call(fake, '/packs')).toMatchObject(notFound);
    expect(await call(fake, `/tunes/${kept!.id}/images`)).toMatchObject(notFound);
    expect(await listIds(fake, '')).toEqual([kept!.id]);
    expect(fake.getTune(removed!.id)).toBeUndefined();
  });

  it('auto-increments ids and keeps explicit ids in order', async () => {
    const fake = await start({ now: () => new Date('2026-03-01T00:00:00.000Z') });
    const first = fake.addTune();
    const explicit = fake.addTune({ id: 5 });
    const next = fake.addTune();
    expect(next.id).toBe(first.id + 1);
    expect(first.created_at).toBe('2026-03-01T00:00:00.000Z');
    expect(await listIds(fake, '')).toEqual([next.id, first.id, explicit.id]);
    expect(() => fake.addTune({ id: 5 })).toThrow();
  });

  it('lists newest first with default and clamped limits', async () => {
    const fake = await start();
    const ids = fake.addTunes(300).map((tune) => tune.id);
    const newestFirst = [...ids].reverse();
    expect(await listIds(fake, '')).toEqual(newestFirst.slice(0, 20));
    expect(await listIds(fake, 'limit=5')).toEqual(newestFirst.slice(0, 5));
    expect(await listIds(fake, 'limit=500')).toEqual(newestFirst.slice(0, 120));
    expect((await call(fake, '/tunes?limit=abc')).status).toBe(400);
  });

  it('pages with the before_id cursor down to an empty page', async () => {
    const fake = await start();
    const ids = fake.addTunes(250).map((tune) => tune.id);
    const seen: number[] = [];
    let cursor = '';
    for (;;) {
      const page = await listIds(fake, `limit=120${cursor}`);
      if (page.length === 0) break;
      expect(page.every((id, index) => index === 0 || id < page[index - 1]!)).toBe(true);
      seen.push(...page);
      cursor = `&before_id=${page[page.length - 1]}`;
    }
    expect(seen).toEqual([...ids].reverse());
    expect(await listIds(fake, `before_id=${ids[3]}&limit=10`)).toEqual([ids[2], ids[1], ids[0]]);
    // The cursor need not be an existing id.
    expect(await listIds(fake, `before_id=${ids[249]! + 1000}&limit=1`)).toEqual([ids[249]]);
  });

  it('pages with offset up to 200 and refuses deeper offsets', async () => {
    const fake = await start();
    const newestFirst = fake.addTunes(300).map((tune) => tune.id).reverse();
    expect(await listIds(fake, 'offset=200&limit=3')).toEqual(newestFirst.slice(200, 203));
    expect(await listIds(fake, `offset=2&limit=2&before_id=${newestFirst[10]}`)).toEqual(newestFirst.slice(13, 15));
    expect(await call(fake, '/tunes?offset=201')).toMatchObject({ status: 400, body: { error: expect.any(String) } });
  });

  // Speed is the benchmark's business (npm run bench); here only that keyset paging is right at that size.
  it('holds 100,000 tunes and pages them by before_id', async () => {
    const fake = await start();
    const tunes = fake.addTunes(100_000, (index) => ({ trainedAt: index % 2 === 0 ? new Date() : null }));
    expect(tunes[0]!.trained_at).not.toBeNull();
    expect(tunes[1]!.trained_at).toBeNull();

    for (let page = 0; page < 50; page += 1) {
      const beforeId = tunes[50_000 + page * 120]!.id;
      const ids = await listIds(fake, `limit=120&before_id=${beforeId}`);
      expect(ids).toHaveLength(120);
      expect(ids[0]).toBe(beforeId - 1);
    }
  });

  it('trains, fails and heals tunes', async () => {
    const fake = await start();
    const tune = fake.addTune();
    const at = new Date('2026-04-01T10:00:00.000Z');
    fake.fail(tune.id, 'GPU exploded');
    expect((await call(fake, `/tunes/${tune.id}`)).body).toMatchObject({ status: 'failed', error_message: 'GPU exploded' });

    fake.train(tune.id, at);
    const { body } = await call(fake, `/tunes/${tune.id}`);
    expect(body).toMatchObject({
      status: 'trained',
      trained_at: at.toISOString(),
      started_training_at: at.toISOString(),
      expires_at: '2026-05-01T10:00:00.000Z',
    });
    expect(body).not.toHaveProperty('error_message');
    expect(() => fake.train(424242)).toThrow();
  });

  it('scripts undocumented failure fields on creation', async () => {
    const fake = await start();
    const tune = fake.addTune({ status: 'cancelled', error: 'out of credits' });
    expect((await call(fake, `/tunes/${tune.id}`)).body).toMatchObject({ status: 'cancelled', error: 'out of credits' });
  });

  it('fails tunes in every shape integrations read, and training heals them all', async () => {
    const fake = await start();
    const shapes = [
      { status: 'error' },
      { status: 'canceled', error_message: 'by user' },
      { user_error: 'No face detected' },
      { user_error: { message: 'No face detected' } },
      { error: { detail: 'GPU gone', code: 17 } },
    ];
    for (const failure of shapes) {
      const tune = fake.addTune();
      fake.fail(tune.id, failure);
      const { body } = await call(fake, `/tunes/${tune.id}`);
      expect(body).toMatchObject({ ...failure, trained_at: null });
      fake.train(tune.id);
      const healed = (await call(fake, `/tunes/${tune.id}`)).body as Record<string, unknown>;
      expect(healed.trained_at).toEqual(expect.any(String));
      for (const field of ['error', 'error_message', 'user_error']) expect(healed).not.toHaveProperty(field);
    }
    const scripted = fake.addTune({ userError: { message: 'Images rejected' }, error: { code: 3 } });
    expect((await call(fake, `/tunes/${scripted.id}`)).body).toMatchObject({ user_error: { message: 'Images rejected' }, error: { code: 3 } });
  });

  it('a tune seeded as started or trained in the past was created by then; an explicit created_at wins', async () => {
    const fake = await start({ now: () => new Date('2026-05-05T12:00:00.000Z') });
    const started = new Date('2026-05-05T10:00:00.000Z');
    const trained = new Date('2026-05-05T11:00:00.000Z');
    expect(fake.addTune({ startedTrainingAt: started, trainedAt: trained }).created_at).toBe(started.toISOString());
    expect(fake.addTune({ trainedAt: trained }).created_at).toBe(trained.toISOString());
    expect(fake.addTune({ eta: trained }).created_at).toBe('2026-05-05T12:00:00.000Z');
    expect(fake.addTune({ createdAt: new Date('2026-05-05T11:30:00.000Z'), trainedAt: trained }).created_at).toBe('2026-05-05T11:30:00.000Z');
  });

  it('serves any trained_at it is given, an implausible one included', async () => {
    const fake = await start();
    const tune = fake.addTune({ createdAt: new Date('2026-01-01T00:00:00.000Z') });
    fake.train(tune.id, new Date(0));
    expect((await call(fake, `/tunes/${tune.id}`)).body).toMatchObject({ created_at: '2026-01-01T00:00:00.000Z', trained_at: '1970-01-01T00:00:00.000Z' });
    // A leap second, as text: the stored object's edits show in later answers.
    fake.getTune(tune.id)!.trained_at = '2016-12-31T23:59:60Z';
    expect((await call(fake, `/tunes/${tune.id}`)).body).toMatchObject({ trained_at: '2016-12-31T23:59:60Z' });
  });

  it('keeps its tunes in a workspace: seen with X-Workspace-Id of it or all; a request without sees the personal scope', async () => {
    const fake = await start({ workspaceId: '4242' });
    const tune = fake.addTune();
    const workspaces: (string | null)[] = [];
    fake.onRequest((event) => workspaces.push(event.workspaceId));
    for (const workspace of ['4242', 'all']) {
      const headers = { ...AUTH, 'x-workspace-id': workspace };
      expect((await call(fake, `/tunes/${tune.id}`, headers)).status).toBe(200);
      expect(await call(fake, '/tunes', headers)).toMatchObject({ status: 200, body: [{ id: tune.id }] });
    }
    for (const headers of [AUTH, { ...AUTH, 'x-workspace-id': '7' }]) {
      expect(await call(fake, `/tunes/${tune.id}`, headers)).toMatchObject({ status: 404, body: { error: 'Not found' } });
      expect(await call(fake, '/tunes', headers)).toMatchObject({ status: 200, body: [] });
    }
    // The key is checked first: the workspace never hides a 401.
    expect((await call(fake, `/tunes/${tune.id}`, { 'x-workspace-id': '4242' })).status).toBe(401);
    expect(workspaces).toEqual(['4242', '4242', 'all', 'all', null, null, '7', '7', '4242']);
  });

  it('rate limits more than maxRps requests in a sliding second, with Retry-After', async () => {
    const fake = await start({ maxRps: 3, retryAfterSeconds: 2 });
    const tune = fake.addTune();
    const responses = await Promise.all(Array.from({ length: 5 }, () => fetch(`${fake.url}/tunes/${tune.id}`, { headers: AUTH })));
    const statuses = responses.map((response) => response.status).sort();
    expect(statuses).toEqual([200, 200, 200, 429, 429]);
    const limited = responses.find((response) => response.status === 429)!;
    expect(limited.headers.get('retry-after')).toBe('2');
    expect(await limited.json()).toEqual({ error: 'Too many requests' });
    await Promise.all(responses.map((response) => response.arrayBuffer().catch(() => undefined)));
    expect(fake.stats.byStatus).toEqual({ 200: 3, 429: 2 });
    expect(fake.stats.requests).toBe(5);

    await sleep(1100);
    expect((await call(fake, `/tunes/${tune.id}`)).status).toBe(200);
  });

  it('sends no Retry-After unless configured', async () => {
    const fake = await start({ maxRps: 1 });
    await call(fake, '/tunes');
    const { status, headers } = await call(fake, '/tunes');
    expect(status).toBe(429);
    expect(headers.get('retry-after')).toBeNull();
  });

  it('consumes injected faults in order, by endpoint, ahead of auth', async () => {
    const fake = await start();
    const tune = fake.addTune();
    fake.injectFaults({ endpoint: 'get', status: 500 });
    fake.injectFaults({ endpoint: 'list', status: 504, body: '{"message":"gateway timeout"}' });
    fake.injectFaults({ status: 503, headers: { 'retry-after': '7' } }, 2);

    const list = await call(fake, '/tunes');
    expect(list).toMatchObject({ status: 504, body: { message: 'gateway timeout' } });
    expect(await call(fake, `/tunes/${tune.id}`)).toMatchObject({ status: 500, body: { error: 'Internal Server Error' } });
    const unavailable = await call(fake, `/tunes/${tune.id}`);
    expect(unavailable.status).toBe(503);
    expect(unavailable.headers.get('retry-after')).toBe('7');
    expect((await call(fake, '/tunes')).status).toBe(503);
    expect((await call(fake, `/tunes/${tune.id}`)).status).toBe(200);

    fake.injectFaults({ status: 401, body: '{"error":"Unauthorized"}' });
    expect((await call(fake, `/tunes/${tune.id}`)).status).toBe(401);

    fake.injectFaults({ status: 500 }, 10);
    fake.clearFaults();
    expect((await call(fake, `/tunes/${tune.id}`)).status).toBe(200);
    expect(fake.stats.byStatus).toEqual({ 200: 2, 401: 1, 500: 1, 503: 2, 504: 1 });
  });

  it('serves a malformed 200 body when scripted', async () => {
    const fake = await start();
    fake.injectFaults({ endpoint: 'get', status: 200, body: '{"id":"not-a-number"}' });
    expect(await call(fake, '/tunes/1')).toMatchObject({ status: 200, body: { id: 'not-a-number' } });
  });

  it('delays answers by latency and fault delay', async () => {
    const fake = await start({ latencyMs: 50 });
    const tune = fake.addTune();
    let started = performance.now();
    await call(fake, `/tunes/${tune.id}`);
    expect(performance.now() - started).toBeGreaterThanOrEqual(45);

    fake.injectFaults({ delayMs: 100, status: 504 });
    started = performance.now();
    expect((await call(fake, `/tunes/${tune.id}`)).status).toBe(504);
    expect(performance.now() - started).toBeGreaterThanOrEqual(140);
  });

  it('tracks peak concurrency and the bytes of the bodies it sent, and resets stats', async () => {
    const fake = await start({ latencyMs: 100 });
    const tune = fake.addTune();
    await Promise.all(Array.from({ length: 4 }, () => call(fake, `/tunes/${tune.id}`)));
    await call(fake, '/tunes');
    const bodyBytes = 5 * Buffer.byteLength(JSON.stringify(tune)) + '[]'.length;
    expect(fake.stats).toMatchObject({ requests: 5, get: 4, list: 1, maxConcurrent: 4, bytes: bodyBytes });

    fake.resetStats();
    expect(fake.stats).toEqual({ requests: 0, get: 0, list: 0, prompt_get: 0, prompt_list: 0, prompt_create: 0, bytes: 0, byStatus: {}, maxConcurrent: 0 });
  });

  it('hangs until closed', async () => {
    const fake = await start();
    fake.injectFaults({ hang: true });
    const pending = fetch(`${fake.url}/tunes`, { headers: AUTH });
    const outcome = await Promise.race([pending.then(() => 'answered', () => 'failed'), sleep(200).then(() => 'hanging')]);
    expect(outcome).toBe('hanging');
    await fake.close();
    await expect(pending).rejects.toThrow();
    expect(fake.stats.byStatus).toEqual({});
  });

  it('truncates a response so the client fails reading it', async () => {
    const fake = await start();
    const tune = fake.addTune();
    fake.injectFaults({ endpoint: 'get', truncate: true });
    const read = fetch(`${fake.url}/tunes/${tune.id}`, { headers: AUTH }).then((response) => response.json());
    await expect(read).rejects.toThrow();
    expect(fake.stats.byStatus).toEqual({ 200: 1 });
    expect((await call(fake, `/tunes/${tune.id}`)).status).toBe(200);
  });

  it('reports each request to listeners until unsubscribed', async () => {
    const fake = await start();
    const events: { method: string; path: string; endpoint: string }[] = [];
    const unsubscribe = fake.onRequest(({ method, path, endpoint, at }) => {
      expect(at).toBeGreaterThan(0);
      events.push({ method, path, endpoint });
    });
    await call(fake, '/tunes?limit=5&before_id=10');
    await call(fake, '/tunes/1');
    await call(fake, '/other');
    unsubscribe();
    await call(fake, '/tunes');
    expect(events).toEqual([
      { method: 'GET', path: '/tunes?limit=5&before_id=10', endpoint: 'list' },
      { method: 'GET', path: '/tunes/1', endpoint: 'get' },
      { method: 'GET', path: '/other', endpoint: 'other' },
    ]);
  });

  it('fires callbacks enveloped or bare and returns the receiver status', async () => {
    const fake = await start();
    const tune = fake.addTune({ trainedAt: new Date() });
    const bodies: unknown[] = [];
    const receiver = createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (chunk: Buffer) => chunks.push(chunk));
      req.on('end', () => {
        bodies.push(JSON.parse(Buffer.concat(chunks).toString()));
        res.writeHead(bodies.length === 1 ? 200 : 202).end();
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/webhooks/astria?secret=s`;
    try {
      expect(await fake.fireCallback(tune.id, url)).toBe(200);
      expect(await fake.fireCallback(tune.id, url, { bare: true })).toBe(202);
    } finally {
      receiver.closeAllConnections();
      await new Promise((resolve) => receiver.close(resolve));
    }
    expect(bodies).toEqual([{ tune: JSON.parse(JSON.stringify(tune)) }, JSON.parse(JSON.stringify(tune))]);
  });
});
