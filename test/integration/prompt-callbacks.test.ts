/**
 * Apps point Astria's prompt callbacks (image generations) at the tune callback's route, and they are
 * applied to the app's generations there. A prompt's id comes from another sequence than tune ids and
 * does collide with them: a prompt must never touch the model whose tune id it happens to equal, nor a
 * tune the generation whose prompt id it equals. Through the sidecar's HTTP webhook and through the
 * library's `acceptAstriaCallback`, on real PostgreSQL, with the simulated Astria posting the bodies.
 */
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { promptSchema } from '../../src/astria/prompt.js';
import { systemClock } from '../../src/clock.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { acceptAstriaCallback, type CallbackResponse } from '../../src/http/callback.js';
import { createHttpServer, type HttpServer } from '../../src/http/server.js';
import { createWebhookHandler } from '../../src/http/webhook.js';
import { createLogger } from '../../src/log.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { applyObservedPrompt } from '../../src/status/apply-prompt.js';
import { createStatusService } from '../../src/status/service.js';
import { documentedPrompt } from '../support/astria-tune.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { HOST_FIXTURES, vibephoto } from '../support/renamed-host-schema.js';

const SECRET = 'prompt-callbacks-secret';
const API_KEY = 'sd_prompt_callbacks_key';
const log = createLogger('silent');

