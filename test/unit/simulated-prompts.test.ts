import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { createAstriaClient } from '../../src/astria/client.js';
import { parseCallbackBody } from '../../src/astria/callback-body.js';
import { systemClock } from '../../src/clock.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { createLogger } from '../../src/log.js';
import { createMetrics } from '../../src/metrics.js';

const API_KEY = 'sd_test_key';
const AUTH = { authorization: `Bearer ${API_KEY}` };

let astria: SimulatedAstria | undefined;
let receiver: Server | undefined;

afterEach(async () => {
  await astria?.close();
  astria = undefined;
  await new Promise<void>((resolve) => (receiver ? receiver.close(() => resolve()) : resolve()));
  receiver = undefined;
});

async function start(): Promise<SimulatedAstria> {
  astria = await startSimulatedAstria({ apiKey: API_KEY });
  return astria;
}

async function call(fake: SimulatedAstria, path: string, headers: Record<string, string> = AUTH) {
  const response = await fetch(`${fake.url}${path}`, { headers });
  return { status: response.status, body: (await response.json()) as unknown };
}

async function listIds(fake: SimulatedAstria, query: string): Promise<number[]> {
  const { status, body } = await call(fake, `/prompts?${query}`);
  expect(status).toBe(200);
  return (body as { id: number }[]).map((prompt) => prompt.id);
}

