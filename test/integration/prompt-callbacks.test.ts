/**
 * Apps point Astria's prompt callbacks (image generations) at the tune callback's route. A prompt's id
 * comes from another sequence than tune ids and does collide with them: a prompt must never be applied
 * to the model whose tune id it happens to equal. Through the sidecar's HTTP webhook and through the
 * library's `acceptAstriaCallback`, on real PostgreSQL, with the simulated Astria posting the bodies.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/clock.js';
import { seedModels } from '../../dev/host-schema.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { acceptAstriaCallback, type CallbackResponse } from '../../src/http/callback.js';
import { createHttpServer, type HttpServer } from '../../src/http/server.js';
import { createWebhookHandler } from '../../src/http/webhook.js';
import { createLogger } from '../../src/log.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { createStatusService } from '../../src/status/service.js';
import { documentedPrompt } from '../support/astria-tune.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';

const SECRET = 'prompt-callbacks-secret';
const API_KEY = 'sd_prompt_callbacks_key';
const log = createLogger('silent');

let db: TestDatabase;
let astria: SimulatedAstria;
let server: HttpServer;
let metrics: Metrics;
let webhookUrl: string;

/** A model in flight on Astria, its tune not finished, waiting for its own callback. */
let tuneId: number;
const MODEL = 'waiting-model';

beforeAll(async () => {
  db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
  metrics = createMetrics();
  server = createHttpServer({
    pool: db.pool,
    metrics,
    log,
    webhook: createWebhookHandler({ secret: SECRET, pool: db.pool, service: createStatusService({ pool: db.pool, metrics }), log, clock: systemClock, trainingTimeoutMs: 86_400_000 }),
  });
  const port = ((await server.listen(0, '127.0.0.1')) as AddressInfo).port;
  webhookUrl = `http://127.0.0.1:${port}/webhooks/astria?secret=${SECRET}`;
  astria = await startSimulatedAstria({ apiKey: API_KEY });
}, 60_000);

afterAll(async () => {
  await server?.close();
  await astria?.close();
  await db?.drop();
});

beforeEach(async () => {
  await db.pool.query('DELETE FROM ai_models');
  await db.pool.query('TRUNCATE astria_reconciler.events, astria_reconciler.callbacks CASCADE');
  tuneId = astria.addTune({ startedTrainingAt: new Date(Date.now() - 60_000) }).id;
  await seedModels(db.pool, [{ id: MODEL, status: 'TRAINING', trainingJobId: String(tuneId), progress: 10 }]);
});

const webhook202s = async () => (await metrics.webhookRequests.get()).values.find((value) => value.labels.code === '202')?.value ?? 0;

/** The row, the event log and the recorded callback arrivals: everything a write would change. */
async function snapshot() {
  const { rows: events } = await db.pool.query('SELECT count(*)::int AS n FROM astria_reconciler.events');
  const { rows: callbacks } = await db.pool.query('SELECT count(*)::int AS n FROM astria_reconciler.callbacks');
  return { model: await readModel(db.pool, MODEL), events: events[0].n as number, callbacks: callbacks[0].n as number };
}

/** A prompt whose id is the waiting model's tune id, finished with images or failed; returns its id. */
function collidingPrompt(which: 'finished' | 'failed'): number {
  if (astria.getPrompt(tuneId)) astria.removePrompt(tuneId);
  astria.addPrompt(1, { id: tuneId });
  if (which === 'finished') astria.finishPrompt(tuneId);
  else astria.failPrompt(tuneId, 'NSFW content detected');
  return tuneId;
}

describe("the sidecar's webhook", () => {
  it.each([
    ['{"prompt": …}', 'finished', 'wrapped'],
    ['the bare prompt', 'finished', 'bare'],
    ['{"prompt": …} of a failed prompt', 'failed', 'wrapped'],
    ['the bare failed prompt', 'failed', 'bare'],
  ] as const)('%s whose id is an in-flight tune id: 202, counted, the model untouched', async (_shape, which, shape) => {
    const before = await snapshot();
    const counted = await webhook202s();

    expect(await astria.firePromptCallback(collidingPrompt(which), webhookUrl, { shape })).toBe(202);

    expect(await snapshot()).toEqual(before);
    expect(before).toMatchObject({ model: { status: 'TRAINING', progress: 10 }, events: 0, callbacks: 0 });
    expect(await webhook202s()).toBe(counted + 1);
  });

  it("a pack's prompts callback (an array) with colliding ids: 202 saying it is not a tune, nothing written", async () => {
    const before = await snapshot();
    const response = await fetch(webhookUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify([documentedPrompt({ id: tuneId, tune_id: 1 }), documentedPrompt({ id: tuneId + 1, tune_id: 1 })]),
    });
    expect(response.status).toBe(202);
    expect(await response.json()).toEqual({ status: 'ignored', reason: 'not a tune', ignored: 'prompt', prompts: 2 });
    expect(await snapshot()).toEqual(before);
  });

  it('the same route still applies the tune callback itself', async () => {
    astria.train(tuneId);
    expect(await astria.fireCallback(tuneId, webhookUrl)).toBe(200);
    expect(await snapshot()).toMatchObject({ model: { status: 'READY', modelUrl: String(tuneId) }, events: 1, callbacks: 1 });
  });
});

describe("the library's acceptAstriaCallback", () => {
  const accept = (body: unknown): Promise<CallbackResponse> =>
    acceptAstriaCallback(
      {
        givenSecret: SECRET,
        body: (async function* () {
          yield Buffer.from(JSON.stringify(body));
        })(),
      },
      { secret: SECRET, pool: db.pool },
    );

  it.each([
    ['{"prompt": …}', () => ({ prompt: documentedPrompt({ id: tuneId, tune_id: 1 }) })],
    ['the bare prompt', () => documentedPrompt({ id: tuneId, tune_id: 1 })],
    ['the bare failed prompt', () => documentedPrompt({ id: tuneId, tune_id: 1, trained_at: null, images: [], user_error: 'NSFW' })],
    ["a pack's array", () => [documentedPrompt({ id: tuneId, tune_id: 1 })]],
    ['a prompt wrapped as a tune', () => ({ tune: documentedPrompt({ id: tuneId, tune_id: 1 }) })],
  ])('%s whose id is an in-flight tune id: 202 "not a tune", the model untouched', async (_shape, body) => {
    const before = await snapshot();
    const response = await accept(body());
    expect(response).toMatchObject({ status: 202, body: { status: 'ignored', reason: 'not a tune', ignored: 'prompt' } });
    expect(await snapshot()).toEqual(before);
  });

  it('the tune itself, on the same call, is applied', async () => {
    astria.train(tuneId);
    expect((await accept({ tune: astria.getTune(tuneId) })).status).toBe(200);
    expect((await readModel(db.pool, MODEL)).status).toBe('READY');
  });
});
