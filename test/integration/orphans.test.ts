import { pino } from 'pino';
import { Writable } from 'node:stream';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { AstriaClient } from '../../src/astria/client.js';
import { systemClock } from '../../src/clock.js';
import { operatorFilter } from '../../src/db/inflight.js';
import { seedModels, type SeedModel } from '../../dev/host-schema.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { reconcileOnce, type OnceReport } from '../../src/reconciler/once.js';
import { linkOrphans, OrphanMatcher } from '../../src/reconciler/orphans.js';
import { buildReport } from '../../src/cli/report.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { fastAstriaClient } from '../support/astria-client.js';

const API_KEY = 'sd_orphans_test_key';
const SECRET = 'whsec-callback-secret-value';
const MINUTE = 60_000;
const HOUR = 60 * MINUTE;
const WINDOW = 48 * HOUR;

let db: TestDatabase;
let astria: SimulatedAstria;
let logged: string;
let metrics: Metrics;

beforeAll(async () => {
  db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
});
afterAll(() => db.drop());
beforeEach(async () => {
  astria = await startSimulatedAstria({ apiKey: API_KEY });
  await db.pool.query('DELETE FROM ai_models');
  logged = '';
  metrics = createMetrics();
});
afterEach(() => astria.close());

const ago = (ms: number) => new Date(Date.now() - ms);
const callbackOf = (modelId: string) => `https://app.example.test/api/webhooks/astria?secret=${SECRET}&model=${encodeURIComponent(modelId)}`;
/** A row whose tune id the app never saved. */
const orphan = (id: string, extra: Partial<SeedModel> = {}): SeedModel => ({
  id,
  status: 'TRAINING',
  trainingJobId: null,
  createdAt: ago(20 * MINUTE),
  updatedAt: ago(20 * MINUTE),
  ...extra,
});

function client(): AstriaClient {
  return fastAstriaClient({ apiUrl: astria.url, apiKey: API_KEY, metrics });
}

function deps(astriaClient: AstriaClient, dryRun = false) {
  const log = pino(
    { level: 'debug' },
    new Writable({
      write(chunk, _encoding, done) {
        logged += String(chunk);
        done();
      },
    }),
  );
  return { pool: db.pool, astria: astriaClient, service: dryRun ? null : createStatusService({ pool: db.pool, metrics }), log, clock: systemClock, metrics };
}

/** A `--once` pass that matches orphans first, as the CLI runs it. */
async function pass(options: { titleTemplate?: string; dryRun?: boolean; astria?: AstriaClient; windowMs?: number } = {}): Promise<OnceReport> {
  const astriaClient = options.astria ?? client();
  try {
    return await reconcileOnce(deps(astriaClient, options.dryRun), {
      filter: operatorFilter(Date.now(), 0, []),
      trainingTimeoutMs: 24 * HOUR,
      concurrency: 4,
      orphans: { windowMs: options.windowMs ?? WINDOW, titleTemplate: options.titleTemplate },
    });
  } finally {
    await astriaClient.close();
  }
}

async function orphanCounts(): Promise<Record<string, number>> {
  const metric = await metrics.orphans.get();
  return Object.fromEntries(metric.values.map((value) => [String(value.labels.outcome), value.value]));
}

