/**
 * examples/nextjs built and started for real (`next build`, `next start` on loopback), its page in
 * headless Chromium, the sidecar daemon (built CLI) beside it, Astria the loopback simulation, the app's
 * tables in a `?schema=` of their own. The page of the signed-in user shows "Pronto" after:
 * (a) Astria's callback through the app's webhook route; (b) the sidecar recovering a callback that
 * never came; (c) the app's LISTEN connection being killed (the stream reconnects and re-reads).
 * Progress moves live; another user's page shows none of it. With the stream route answering 503, the
 * page polls its status route and still shows "Pronto". Then 200 failing trainings, their
 * callbacks racing the sidecar: exactly one credit refund each, whoever applied the failure.
 * Generations: images asked for on the page (the app creates the prompt on the fake Astria) appear
 * live under their model after the prompt's callback reaches the app's route, and after the sidecar
 * recovers a callback that never came, each stored once; a failed prompt is refunded exactly once
 * and its message shown, and a heal takes the refund back once.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pg from 'pg';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDatabase, dropDatabase } from '../../dev/embedded-postgres.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { createStatusService } from '../../src/status/service.js';
import {
  buildExample,
  chromiumPath,
  exampleMissing,
  launchChromium,
  migrateExample,
  seedExampleModels,
  startExample,
  startSidecar,
  waitUntil,
  type RunningProcess,
} from '../../bench/nextjs-app.js';

const APP_SCHEMA = 'app';
const WEBHOOK_SECRET = 'browser-webhook-secret';
const BROADCAST_HTTP_SECRET = 'browser-broadcast-secret';
const API_KEY = 'sd_browser_key';
const REFUND_RACE_MODELS = 200;
const TRAINING_CREDITS = 10; // examples/nextjs/lib/refunds.ts
const GENERATION_CREDITS = 4; // examples/nextjs/lib/astria.ts
const START_CREDITS = 100;
/** A 1×1 PNG: what the images' host serves, so the page's <img> elements really load. */
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');

const chromium = chromiumPath();
const skipReason = chromium === null ? 'chromium is not installed (apt-get install chromium; .ci/run does)' : exampleMissing();
if (skipReason) console.log(`[skip] examples/nextjs browser test: ${skipReason}`);

