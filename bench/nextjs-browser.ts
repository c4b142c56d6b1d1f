/**
 * Browser latency (issue 11): how long until the user's page says "Pronto"? examples/nextjs is built
 * and started (`next start` on loopback), its page open in headless Chromium for one signed-in user;
 * the time a model's element first reads "Pronto" is taken in the page (a MutationObserver, on the
 * epoch clock `performance.timeOrigin + performance.now()` that this process reads too).
 *   webhook   WEBHOOK_MODELS callbacks, one after another, POSTed to the app's route: POST sent → DOM text
 *   lost      LOST_MODELS trainings whose callback never comes, finishing one every LOST_SPACING_MS, found
 *             by the sidecar daemon (built CLI) at its DEFAULT settings: Astria's trained_at → DOM text.
 *             Astria's `eta` is an estimate: the trainings finish from ETA_ERROR_MS before it to as long after.
 *             A model not shown within LOST_WAIT_MS counts as that long (and misses the target).
 */
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { createDatabase, dropDatabase } from '../dev/embedded-postgres.js';
import { startSimulatedAstria } from '../dev/simulated-astria.js';
import {
  buildExample,
  chromiumPath,
  exampleMissing,
  launchChromium,
  migrateExample,
  seedExampleModels,
  startExample,
  startSidecar,
} from './nextjs-app.js';
import { fixedOrDash, formatGrid, maximum, percentile, target, type SectionResult } from './stats.js';

const WEBHOOK_MODELS = 60;
const WEBHOOK_WARMUP = 5;
const LOST_MODELS = 50;
const LOST_SPACING_MS = 1_000;
const LOST_WAIT_MS = 120_000;
const ETA_ERROR_MS = 10_000;
const WEBHOOK_TARGET_P99_MS = 200;
const LOST_TARGET_P99_MS = 5_000;
const SECRET = 'bench-webhook-secret';
const API_KEY = 'sd_bench_browser_key';
const USER = 'bench-user';
const SCHEMA = 'app';

const epochNow = () => performance.timeOrigin + performance.now();

/** Installed in the page: records when each model's element first reads "Pronto". */
const OBSERVE_READY = `(() => {
  window.__readyAt = {};
  const scan = () => {
    const at = performance.timeOrigin + performance.now();
    for (const element of document.querySelectorAll('[data-model-id]')) {
      const id = element.getAttribute('data-model-id');
      if (element.textContent === 'Pronto' && !(id in window.__readyAt)) window.__readyAt[id] = at;
    }
  };
  new MutationObserver(scan).observe(document.body, { subtree: true, childList: true, characterData: true });
  scan();
})()`;

