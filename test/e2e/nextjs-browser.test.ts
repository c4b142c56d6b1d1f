/**
 * examples/nextjs built and started for real (`next build`, `next start` on loopback), its page in
 * headless Chromium, the sidecar daemon (built CLI) beside it, Astria the loopback simulation, the app's
 * tables in a `?schema=` of their own. The page of the signed-in user shows "Pronto" after:
 * (a) Astria's callback through the app's webhook route; (b) the sidecar recovering a callback that
 * never came; (c) the app's LISTEN connection being killed (the stream reconnects and re-reads).
 * Progress moves live; another user's page shows none of it. Then 200 failing trainings, their
 * callbacks racing the sidecar: exactly one credit refund each, whoever applied the failure.
 */
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import type { Browser, Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createDatabase, dropDatabase } from '../../dev/embedded-postgres.js';
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

  beforeAll(async () => {
    await buildExample();
    const url = await createDatabase(adminUrl, dbName);
    await migrateExample(url, APP_SCHEMA);
    databaseUrl = `${url}${url.includes('?') ? '&' : '?'}schema=${APP_SCHEMA}`;
    pool = new pg.Pool({ connectionString: url, options: `-c search_path=${APP_SCHEMA}`, max: 5 });
    pool.on('error', () => undefined);
    astria = await startSimulatedAstria({ apiKey: API_KEY });
    app = await startExample({
      DATABASE_URL: databaseUrl,
      WEBHOOK_SECRET,
      DEMO_AUTH: '1',
      BROADCAST: 'pg,http',
      BROADCAST_HTTP_SECRET,
    });
    browser = await launchChromium(chromium!);
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    await daemon?.stop();
    await app?.stop();
    await astria?.close();
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
    daemon = await startSidecar({
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

    await waitUntil(
      async () => {
        const { rows } = await pool.query<{ pending: number }>(
          `SELECT count(*)::int AS pending FROM astria_reconciler.deliveries d JOIN astria_reconciler.events e ON e.seq = d.event_seq
           WHERE d.delivered_at IS NULL AND e.user_id = 'carol'`,
        );
        return rows[0]!.pending === 0;
      },
      60_000,
      'every http delivery of carol’s events to be delivered',
    );
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
});