/** A loopback app that records the JSON bodies POSTed to it and answers `status`. */
async function startReceiver(status = 200): Promise<{ url: string; bodies: unknown[] }> {
  const bodies: unknown[] = [];
  receiver = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      bodies.push(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      res.writeHead(status).end();
    });
  });
  await new Promise<void>((resolve) => receiver!.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/api/webhooks/astria?type=prompt`, bodies };
}

describe('simulated Astria: prompts', () => {
  it("serves a prompt at /prompts/:id and under its own tune only, as Astria's docs show it", async () => {
    const fake = await start();
    const tune = fake.addTune();
    const other = fake.addTune();
    const prompt = fake.addPrompt(tune.id, { text: 'ohwx man, studio portrait', createdAt: new Date('2026-01-02T03:04:05.006Z') });

    const bare = await call(fake, `/prompts/${prompt.id}`);
    expect(bare.status).toBe(200);
    expect(Object.keys(bare.body as object).sort()).toEqual(
      [
        'id', 'callback', 'text', 'negative_prompt', 'cfg_scale', 'steps', 'seed', 'trained_at', 'started_training_at',
        'created_at', 'updated_at', 'tune_id', 'url', 'images',
      ].sort(),
    );
    expect(bare.body).toMatchObject({
      id: prompt.id,
      tune_id: tune.id,
      text: 'ohwx man, studio portrait',
      images: [],
      trained_at: null,
      created_at: '2026-01-02T03:04:05.006Z',
    });
    expect(await call(fake, `/tunes/${tune.id}/prompts/${prompt.id}`)).toEqual(bare);
    expect(await call(fake, `/tunes/${other.id}/prompts/${prompt.id}`)).toEqual({ status: 404, body: { error: 'Not found' } });
    expect((await call(fake, `/prompts/${prompt.id}`, {})).status).toBe(401);
    expect(fake.stats).toMatchObject({ prompt_get: 4, get: 0 });
  });

  it('creates a queued prompt for an existing tune at POST /tunes/:tune_id/prompts, as an app asks for images', async () => {
    const fake = await start();
    const tune = fake.addTune();
    const create = (tuneId: number, body: unknown, headers: Record<string, string> = AUTH) =>
      fetch(`${fake.url}/tunes/${tuneId}/prompts`, { method: 'POST', headers: { ...headers, 'content-type': 'application/json' }, body: JSON.stringify(body) }).then(
        async (response) => ({ status: response.status, body: (await response.json()) as Record<string, unknown> }),
      );

    const created = await create(tune.id, { prompt: { text: 'ohwx woman, beach', callback: 'https://app.example/api/webhooks/astria?secret=s' } });
    expect(created.status).toBe(201);
    expect(created.body).toMatchObject({ tune_id: tune.id, text: 'ohwx woman, beach', callback: 'https://app.example/api/webhooks/astria?secret=s', images: [], trained_at: null });
    expect((await call(fake, `/tunes/${tune.id}/prompts/${String(created.body.id)}`)).body).toEqual(created.body);
    expect(fake.getPrompt(created.body.id as number)).toEqual(created.body);

    expect(await create(tune.id + 1, { prompt: { text: 'x' } })).toEqual({ status: 404, body: { error: 'Not found' } });
    expect((await create(tune.id, { prompt: { text: ' ' } })).status).toBe(422);
    expect((await create(tune.id, { prompt: { text: 'x' } }, {})).status).toBe(401);
    expect(fake.stats).toMatchObject({ prompt_create: 4, prompt_get: 1 });
  });

  it('keeps prompt ids apart from tune ids: the same number names a tune and an unrelated prompt', async () => {
    const fake = await start();
    const tune = fake.addTune();
    const prompt = fake.addPrompt(tune.id);
    expect(prompt.id).toBe(tune.id);
    expect((await call(fake, `/tunes/${tune.id}`)).body).toMatchObject({ id: tune.id, title: `Tune ${tune.id}` });
    expect((await call(fake, `/prompts/${prompt.id}`)).body).toMatchObject({ id: prompt.id, tune_id: tune.id, images: [] });
  });

  it('makes a pack: a burst of consecutive prompt ids for one tune', async () => {
    const fake = await start();
    const first = fake.addTune();
    const second = fake.addTune();
    const packOne = fake.addPack(first.id, 30);
    const packTwo = fake.addPack(second.id, 25, (index) => ({ text: `look ${index}` }));
    const ids = [...packOne, ...packTwo].map((prompt) => prompt.id);
    expect(ids).toEqual(Array.from({ length: 55 }, (_, index) => ids[0]! + index));
    expect(packTwo.every((prompt) => prompt.tune_id === second.id)).toBe(true);
    expect(packTwo[3]!.text).toBe('look 3');
  });

  it('lists prompts newest first with keyset paging (before_id, limit ≤ 120) until an empty page', async () => {
    const fake = await start();
    const tune = fake.addTune();
    const ids = fake.addPack(tune.id, 150).map((prompt) => prompt.id);
    const newest = ids[ids.length - 1]!;

    expect(await listIds(fake, '')).toEqual(ids.slice(-20).reverse()); // Astria's default page of 20
    const firstPage = await listIds(fake, 'limit=500');
    expect(firstPage).toHaveLength(120);
    expect(firstPage[0]).toBe(newest);
    const secondPage = await listIds(fake, `limit=120&before_id=${firstPage[119]}`);
    expect(secondPage).toEqual(ids.slice(0, 30).reverse());
    expect(await listIds(fake, `limit=120&before_id=${ids[0]}`)).toEqual([]);
    expect(fake.stats).toMatchObject({ prompt_list: 4, list: 0 });
  });

  it("lists one tune's prompts at /tunes/:tune_id/prompts, paged the same way", async () => {
    const fake = await start();
    const first = fake.addTune();
    const second = fake.addTune();
    const mine = fake.addPack(first.id, 5).map((prompt) => prompt.id);
    fake.addPack(second.id, 5);
    mine.push(...fake.addPack(first.id, 5).map((prompt) => prompt.id));

    const ofTune = async (query: string) => ((await call(fake, `/tunes/${first.id}/prompts?${query}`)).body as { id: number }[]).map((prompt) => prompt.id);
    expect(await ofTune('limit=120')).toEqual([...mine].reverse());
    expect(await ofTune(`limit=3&before_id=${mine[7]}`)).toEqual([mine[6], mine[5], mine[4]]);
    expect(await ofTune('limit=2&offset=8')).toEqual([mine[1], mine[0]]);
    expect(fake.stats).toMatchObject({ prompt_list: 3, list: 0 });
  });

  it('answers 400 to an offset above 10,000 and to malformed paging', async () => {
    const fake = await start();
    fake.addPrompt(fake.addTune().id);
    expect((await call(fake, '/prompts?offset=10000')).status).toBe(200);
    expect(await call(fake, '/prompts?offset=10001')).toMatchObject({ status: 400, body: { error: 'offset must be at most 10000' } });
    expect((await call(fake, '/prompts?limit=abc')).status).toBe(400);
  });

  it('starts, finishes (with and without images), fails and deletes prompts', async () => {
    const fake = await start();
    const tune = fake.addTune();
    const [withImages, withoutImages, failed, deleted] = fake.addPack(tune.id, 4).map((prompt) => prompt.id) as [number, number, number, number];
    const startedAt = new Date('2026-02-01T10:00:00.000Z');
    const doneAt = new Date('2026-02-01T10:00:40.000Z');

    fake.startPrompt(withImages, startedAt);
    expect((await call(fake, `/prompts/${withImages}`)).body).toMatchObject({ started_training_at: startedAt.toISOString(), trained_at: null });
    fake.finishPrompt(withImages, { at: doneAt });
    fake.finishPrompt(withoutImages, { images: [], at: doneAt });
    fake.failPrompt(failed, 'Face not detected');
    fake.removePrompt(deleted);

    const done = (await call(fake, `/prompts/${withImages}`)).body as { images: string[] };
    expect(done).toMatchObject({ trained_at: doneAt.toISOString(), started_training_at: startedAt.toISOString() });
    expect(done.images).toHaveLength(4);
    expect(new Set(done.images).size).toBe(4);
    expect((await call(fake, `/prompts/${withoutImages}`)).body).toMatchObject({ trained_at: doneAt.toISOString(), images: [] });
    expect((await call(fake, `/prompts/${failed}`)).body).toMatchObject({ user_error: 'Face not detected', trained_at: null, images: [] });
    expect(await call(fake, `/prompts/${deleted}`)).toEqual({ status: 404, body: { error: 'Not found' } });
    expect(await listIds(fake, '')).toEqual([failed, withoutImages, withImages]);
  });

  it("is read by the project's Astria client: pages, single GETs and 404s", async () => {
    const fake = await start();
    const tune = fake.addTune();
    const pack = fake.addPack(tune.id, 3);
    fake.finishPrompt(pack[0]!.id);
    fake.removePrompt(pack[2]!.id);
    const client = createAstriaClient({
      apiUrl: fake.url,
      apiKey: API_KEY,
      maxRps: 1_000,
      concurrency: 2,
      timeoutMs: 10_000,
      log: createLogger('silent'),
      metrics: createMetrics(),
      clock: systemClock,
    });
    try {
      const page = await client.listPrompts({ limit: 120 });
      expect(page).toMatchObject({ kind: 'page', skipped: 0, nextBeforeId: pack[0]!.id });
      if (page.kind === 'page') expect(page.prompts.map((prompt) => [prompt.id, prompt.images.length])).toEqual([[pack[1]!.id, 0], [pack[0]!.id, 4]]);
      expect(await client.getPrompt(String(tune.id), String(pack[0]!.id))).toMatchObject({ kind: 'prompt', prompt: { id: pack[0]!.id } });
      expect(await client.getPrompt(null, String(pack[2]!.id))).toEqual({ kind: 'gone', promptId: String(pack[2]!.id) });
    } finally {
      await client.close();
    }
  });

  it('scripts faults for prompt requests alone', async () => {
    const fake = await start();
    const tune = fake.addTune();
    const prompt = fake.addPrompt(tune.id);
    fake.injectFaults({ endpoint: 'prompt_get', status: 502 });
    fake.injectFaults({ endpoint: 'prompt_list', status: 503 });
    expect((await call(fake, `/tunes/${tune.id}`)).status).toBe(200);
    expect((await call(fake, '/tunes')).status).toBe(200);
    expect((await call(fake, `/prompts/${prompt.id}`)).status).toBe(502);
    expect((await call(fake, '/prompts')).status).toBe(503);
    expect((await call(fake, `/prompts/${prompt.id}`)).status).toBe(200);
  });

  it.each([
    ['wrapped', (id: number) => ({ prompt: expect.objectContaining({ id }) })],
    ['bare', (id: number) => expect.objectContaining({ id })],
  ] as const)('POSTs one prompt %s to the callback URL', async (shape, expected) => {
    const fake = await start();
    const app = await startReceiver();
    const prompt = fake.addPrompt(fake.addTune().id);
    fake.finishPrompt(prompt.id);
    expect(await fake.firePromptCallback(prompt.id, app.url, { shape })).toBe(200);
    expect(app.bodies).toEqual([expected(prompt.id)]);
    expect(parseCallbackBody(app.bodies[0])).toMatchObject({ kind: 'prompts', prompts: [{ id: prompt.id }] });
  });

  it("POSTs a pack's prompts as one array (prompts_callback), and reports the app's answer", async () => {
    const fake = await start();
    const app = await startReceiver(503);
    const pack = fake.addPack(fake.addTune().id, 20);
    for (const prompt of pack) fake.finishPrompt(prompt.id);
    const ids = pack.map((prompt) => prompt.id);

    expect(await fake.firePromptCallback(ids, app.url)).toBe(503);
    expect(parseCallbackBody(app.bodies[0])).toMatchObject({ kind: 'prompts', invalid: 0, prompts: ids.map((id) => ({ id })) });
    await expect(fake.firePromptCallback(ids, app.url, { shape: 'bare' })).rejects.toThrow('exactly one prompt');
  });
});