describe.skipIf(skipReason !== null)('examples/nextjs in a browser', () => {
  const adminUrl = inject('adminDatabaseUrl');
  const dbName = `t_${randomBytes(6).toString('hex')}`;
  let pool: pg.Pool;
  let databaseUrl: string;
  let astria: SimulatedAstria;
  let app: RunningProcess;
  let daemon: RunningProcess | undefined;
  let browser: Browser;
  let imageHost: Server;
  let imageHostUrl: string;

  beforeAll(async () => {
    await buildExample();
    const url = await createDatabase(adminUrl, dbName);
    await migrateExample(url, APP_SCHEMA);
    databaseUrl = `${url}${url.includes('?') ? '&' : '?'}schema=${APP_SCHEMA}`;
    pool = new pg.Pool({ connectionString: url, options: `-c search_path=${APP_SCHEMA}`, max: 5 });
    pool.on('error', () => undefined);
    astria = await startSimulatedAstria({ apiKey: API_KEY });
    imageHost = createServer((_request, response) => response.writeHead(200, { 'content-type': 'image/png' }).end(PNG));
    await new Promise<void>((resolve) => imageHost.listen(0, '127.0.0.1', resolve));
    imageHostUrl = `http://127.0.0.1:${(imageHost.address() as AddressInfo).port}`;
    app = await startExample({
      DATABASE_URL: databaseUrl,
      WEBHOOK_SECRET,
      DEMO_AUTH: '1',
      BROADCAST: 'pg,http',
      BROADCAST_HTTP_SECRET,
      ASTRIA_API_URL: astria.url,
      ASTRIA_API_KEY: API_KEY,
    });
    browser = await launchChromium(chromium!);
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    await daemon?.stop();
    await app?.stop();
    await astria?.close();
    await new Promise((resolve) => (imageHost ? imageHost.close(resolve) : resolve(undefined)));
    await pool?.end();
    await dropDatabase(adminUrl, dbName).catch(() => undefined);
  }, 60_000);

  async function openAs(userId: string): Promise<Page> {
    const context = await browser.newContext();
    await context.addCookies([{ name: 'demo_user', value: userId, url: app.url }]);
    const page = await context.newPage();
    await page.goto(app.url);
    // The list is read once the event stream is open (its `ready`): from then on nothing is missed.
    await page.waitForFunction(`document.querySelector('main') && !document.body.textContent.includes('Carregando')`);
    return page;
  }

  const textOf = (page: Page, modelId: string) => page.locator(`[data-model-id="${modelId}"]`).textContent({ timeout: 1_000 }).catch(() => null);

  async function expectText(page: Page, modelId: string, text: string, timeoutMs = 20_000): Promise<void> {
    await page.locator(`[data-model-id="${modelId}"]`).filter({ hasText: text }).waitFor({ timeout: timeoutMs });
    expect(await textOf(page, modelId)).toBe(text);
  }

  /** The sidecar as the app's operator runs it: its dispatcher delivers to the app's broadcast receiver. */
  const startSidecarBesideApp = () =>
    startSidecar({
      DATABASE_URL: databaseUrl,
      ASTRIA_API_KEY: API_KEY,
      ASTRIA_API_URL: astria.url,
      RECONCILER_INTERVAL: '500ms',
      RECONCILER_STUCK_AFTER: '0s',
      WEBHOOK_SECRET,
      BROADCAST: 'pg,http',
      BROADCAST_HTTP_URL: `${app.url}/api/reconciler/events`,
      BROADCAST_HTTP_SECRET,
      LOG_LEVEL: 'warn',
    });

  /** Until every `http` delivery of `userId`'s events has reached the app's receiver. */
  const deliveredTo = (userId: string) =>
    waitUntil(
      async () => {
        const { rows } = await pool.query<{ pending: number }>(
          `SELECT count(*)::int AS pending FROM astria_reconciler.deliveries d JOIN astria_reconciler.events e ON e.seq = d.event_seq
           WHERE d.delivered_at IS NULL AND e.user_id = $1`,
          [userId],
        );
        return rows[0]!.pending === 0;
      },
      60_000,
      `every http delivery of ${userId}’s events to be delivered`,
    );

  const eventSource = async (modelId: string) =>
    (await pool.query<{ source: string }>(`SELECT source FROM astria_reconciler.events WHERE model_id = $1`, [modelId])).rows.map((row) => row.source);

  it('shows each change live to its owner only, whichever path brought it', async () => {
    const [webhookTune, lostTune, reconnectTune, bobTune] = [0, 1, 2, 3].map(() => astria.addTune({ startedTrainingAt: new Date() }).id);
    await seedExampleModels(pool, 'alice', [
      { id: 'alice-webhook', tuneId: webhookTune! },
      // The same tune, another model: a callback naming alice-webhook (&model=) leaves it alone.
      { id: 'alice-same-tune', tuneId: webhookTune! },
      { id: 'alice-lost', tuneId: lostTune! },
      { id: 'alice-reconnect', tuneId: reconnectTune! },
    ]);
    await seedExampleModels(pool, 'bob', [{ id: 'bob-model', tuneId: bobTune! }]);
    const alice = await openAs('alice');
    const bob = await openAs('bob');
    await expectText(alice, 'alice-webhook', 'Preparando... (0%)');
    expect(await bob.locator('[data-model-id]').evaluateAll((nodes) => nodes.map((node) => node.getAttribute('data-model-id')))).toEqual(['bob-model']);

    // Progress, as the sidecar's poller writes it: the figure moves without a reload.
    const service = createStatusService({ pool });
    for (const progress of [25, 60]) {
      await service.apply(
        { modelId: 'alice-lost', userId: 'alice', from: 'TRAINING', to: 'TRAINING', expected: { trainingJobId: String(lostTune), errorMessage: null }, changes: { progress } },
        'reconciler',
      );
      await expectText(alice, 'alice-lost', `Preparando... (${progress}%)`);
    }

    // (a) Astria's callback through the app's route.
    astria.train(webhookTune!);
    expect(await astria.fireCallback(webhookTune!, `${app.url}/api/webhooks/astria?secret=${WEBHOOK_SECRET}&model=alice-webhook`)).toBe(200);
    await expectText(alice, 'alice-webhook', 'Pronto');
    expect(await eventSource('alice-webhook')).toEqual(['webhook']);
    expect(await eventSource('alice-same-tune')).toEqual([]);
    expect(await textOf(alice, 'alice-same-tune')).toBe('Preparando... (0%)');

    // (b) A callback that never came: the sidecar finds it.
    daemon = await startSidecarBesideApp();
    astria.train(lostTune!);
    await expectText(alice, 'alice-lost', 'Pronto', 30_000);
    expect(await eventSource('alice-lost')).toEqual(['reconciler']);

    // (c) The app's LISTEN connection dies; the change committed meanwhile is re-read on reconnect.
    const listeners = async () =>
      (await pool.query<{ pid: number }>(`SELECT pid FROM pg_stat_activity WHERE application_name = 'app-model-events' AND datname = current_database()`)).rows.map(
        (row) => row.pid,
      );
    const before = await listeners();
    expect(before.length).toBeGreaterThan(0);
    await pool.query('SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid', [before]);
    await service.apply(
      { modelId: 'alice-reconnect', userId: 'alice', from: 'TRAINING', to: 'READY', expected: { trainingJobId: String(reconnectTune), errorMessage: null }, changes: { progress: 100 } },
      'reconciler',
    );
    await expectText(alice, 'alice-reconnect', 'Pronto');
    const after = await listeners();
    expect(after.some((pid) => !before.includes(pid))).toBe(true);

    // Bob saw none of it, and his own model is untouched.
    expect(await bob.locator('[data-model-id]').evaluateAll((nodes) => nodes.map((node) => node.getAttribute('data-model-id')))).toEqual(['bob-model']);
    expect(await textOf(bob, 'bob-model')).toBe('Preparando... (0%)');
    const bobSees = (await bob.evaluate(`fetch('/api/models').then((response) => response.json())`)) as { id: string }[];
    expect(bobSees.map((model) => model.id)).toEqual(['bob-model']);
  }, 120_000);

  it('falls back to polling its status route while the event stream is down, and still shows "Pronto"', async () => {
    const tune = astria.addTune({ startedTrainingAt: new Date() }).id;
    await seedExampleModels(pool, 'dave', [{ id: 'dave-polled', tuneId: tune }]);
    const context = await browser.newContext();
    await context.addCookies([{ name: 'demo_user', value: 'dave', url: app.url }]);
    const page = await context.newPage();
    // The stream route answers 503 (a proxy cutting it, an overloaded instance): no event reaches the page.
    let streamRequests = 0;
    await page.route('**/api/models/events', (route) => {
      streamRequests++;
      return route.fulfill({ status: 503, body: 'stream unavailable' });
    });
    const polls: URL[] = [];
    page.on('request', (request) => {
      const url = new URL(request.url());
      if (url.pathname === '/api/models/status') polls.push(url);
    });
    await page.goto(app.url);
    await expectText(page, 'dave-polled', 'Preparando... (0%)');

    await ensureOwnSchema(pool, 'astria_reconciler'); // when this case runs alone
    await createStatusService({ pool }).apply(
      { modelId: 'dave-polled', userId: 'dave', from: 'TRAINING', to: 'READY', expected: { trainingJobId: String(tune), errorMessage: null }, changes: { progress: 100 } },
      'reconciler',
    );
    await expectText(page, 'dave-polled', 'Pronto', 15_000);
    expect(streamRequests).toBeGreaterThan(0);
    expect(polls.length).toBeGreaterThan(0);
    expect(polls.map((url) => url.searchParams.get('ids'))).toEqual(polls.map(() => 'dave-polled'));
    await context.close();
  }, 60_000);

  it(`refunds each of ${REFUND_RACE_MODELS} failed trainings exactly once, the webhook route racing the sidecar`, async () => {
    expect(daemon, 'the previous test started the sidecar').toBeDefined();
    const tunes = astria.addTunes(REFUND_RACE_MODELS, () => ({ startedTrainingAt: new Date() })).map((tune) => tune.id);
    const models = tunes.map((tuneId, i) => ({ id: `carol-${String(i).padStart(3, '0')}`, tuneId }));
    await seedExampleModels(pool, 'carol', models);
    // Each training fails and its callback is fired at once, 10 ms apart: over two seconds, the
    // sidecar's passes (every 500 ms) find some before their callback is applied, others after.
    const statuses = await Promise.all(
      tunes.map(async (tuneId, i) => {
        await new Promise((resolve) => setTimeout(resolve, i * 10));
        astria.fail(tuneId, 'Treinamento falhou');
        return astria.fireCallback(tuneId, `${app.url}/api/webhooks/astria?secret=${WEBHOOK_SECRET}`);
      }),
    );
    expect(statuses.every((status) => status === 200)).toBe(true);

    await deliveredTo('carol');
    const events = await pool.query<{ model_id: string; source: string; event_id: string }>(
      `SELECT model_id, source, event_id FROM astria_reconciler.events WHERE user_id = 'carol' AND to_status = 'ERROR' ORDER BY model_id`,
    );
    expect(events.rows.map((row) => row.model_id)).toEqual(models.map((model) => model.id));
    const refunds = await pool.query<{ modelId: string; eventId: string }>(`SELECT "modelId", "eventId" FROM credit_refunds WHERE "userId" = 'carol' ORDER BY "modelId"`);
    expect(refunds.rows).toEqual(events.rows.map((row) => ({ modelId: row.model_id, eventId: row.event_id })));
    const credits = await pool.query<{ credits: number }>(`SELECT credits FROM demo_users WHERE id = 'carol'`);
    expect(credits.rows[0]!.credits).toBe(REFUND_RACE_MODELS * TRAINING_CREDITS);
    const bySource = events.rows.reduce<Record<string, number>>((counts, row) => ({ ...counts, [row.source]: (counts[row.source] ?? 0) + 1 }), {});
    console.log(`[refund race] failures applied by source: ${JSON.stringify(bySource)}`);

    const carol = await openAs('carol');
    await expectText(carol, 'carol-000', 'Astria training failed: Treinamento falhou');
  }, 120_000);

  it('takes a refund back when the failure heals, exactly once each, whoever applied either and in whichever order they arrive', async () => {
    expect(daemon, 'the first test started the sidecar').toBeDefined();
    const credits = async () => (await pool.query<{ credits: number }>(`SELECT credits FROM demo_users WHERE id = 'dave'`)).rows[0]!.credits;
    const statusEvents = async (modelId: string) =>
      (
        await pool.query<{ event_id: string; to_status: string; source: string }>(
          `SELECT event_id, to_status, source FROM astria_reconciler.events WHERE model_id = $1 ORDER BY seq`,
          [modelId],
        )
      ).rows;
    /** The model's refunds and reversals: [refund event, the READY event that took it back (or null)] and reversals still waiting. */
    const ledger = async (modelId: string) => ({
      refunds: (
        await pool.query<{ eventId: string; reversedBy: string | null }>(
          `SELECT r."eventId", v."eventId" AS "reversedBy" FROM credit_refunds r LEFT JOIN credit_refund_reversals v ON v."refundEventId" = r."eventId"
            WHERE r."modelId" = $1 ORDER BY r."createdAt"`,
          [modelId],
        )
      ).rows.map((row) => [row.eventId, row.reversedBy]),
      waiting: (await pool.query<{ eventId: string }>(`SELECT "eventId" FROM credit_refund_reversals WHERE "modelId" = $1 AND "refundEventId" IS NULL`, [modelId])).rows.map(
        (row) => row.eventId,
      ),
    });

    // Two trainings started a day ago and still running: the sidecar times them out (ERROR, refunded
    // through the app's broadcast receiver).
    const dayAgo = new Date(Date.now() - 25 * 3_600_000);
    const [healedByApp, healedBySidecar] = [0, 1].map(() => astria.addTune({ startedTrainingAt: dayAgo }).id);
    await seedExampleModels(pool, 'dave', [
      { id: 'dave-healed-by-app', tuneId: healedByApp!, updatedAt: dayAgo },
      { id: 'dave-healed-by-sidecar', tuneId: healedBySidecar!, updatedAt: dayAgo },
    ]);
    await waitUntil(async () => (await ledger('dave-healed-by-app')).refunds.length + (await ledger('dave-healed-by-sidecar')).refunds.length === 2, 30_000, 'both timeouts refunded');
    await deliveredTo('dave');
    expect(await credits()).toBe(2 * TRAINING_CREDITS);
    const [appError] = await statusEvents('dave-healed-by-app');
    expect(appError).toMatchObject({ to_status: 'ERROR', source: 'reconciler' });

    // The tune trains after all; its callback heals the model through the app's route: the refund is
    // taken back by the hook, in the transition's own transaction (already when the route answers).
    astria.train(healedByApp!);
    expect(await astria.fireCallback(healedByApp!, `${app.url}/api/webhooks/astria?secret=${WEBHOOK_SECRET}&model=dave-healed-by-app`)).toBe(200);
    const appReady = (await statusEvents('dave-healed-by-app'))[1]!;
    expect(appReady).toMatchObject({ to_status: 'READY', source: 'webhook' });
    expect(await credits()).toBe(TRAINING_CREDITS);
    expect(await ledger('dave-healed-by-app')).toEqual({ refunds: [[appError!.event_id, appReady.event_id]], waiting: [] });

    // The other heals through the sidecar's own webhook: taken back through the broadcast receiver.
    astria.train(healedBySidecar!);
    expect(await astria.fireCallback(healedBySidecar!, `${daemon!.url}/webhooks/astria?secret=${WEBHOOK_SECRET}&model=dave-healed-by-sidecar`)).toBe(200);
    await deliveredTo('dave');
    const [sidecarError, sidecarReady] = await statusEvents('dave-healed-by-sidecar');
    expect(sidecarReady).toMatchObject({ to_status: 'READY' });
    expect(await ledger('dave-healed-by-sidecar')).toEqual({ refunds: [[sidecarError!.event_id, sidecarReady!.event_id]], waiting: [] });
    expect(await credits()).toBe(0);

    // The READY first, the refund after: the sidecar's ERROR is still in its outbox (the sidecar is
    // down) when the callback heals the model through the app. Nothing to take back yet; the refund
    // that then arrives is taken back as it is made.
    await daemon!.stop();
    daemon = undefined;
    const lateTune = astria.addTune({ startedTrainingAt: new Date() }).id;
    await seedExampleModels(pool, 'dave', [{ id: 'dave-refund-late', tuneId: lateTune }]);
    const sidecarService = createStatusService({ pool, transports: ['pg', 'http'] });
    const timedOut = await sidecarService.apply(
      {
        modelId: 'dave-refund-late',
        userId: 'dave',
        from: 'TRAINING',
        to: 'ERROR',
        expected: { trainingJobId: String(lateTune), errorMessage: null },
        changes: { errorMessage: `Astria tune ${lateTune} not found`, estimatedTime: null },
      },
      'reconciler',
    );
    expect(timedOut.applied).toBe(true);
    astria.train(lateTune);
    expect(await astria.fireCallback(lateTune, `${app.url}/api/webhooks/astria?secret=${WEBHOOK_SECRET}&model=dave-refund-late`)).toBe(200);
    const [lateError, lateReady] = await statusEvents('dave-refund-late');
    expect([lateError?.to_status, lateReady?.to_status]).toEqual(['ERROR', 'READY']);
    expect(await ledger('dave-refund-late')).toEqual({ refunds: [], waiting: [lateReady!.event_id] });
    expect(await credits()).toBe(0);

    daemon = await startSidecarBesideApp();
    await deliveredTo('dave');
    expect(await ledger('dave-refund-late')).toEqual({ refunds: [[lateError!.event_id, lateReady!.event_id]], waiting: [] });
    expect(await credits()).toBe(0);

    // Every event of dave's was delivered to the receiver too (the hook's own included): still one row each.
    const rows = await pool.query<{ refunds: number; reversals: number }>(
      `SELECT (SELECT count(*)::int FROM credit_refunds WHERE "userId" = 'dave') AS refunds,
              (SELECT count(*)::int FROM credit_refund_reversals WHERE "userId" = 'dave') AS reversals`,
    );
    expect(rows.rows[0]).toEqual({ refunds: 3, reversals: 3 });

    const dave = await openAs('dave');
    for (const modelId of ['dave-healed-by-app', 'dave-healed-by-sidecar', 'dave-refund-late']) await expectText(dave, modelId, 'Pronto');
  }, 180_000);

  /** `userId` (START_CREDITS credits) with one READY model on a trained tune, and their page open. */
  async function readyModelFor(userId: string): Promise<{ page: Page; modelId: string; tuneId: number }> {
    const tuneId = astria.addTune({ trainedAt: new Date() }).id;
    const modelId = `${userId}-model`;
    await seedExampleModels(pool, userId, [{ id: modelId, tuneId }]);
    await pool.query(`UPDATE ai_models SET status = 'READY', progress = 100 WHERE id = $1`, [modelId]);
    await pool.query(`UPDATE demo_users SET credits = $2 WHERE id = $1`, [userId, START_CREDITS]);
    const page = await openAs(userId);
    await expectText(page, modelId, 'Pronto');
    return { page, modelId, tuneId };
  }

  const generationStatus = (page: Page, generationId: string) => page.locator(`[data-generation-id="${generationId}"] [data-generation-status]`);

  async function expectGenerationText(page: Page, generationId: string, text: string, timeoutMs = 20_000): Promise<void> {
    await generationStatus(page, generationId).filter({ hasText: text }).waitFor({ timeout: timeoutMs });
    expect(await generationStatus(page, generationId).textContent()).toBe(text);
  }

  /** Clicks "Gerar imagens" under the model: the app creates the prompt on Astria and shows the generation. */
  async function askForImages(page: Page, modelId: string): Promise<{ generationId: string; promptId: number }> {
    const [response] = await Promise.all([
      page.waitForResponse((answer) => new URL(answer.url()).pathname === '/api/generations' && answer.request().method() === 'POST'),
      page.locator(`form[data-generate-for="${modelId}"] button`).click(),
    ]);
    expect(response.status()).toBe(201);
    const { id: generationId } = (await response.json()) as { id: string };
    await expectGenerationText(page, generationId, 'Gerando imagens...');
    const { rows } = await pool.query<{ jobId: string; status: string }>(`SELECT "jobId", status::text FROM generations WHERE id = $1`, [generationId]);
    expect(rows[0]?.status).toBe('PROCESSING');
    return { generationId, promptId: Number(rows[0]!.jobId) };
  }

  /** Until the generation shows exactly these images, each loaded by the browser. */
  async function expectImages(page: Page, generationId: string, urls: string[], timeoutMs = 20_000): Promise<void> {
    await page.waitForFunction(
      `(() => {
        const images = [...document.querySelectorAll('[data-generation-id="${generationId}"] img')];
        return images.length === ${urls.length} && images.every((image) => image.complete && image.naturalWidth > 0);
      })()`,
      undefined,
      { timeout: timeoutMs },
    );
    expect(await page.locator(`[data-generation-id="${generationId}"] img`).evaluateAll((nodes) => nodes.map((node) => node.getAttribute('src')))).toEqual(urls);
    expect(await generationStatus(page, generationId).textContent()).toBe('Imagens prontas');
  }

  const imageUrlsFor = (label: string, count: number) => Array.from({ length: count }, (_, n) => `${imageHostUrl}/${label}/${n + 1}.png`);

  const generationEvents = async (generationId: string) =>
    (
      await pool.query<{ event_id: string; to_status: string; source: string }>(
        `SELECT event_id, to_status, source FROM astria_reconciler.events WHERE generation_id = $1 ORDER BY seq`,
        [generationId],
      )
    ).rows;

  const storedImages = async (generationId: string) =>
    (await pool.query<{ sourceUrl: string; eventId: string }>(`SELECT "sourceUrl", "eventId" FROM stored_images WHERE "generationId" = $1 ORDER BY position`, [generationId])).rows;

  const creditsOf = async (userId: string) => (await pool.query<{ credits: number }>(`SELECT credits FROM demo_users WHERE id = $1`, [userId])).rows[0]!.credits;

  it('shows the images of a prompt whose callback reaches the app’s route, stored once by the hook', async () => {
    daemon ??= await startSidecarBesideApp(); // delivers the http broadcast (and its redelivery of this event)
    const { page, modelId, tuneId } = await readyModelFor('erin');
    const { generationId, promptId } = await askForImages(page, modelId);
    const prompt = astria.getPrompt(promptId)!;
    expect(prompt).toMatchObject({ tune_id: tuneId, text: 'ohwx person, retrato em estúdio', images: [] });
    // The app's own address (Next names loopback `localhost`), its webhook route and secret.
    const callbackUrl = new URL(prompt.callback as string);
    expect([callbackUrl.port, callbackUrl.pathname, callbackUrl.search]).toEqual([new URL(app.url).port, '/api/webhooks/astria', `?secret=${WEBHOOK_SECRET}`]);
    expect(await creditsOf('erin')).toBe(START_CREDITS - GENERATION_CREDITS);

    // Astria's callback, with the prompt done, at the URL the app gave. The fake's own prompt stays
    // unfinished, so the sidecar (polling every 500 ms) cannot apply it first: this one is the route's.
    const urls = imageUrlsFor('erin', 2);
    const callback = await fetch(prompt.callback as string, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt: { ...prompt, images: urls, trained_at: new Date().toISOString() } }),
    });
    expect(callback.status).toBe(200);
    const [completed] = await generationEvents(generationId);
    expect(completed).toMatchObject({ to_status: 'COMPLETED', source: 'webhook' });
    // Stored in the transition's own transaction: there when the route answered.
    expect(await storedImages(generationId)).toEqual(urls.map((sourceUrl) => ({ sourceUrl, eventId: completed!.event_id })));
    await expectImages(page, generationId, urls);

    // The http broadcast brings the same event to the receiver: nothing is stored twice.
    await deliveredTo('erin');
    expect(await storedImages(generationId)).toHaveLength(urls.length);
    expect(await creditsOf('erin')).toBe(START_CREDITS - GENERATION_CREDITS);
  }, 60_000);

  it('shows the images of a prompt whose callback never came, live, once the sidecar finds it; stored once through the broadcast', async () => {
    daemon ??= await startSidecarBesideApp();
    const { page, modelId } = await readyModelFor('frank');
    const { generationId, promptId } = await askForImages(page, modelId);

    const urls = imageUrlsFor('frank', 4);
    astria.finishPrompt(promptId, { images: urls }); // no callback
    await expectImages(page, generationId, urls, 30_000);
    const [completed] = await generationEvents(generationId);
    expect(completed).toMatchObject({ to_status: 'COMPLETED', source: 'reconciler' });
    await deliveredTo('frank');
    expect(await storedImages(generationId)).toEqual(urls.map((sourceUrl) => ({ sourceUrl, eventId: completed!.event_id })));
  }, 60_000);

  it('refunds a failed prompt exactly once, whoever applied it, shows the failure, and takes the refund back once when it heals', async () => {
    daemon ??= await startSidecarBesideApp();
    const { page, modelId } = await readyModelFor('gina');
    const viaCallback = await askForImages(page, modelId);
    const viaSidecar = await askForImages(page, modelId);
    expect(await creditsOf('gina')).toBe(START_CREDITS - 2 * GENERATION_CREDITS);

    // One failure's callback goes to the app's route at once, racing the sidecar; the other's never comes.
    astria.failPrompt(viaCallback.promptId, 'NSFW content detected');
    expect(await astria.firePromptCallback(viaCallback.promptId, astria.getPrompt(viaCallback.promptId)!.callback as string)).toBe(200);
    astria.failPrompt(viaSidecar.promptId, 'Prompt rejected');
    await waitUntil(async () => (await generationEvents(viaSidecar.generationId)).length === 1, 30_000, 'the sidecar to fail the second generation');
    await deliveredTo('gina');

    const refunds = async (generationId: string) =>
      (await pool.query<{ eventId: string; credits: number }>(`SELECT "eventId", credits FROM credit_refunds WHERE "generationId" = $1`, [generationId])).rows;
    for (const { generationId } of [viaCallback, viaSidecar]) {
      const events = await generationEvents(generationId);
      expect(events.map((event) => event.to_status)).toEqual(['FAILED']);
      expect(await refunds(generationId)).toEqual([{ eventId: events[0]!.event_id, credits: GENERATION_CREDITS }]);
      const { rows } = await pool.query<{ errorMessage: string }>(`SELECT "errorMessage" FROM generations WHERE id = $1`, [generationId]);
      await expectGenerationText(page, generationId, rows[0]!.errorMessage);
      expect(await page.locator(`[data-generation-id="${generationId}"] img`).count()).toBe(0);
    }
    expect(await generationStatus(page, viaCallback.generationId).textContent()).toContain('NSFW content detected');
    expect(await creditsOf('gina')).toBe(START_CREDITS);
    expect(await storedImages(viaCallback.generationId)).toEqual([]);

    // The second heals (as an operator's `--once --model-id` heals a failure): its images appear, are
    // stored, and its refund is taken back once, through the broadcast receiver.
    const [failed] = await generationEvents(viaSidecar.generationId);
    const { rows } = await pool.query<{ errorMessage: string }>(`SELECT "errorMessage" FROM generations WHERE id = $1`, [viaSidecar.generationId]);
    const urls = imageUrlsFor('gina', 1);
    const healed = await createStatusService({ pool, transports: ['pg', 'http'] }).applyGeneration(
      {
        generationId: viaSidecar.generationId,
        userId: 'gina',
        modelId,
        from: 'FAILED',
        to: 'COMPLETED',
        expected: { jobId: String(viaSidecar.promptId), errorMessage: rows[0]!.errorMessage },
        changes: { imageUrls: urls, completedAt: new Date(), errorMessage: null },
      },
      'reconciler',
    );
    expect(healed.applied).toBe(true);
    await expectImages(page, viaSidecar.generationId, urls);
    await deliveredTo('gina');
    const reversals = await pool.query<{ eventId: string; refundEventId: string }>(
      `SELECT "eventId", "refundEventId" FROM credit_refund_reversals WHERE "generationId" = $1`,
      [viaSidecar.generationId],
    );
    const completed = (await generationEvents(viaSidecar.generationId))[1]!;
    expect(reversals.rows).toEqual([{ eventId: completed.event_id, refundEventId: failed!.event_id }]);
    expect(await storedImages(viaSidecar.generationId)).toEqual(urls.map((sourceUrl) => ({ sourceUrl, eventId: completed.event_id })));
    expect(await creditsOf('gina')).toBe(START_CREDITS - GENERATION_CREDITS);
  }, 90_000);
});