describe('models whose tune id the app never saved', () => {
  it('links a tune whose callback URL names the model, and reconciles it in the same pass', async () => {
    astria.addTunes(5, (index) => ({ title: `other ${index}`, callback: callbackOf(`someone-else-${index}`) }));
    const tune = astria.addTune({ title: 'not the id', callback: callbackOf('m-cb'), startedTrainingAt: ago(15 * MINUTE), trainedAt: ago(MINUTE) });
    astria.addTunes(3);
    await seedModels(db.pool, [orphan('m-cb')]);

    const report = await pass();

    expect(report.orphans).toMatchObject({ linked: [{ modelId: 'm-cb', tuneId: tune.id }], ambiguous: [], unmatched: [] });
    expect(report.transitions).toEqual([{ modelId: 'm-cb', from: 'TRAINING', to: 'READY' }]);
    expect(await readModel(db.pool, 'm-cb')).toMatchObject({ status: 'READY', trainingJobId: String(tune.id), modelUrl: String(tune.id) });
    expect(await orphanCounts()).toEqual({ linked: 1, ambiguous: 0, unmatched: 0 });
    // The callback URL carries the webhook's secret: it never reaches the log.
    expect(logged).toContain('m-cb');
    expect(logged).not.toContain(SECRET);
  });

  it('links by the title rule when no callback names the model, and prefers the callback to the title', async () => {
    const titled = astria.addTune({ title: 'Model m-title', startedTrainingAt: ago(5 * MINUTE), eta: new Date(Date.now() + HOUR) });
    const byCallback = astria.addTune({ title: 'something', callback: callbackOf('m-both') });
    astria.addTune({ title: 'Model m-both' });
    await seedModels(db.pool, [orphan('m-title'), orphan('m-both', { status: 'PROCESSING' })]);

    const report = await pass({ titleTemplate: 'Model {modelId}' });

    expect(new Set(report.orphans!.linked.map((link) => `${link.modelId}:${link.tuneId}`))).toEqual(
      new Set([`m-title:${titled.id}`, `m-both:${byCallback.id}`]),
    );
    expect(await readModel(db.pool, 'm-title')).toMatchObject({ status: 'TRAINING', trainingJobId: String(titled.id) });
    expect((await readModel(db.pool, 'm-both')).trainingJobId).toBe(String(byCallback.id));
  });

  it('matches no title when ASTRIA_TUNE_TITLE is unset', async () => {
    astria.addTune({ title: 'm-plain' });
    await seedModels(db.pool, [orphan('m-plain')]);

    const report = await pass();

    expect(report.orphans).toMatchObject({ linked: [], unmatched: [{ modelId: 'm-plain' }] });
    expect((await readModel(db.pool, 'm-plain')).trainingJobId).toBeNull();
  });

  it('links none of two tunes with the same title, counts it and reports it', async () => {
    const first = astria.addTune({ title: 'm-twice' });
    const second = astria.addTune({ title: 'm-twice' });
    await seedModels(db.pool, [orphan('m-twice')]);

    const report = await pass({ titleTemplate: '{modelId}' });

    expect(report.orphans).toMatchObject({ linked: [], ambiguous: [{ modelId: 'm-twice', tuneIds: [second.id, first.id] }], unmatched: [] });
    expect((await readModel(db.pool, 'm-twice')).trainingJobId).toBeNull();
    expect(await orphanCounts()).toEqual({ linked: 0, ambiguous: 1, unmatched: 0 });
    expect(logged).toContain('several tunes');
    const summary = await buildReport(db.pool, 'astria_reconciler', HOUR);
    expect(summary.orphans).toMatchObject({ total: 1, models: [{ modelId: 'm-twice', status: 'TRAINING' }] });
  });

  it('skips a tune another model already holds: the title\'s tune is linked instead, and with no other candidate the orphan stays unmatched', async () => {
    const held = astria.addTune({ title: 'x', callback: callbackOf('m-dup') });
    const titled = astria.addTune({ title: 'm-dup' });
    const heldToo = astria.addTune({ title: 'y', callback: callbackOf('m-only') });
    await seedModels(db.pool, [
      orphan('m-dup'),
      orphan('m-only'),
      { id: 'm-owner', status: 'READY', trainingJobId: String(held.id) },
      { id: 'm-owner-2', status: 'TRAINING', trainingJobId: String(heldToo.id) },
    ]);

    const report = await pass({ titleTemplate: '{modelId}' });

    expect(report.orphans).toMatchObject({ linked: [{ modelId: 'm-dup', tuneId: titled.id }], ambiguous: [], unmatched: [{ modelId: 'm-only' }] });
    expect((await readModel(db.pool, 'm-dup')).trainingJobId).toBe(String(titled.id));
    expect((await readModel(db.pool, 'm-only')).trainingJobId).toBeNull();
    expect(logged).toContain('belongs to another model');
    expect(logged).toContain('m-owner-2');
  });

  it('writes nothing when another model gets the tune between our check and our write', async () => {
    const tune = astria.addTune({ title: 'm-late', callback: callbackOf('m-late') });
    await seedModels(db.pool, [orphan('m-late'), { id: 'm-other', status: 'TRAINING', trainingJobId: null, createdAt: ago(3 * HOUR) }]);
    // The app saves the tune on another of its models just before our link's UPDATE runs.
    const racing = Object.assign(Object.create(db.pool) as typeof db.pool, {
      async query(...args: unknown[]) {
        if (typeof args[0] === 'string' && args[0].startsWith('UPDATE')) {
          await db.pool.query(`UPDATE ai_models SET "trainingJobId" = $1 WHERE id = 'm-other'`, [String(tune.id)]);
        }
        return (db.pool.query as (...rest: unknown[]) => unknown)(...args);
      },
    });
    const astriaClient = client();
    try {
      const report = await linkOrphans({ ...deps(astriaClient), pool: racing }, { windowMs: WINDOW, titleTemplate: undefined, dryRun: false });
      expect(report).toMatchObject({ linked: [], raced: 1 });
    } finally {
      await astriaClient.close();
    }
    expect((await readModel(db.pool, 'm-late')).trainingJobId).toBeNull();
  });

  it('counts an orphan no tune matches and leaves it as it is', async () => {
    astria.addTunes(3, (index) => ({ title: `t${index}`, callback: callbackOf(`m-${index}`) }));
    await seedModels(db.pool, [orphan('m-none')]);

    const report = await pass({ titleTemplate: '{modelId}' });

    expect(report.orphans).toMatchObject({ linked: [], ambiguous: [], unmatched: [{ modelId: 'm-none' }] });
    expect(await readModel(db.pool, 'm-none')).toMatchObject({ status: 'TRAINING', trainingJobId: null });
    expect(await orphanCounts()).toEqual({ linked: 0, ambiguous: 0, unmatched: 1 });
  });

  it('writes nothing when the app saves the tune id between our read and our write, and the model is reconciled with the app\'s id', async () => {
    const ours = astria.addTune({ title: 'm-race' });
    const apps = astria.addTune({ title: 'retrained', startedTrainingAt: ago(10 * MINUTE), trainedAt: ago(MINUTE) });
    await seedModels(db.pool, [orphan('m-race')]);
    const real = client();
    // The app's own UPDATE lands while the list page is on its way to us: after our read of the orphans, before our write.
    const racing: AstriaClient = Object.assign(Object.create(real) as AstriaClient, {
      async listTunes(...args: Parameters<AstriaClient['listTunes']>) {
        const page = await real.listTunes(...args);
        await db.pool.query(`UPDATE ai_models SET "trainingJobId" = $1 WHERE id = 'm-race'`, [String(apps.id)]);
        return page;
      },
    });

    const report = await pass({ titleTemplate: '{modelId}', astria: racing });

    expect(report.orphans).toMatchObject({ linked: [], raced: 1 });
    expect(await readModel(db.pool, 'm-race')).toMatchObject({ status: 'READY', trainingJobId: String(apps.id), modelUrl: String(apps.id) });
    expect(ours.id).not.toBe(apps.id);
    expect(await orphanCounts()).toEqual({ linked: 0, ambiguous: 0, unmatched: 0 });
  });

  it('leaves alone an orphan older than the window and another provider\'s row, at no Astria call', async () => {
    astria.addTune({ title: 'm-old', callback: callbackOf('m-old') });
    astria.addTune({ title: 'm-replicate', callback: callbackOf('m-replicate') });
    await seedModels(db.pool, [orphan('m-old', { createdAt: ago(3 * 24 * HOUR) }), orphan('m-replicate', { aiProvider: 'replicate' })]);

    const report = await pass({ titleTemplate: '{modelId}' });

    expect(report.apiCalls).toBe(0);
    expect(astria.stats.requests).toBe(0);
    expect(report.orphans).toMatchObject({ linked: [], ambiguous: [], unmatched: [], listPages: 0 });
    expect((await readModel(db.pool, 'm-old')).trainingJobId).toBeNull();
    expect((await readModel(db.pool, 'm-replicate')).trainingJobId).toBeNull();
  });

  it('costs no Astria call without orphans', async () => {
    astria.addTunes(3, (index) => ({ title: `m-${index}` }));
    await seedModels(db.pool, [orphan('m-ready', { status: 'READY' }), orphan('m-error', { status: 'ERROR' })]);

    const report = await pass({ titleTemplate: '{modelId}' });

    expect(astria.stats.requests).toBe(0);
    expect(report.orphans).toMatchObject({ linked: [], unmatched: [], listPages: 0 });
  });

  it('reads the list down to a little before the oldest orphan, not the whole account', async () => {
    // Three days of older tunes (five pages), then the orphan's hour.
    astria.addTunes(600, (index) => ({ title: `old ${index}`, createdAt: ago(3 * 24 * HOUR - index * MINUTE) }));
    const tune = astria.addTune({ title: 'm-recent', createdAt: ago(9 * MINUTE) });
    astria.addTunes(50, () => ({ createdAt: ago(5 * MINUTE) }));
    await seedModels(db.pool, [orphan('m-recent', { createdAt: ago(10 * MINUTE) })]);

    const report = await pass({ titleTemplate: '{modelId}' });

    expect(report.orphans).toMatchObject({ linked: [{ modelId: 'm-recent', tuneId: tune.id }], listPages: 1 });
    expect(astria.stats.list).toBe(2); // the orphans' page, then the round's
  });

  it('shows what it would link in a dry run and writes nothing', async () => {
    const tune = astria.addTune({ callback: callbackOf('m-dry'), trainedAt: ago(MINUTE) });
    await seedModels(db.pool, [orphan('m-dry')]);

    const report = await pass({ dryRun: true });

    expect(report.orphans).toMatchObject({ linked: [{ modelId: 'm-dry', tuneId: tune.id }] });
    expect(await readModel(db.pool, 'm-dry')).toMatchObject({ status: 'TRAINING', trainingJobId: null });
  });
});

describe('the daemon\'s orphan matching', () => {
  it('counts a model\'s outcome once while it stays the same, and again when it changes', async () => {
    await seedModels(db.pool, [orphan('m-later')]);
    const astriaClient = client();
    const matcher = new OrphanMatcher(deps(astriaClient), { windowMs: WINDOW, titleTemplate: '{modelId}', dryRun: false, everyMs: 30_000 });

    await matcher.runIfDue(0);
    expect(await matcher.runIfDue(29_999)).toBeNull();
    await matcher.runIfDue(30_000);
    expect(await orphanCounts()).toEqual({ linked: 0, ambiguous: 0, unmatched: 1 });

    // The app's create call finally shows on Astria's list.
    const tune = astria.addTune({ title: 'm-later' });
    const report = await matcher.runIfDue(60_000);
    await astriaClient.close();

    expect(report).toMatchObject({ linked: [{ modelId: 'm-later', tuneId: tune.id }] });
    expect(await orphanCounts()).toEqual({ linked: 1, ambiguous: 0, unmatched: 1 });
    expect((await readModel(db.pool, 'm-later')).trainingJobId).toBe(String(tune.id));
  });
});