describe.each(HOST_FIXTURES)('prompt callbacks on $name', (fixture) => {
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
    await fixture.install(db.pool);
    await ensureOwnSchema(db.pool, 'astria_reconciler', fixture.host);
    metrics = createMetrics();
    server = createHttpServer({
      pool: db.pool,
      host: fixture.host,
      metrics,
      log,
      webhook: createWebhookHandler({
        secret: SECRET,
        pool: db.pool,
        host: fixture.host,
        service: createStatusService({ pool: db.pool, metrics, host: fixture.host }),
        log,
        clock: systemClock,
        trainingTimeoutMs: 86_400_000,
      }),
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
    await fixture.clear(db.pool);
    await db.pool.query('TRUNCATE astria_reconciler.events, astria_reconciler.callbacks CASCADE');
    tuneId = astria.addTune({ startedTrainingAt: new Date(Date.now() - 60_000) }).id;
    await fixture.seedModels(db.pool, [{ id: MODEL, status: 'TRAINING', trainingJobId: String(tuneId), progress: 10 }]);
  });

  const webhook202s = async () => (await metrics.webhookRequests.get()).values.find((value) => value.labels.code === '202')?.value ?? 0;

  /** The model, the event log and the recorded callback arrivals by kind. */
  async function snapshot() {
    const { rows: events } = await db.pool.query('SELECT kind, count(*)::int AS n FROM astria_reconciler.events GROUP BY kind ORDER BY kind');
    const { rows: callbacks } = await db.pool.query('SELECT kind, tune_id AS id FROM astria_reconciler.callbacks ORDER BY id');
    return { model: await fixture.readModel(db.pool, MODEL), events, callbacks };
  }

  /** A prompt whose id is the waiting model's tune id, finished with images or failed; returns its id. */
  function collidingPrompt(which: 'finished' | 'failed'): number {
    if (astria.getPrompt(tuneId)) astria.removePrompt(tuneId);
    astria.addPrompt(1, { id: tuneId });
    if (which === 'finished') astria.finishPrompt(tuneId);
    else astria.failPrompt(tuneId, 'NSFW content detected');
    return tuneId;
  }

  /** A generation of the waiting model, waiting on prompt `promptId`. */
  async function waitingGeneration(id: string, promptId: number): Promise<void> {
    await fixture.seedGenerations(db.pool, [{ id, modelId: MODEL, status: 'PROCESSING', jobId: String(promptId) }]);
  }

  describe("the sidecar's webhook", () => {
    it.each([
      ['{"prompt": …}', 'finished', 'wrapped', 'COMPLETED'],
      ['the bare prompt', 'finished', 'bare', 'COMPLETED'],
      ['{"prompt": …} of a failed prompt', 'failed', 'wrapped', 'FAILED'],
      ['the bare failed prompt', 'failed', 'bare', 'FAILED'],
    ] as const)('%s whose id is an in-flight tune id: applied to its generation, the model untouched', async (_shape, which, shape, status) => {
      await waitingGeneration('gen-colliding', tuneId);
      const promptId = collidingPrompt(which);

      expect(await astria.firePromptCallback(promptId, webhookUrl, { shape })).toBe(200);

      const generation = await fixture.readGeneration(db.pool, 'gen-colliding');
      expect(generation.status).toBe(status);
      if (status === 'COMPLETED') {
        expect(generation.imageUrls).toEqual(astria.getPrompt(promptId)!.images);
        expect(generation.completedAt).toEqual(new Date(astria.getPrompt(promptId)!.trained_at as string));
      } else expect(generation.errorMessage).toMatch(/NSFW content detected/);
      expect(await snapshot()).toMatchObject({
        model: { status: 'TRAINING', progress: 10 },
        events: [{ kind: 'prompt', n: 1 }],
        callbacks: [{ kind: 'prompt', id: String(promptId) }],
      });
    });

    it('a prompt no generation waits on, whose id is an in-flight tune id: 202, counted, nothing written', async () => {
      const before = await snapshot();
      const counted = await webhook202s();

      expect(await astria.firePromptCallback(collidingPrompt('finished'), webhookUrl, { shape: 'wrapped' })).toBe(202);

      expect(await snapshot()).toEqual(before);
      expect(before).toMatchObject({ model: { status: 'TRAINING', progress: 10 }, events: [], callbacks: [] });
      expect(await webhook202s()).toBe(counted + 1);
    });

    it("a pack's prompts callback (an array): each prompt applied to its own generation", async () => {
      const pack = astria.addPack(tuneId, 3);
      for (const [n, prompt] of pack.entries()) await waitingGeneration(`gen-pack-${n}`, prompt.id);
      astria.finishPrompt(pack[0]!.id);
      astria.failPrompt(pack[1]!.id, 'face not detected');

      expect(await astria.firePromptCallback(pack.map((prompt) => prompt.id), webhookUrl)).toBe(200);

      expect((await fixture.readGeneration(db.pool, 'gen-pack-0')).status).toBe('COMPLETED');
      expect((await fixture.readGeneration(db.pool, 'gen-pack-1')).status).toBe('FAILED');
      expect((await fixture.readGeneration(db.pool, 'gen-pack-2')).status).toBe('PROCESSING');
      expect((await snapshot()).events).toEqual([{ kind: 'prompt', n: 2 }]);
    });

    it('a tune whose id is an in-flight prompt id: applied to the model, the generation untouched', async () => {
      await waitingGeneration('gen-same-id', tuneId);
      astria.train(tuneId);
      expect(await astria.fireCallback(tuneId, webhookUrl)).toBe(200);
      expect(await snapshot()).toMatchObject({ model: { status: 'READY', modelUrl: String(tuneId) }, events: [{ kind: 'tune', n: 1 }], callbacks: [{ kind: 'tune' }] });
      expect((await fixture.readGeneration(db.pool, 'gen-same-id')).status).toBe('PROCESSING');
    });
  });

  describe("the library's acceptAstriaCallback", () => {
    const accept = (body: unknown, pool = db.pool, host = fixture.host): Promise<CallbackResponse> =>
      acceptAstriaCallback(
        {
          givenSecret: SECRET,
          body: (async function* () {
            yield Buffer.from(JSON.stringify(body));
          })(),
        },
        { secret: SECRET, pool, host },
      );

    it.each([
      ['{"prompt": …}', () => ({ prompt: documentedPrompt({ id: tuneId, tune_id: 1 }) }), 'COMPLETED'],
      ['the bare prompt', () => documentedPrompt({ id: tuneId, tune_id: 1 }), 'COMPLETED'],
      ['the bare failed prompt', () => documentedPrompt({ id: tuneId, tune_id: 1, trained_at: null, images: [], user_error: 'NSFW' }), 'FAILED'],
      ["a pack's array", () => [documentedPrompt({ id: tuneId, tune_id: 1 })], 'COMPLETED'],
      ['a prompt wrapped as a tune', () => ({ tune: documentedPrompt({ id: tuneId, tune_id: 1 }) }), 'COMPLETED'],
    ])('%s whose id is an in-flight tune id: applied to its generation, the model untouched', async (_shape, body, status) => {
      await waitingGeneration('gen-library', tuneId);
      const response = await accept(body());
      expect(response).toMatchObject({ status: 200, body: { status: 'ok', kind: 'prompt', matched: 1, applied: 1 } });
      expect((await fixture.readGeneration(db.pool, 'gen-library')).status).toBe(status);
      expect((await fixture.readModel(db.pool, MODEL)).status).toBe('TRAINING');
    });

    it('the tune itself, on the same call, is applied', async () => {
      astria.train(tuneId);
      expect((await accept({ tune: astria.getTune(tuneId) })).status).toBe(200);
      expect((await fixture.readModel(db.pool, MODEL)).status).toBe('READY');
    });

    it('a late callback heals the FAILED the reconciler set; a FAILED the app set stays', async () => {
      await waitingGeneration('gen-ours', tuneId);
      await fixture.seedGenerations(db.pool, [{ id: 'gen-apps', modelId: MODEL, status: 'FAILED', jobId: String(tuneId), errorMessage: 'refused by our moderation' }]);
      const failed = documentedPrompt({ id: tuneId, tune_id: 1, trained_at: null, images: [], user_error: 'Astria was slow' });
      await applyObservedPrompt({ pool: db.pool, host: fixture.host, prompt: promptSchema.parse(failed), source: 'reconciler' });
      expect((await fixture.readGeneration(db.pool, 'gen-ours')).status).toBe('FAILED');

      const done = documentedPrompt({ id: tuneId, tune_id: 1 });
      expect(await accept({ prompt: done })).toMatchObject({ status: 200, body: { matched: 2, applied: 1 } });

      expect(await fixture.readGeneration(db.pool, 'gen-ours')).toMatchObject({ status: 'COMPLETED', imageUrls: done.images, errorMessage: null });
      expect(await fixture.readGeneration(db.pool, 'gen-apps')).toMatchObject({ status: 'FAILED', errorMessage: 'refused by our moderation' });
    });

    it('an app without a generations table: a prompt callback is answered 202 and nothing is written', async () => {
      const bare = await createTestDatabase();
      try {
        // Whatever the names: the bare database has vibephoto's ai_models and no generations table.
        await vibephoto.seedModels(bare.pool, [{ id: MODEL, status: 'TRAINING', trainingJobId: String(tuneId), progress: 10 }]);
        const response = await accept({ prompt: documentedPrompt({ id: tuneId, tune_id: 1 }) }, bare.pool, vibephoto.host);
        expect(response).toEqual({ status: 202, body: { status: 'ignored', reason: 'no generations table', prompts: 1 } });
        expect((await vibephoto.readModel(bare.pool, MODEL)).status).toBe('TRAINING');
      } finally {
        await bare.drop();
      }
    });
  });
});