export async function runNextjsBrowser(adminUrl: string): Promise<SectionResult> {
  const chromium = chromiumPath();
  const missing = chromium === null ? 'chromium is not installed' : exampleMissing();
  if (missing) {
    return {
      text: `skipped: ${missing}`,
      targets: [target('browser: examples/nextjs and chromium available', false, missing)],
    };
  }
  await buildExample();
  const name = `astria_reconciler_bench_${randomBytes(4).toString('hex')}`;
  const url = await createDatabase(adminUrl, name);
  await migrateExample(url, SCHEMA);
  const databaseUrl = `${url}${url.includes('?') ? '&' : '?'}schema=${SCHEMA}`;
  const pool = new pg.Pool({ connectionString: url, options: `-c search_path=${SCHEMA}`, max: 4 });
  const astria = await startSimulatedAstria({ apiKey: API_KEY });
  const app = await startExample({ DATABASE_URL: databaseUrl, WEBHOOK_SECRET: SECRET, DEMO_AUTH: '1' });
  const browser = await launchChromium(chromium!);
  let sidecar: Awaited<ReturnType<typeof startSidecar>> | undefined;
  try {
    const started = Date.now();
    // Webhook models train "now"; lost ones started ten minutes ago and finish one after another.
    const webhookTunes = Array.from({ length: WEBHOOK_WARMUP + WEBHOOK_MODELS }, () => astria.addTune({ startedTrainingAt: new Date(started - 60_000) }).id);
    const lostPlan = Array.from({ length: LOST_MODELS }, (_, i) => new Date(started + 25_000 + i * LOST_SPACING_MS));
    // Finishing early, on time and late by turns: -ETA_ERROR_MS … +ETA_ERROR_MS around the estimate.
    const etaError = (i: number) => ETA_ERROR_MS * (((i * 7) % LOST_MODELS) / (LOST_MODELS - 1) - 0.5) * 2;
    const lostTunes = lostPlan.map(
      (trainedAt, i) => astria.addTune({ startedTrainingAt: new Date(started - 600_000), eta: new Date(trainedAt.getTime() - etaError(i)) }).id,
    );
    const webhookIds = webhookTunes.map((_, i) => `webhook-${String(i).padStart(3, '0')}`);
    const lostIds = lostTunes.map((_, i) => `lost-${String(i).padStart(3, '0')}`);
    await seedExampleModels(pool, USER, [
      ...webhookTunes.map((tuneId, i) => ({ id: webhookIds[i]!, tuneId, updatedAt: new Date(started - 60_000) })),
      ...lostTunes.map((tuneId, i) => ({ id: lostIds[i]!, tuneId, updatedAt: new Date(started - 600_000) })),
    ]);

    const context = await browser.newContext();
    await context.addCookies([{ name: 'demo_user', value: USER, url: app.url }]);
    const page = await context.newPage();
    await page.goto(app.url);
    await page.waitForFunction(`document.querySelectorAll('[data-model-id]').length === ${webhookIds.length + lostIds.length}`);
    await page.evaluate(OBSERVE_READY);
    const readyAt = async (id: string) => (await page.evaluate(`window.__readyAt[${JSON.stringify(id)}] ?? null`)) as number | null;
    const waitReady = async (id: string, timeoutMs: number) => {
      await page
        .waitForFunction(`${JSON.stringify(id)} in window.__readyAt`, undefined, { timeout: timeoutMs, polling: 20 })
        .catch(() => undefined);
      return readyAt(id);
    };

    const webhookLatencies: number[] = [];
    for (const [i, tuneId] of webhookTunes.entries()) {
      astria.train(tuneId);
      const body = JSON.stringify({ tune: astria.getTune(tuneId) });
      const sentAt = epochNow();
      const response = await fetch(`${app.url}/api/webhooks/astria?secret=${SECRET}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });
      await response.arrayBuffer();
      const shownAt = await waitReady(webhookIds[i]!, 10_000);
      if (i >= WEBHOOK_WARMUP) webhookLatencies.push(shownAt === null ? Infinity : shownAt - sentAt);
    }

    // The sidecar at its defaults: only what it needs to reach the database and Astria.
    sidecar = await startSidecar({ DATABASE_URL: databaseUrl, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url, LOG_LEVEL: 'warn' });
    const lostLatencies = await Promise.all(
      lostTunes.map(async (tuneId, i) => {
        const trainedAt = lostPlan[i]!;
        await new Promise((resolve) => setTimeout(resolve, Math.max(0, trainedAt.getTime() - Date.now())));
        astria.train(tuneId, trainedAt);
        const shownAt = await waitReady(lostIds[i]!, LOST_WAIT_MS);
        return shownAt === null ? LOST_WAIT_MS : shownAt - trainedAt.getTime();
      }),
    );
    const lostSeen = lostLatencies.filter((latency) => latency < LOST_WAIT_MS).length;

    const ms = (value: number | null) => (value === null || !Number.isFinite(value) ? '—' : fixedOrDash(value, 0));
    const grid = formatGrid([
      ['path', 'n', 'p50 ms', 'p99 ms', 'max ms', 'target p99'],
      ['webhook POST → DOM', String(webhookLatencies.length), ms(percentile(webhookLatencies, 0.5)), ms(percentile(webhookLatencies, 0.99)), ms(maximum(webhookLatencies)), `≤ ${WEBHOOK_TARGET_P99_MS} ms`],
      ['lost callback: trained_at → DOM', String(lostLatencies.length), ms(percentile(lostLatencies, 0.5)), ms(percentile(lostLatencies, 0.99)), ms(maximum(lostLatencies)), `≤ ${LOST_TARGET_P99_MS} ms`],
    ]);
    const text = [
      `examples/nextjs (next start, loopback) in headless Chromium; sidecar at its default settings for the lost callbacks.`,
      grid,
      `lost callbacks shown within ${LOST_WAIT_MS / 1000} s: ${lostSeen}/${LOST_MODELS}`,
    ].join('\n');
    return {
      text,
      targets: [
        target(`browser: webhook POST → DOM p99 ≤ ${WEBHOOK_TARGET_P99_MS} ms`, (percentile(webhookLatencies, 0.99) ?? Infinity) <= WEBHOOK_TARGET_P99_MS, `${ms(percentile(webhookLatencies, 0.99))} ms`),
        target(`browser: lost callback trained_at → DOM p99 ≤ ${LOST_TARGET_P99_MS} ms (default settings)`, (percentile(lostLatencies, 0.99) ?? Infinity) <= LOST_TARGET_P99_MS, `${ms(percentile(lostLatencies, 0.99))} ms`),
      ],
    };
  } finally {
    await browser.close();
    await sidecar?.stop();
    await app.stop();
    await astria.close();
    await pool.end();
    await dropDatabase(adminUrl, name).catch(() => undefined);
  }
}
