import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { seedModels, type SeedModel } from '../../dev/host-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { runCli } from '../support/cli.js';
import { startDaemon, waitUntil } from '../support/daemon.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';

const API_KEY = 'sd_e2e_orphans_key_71c2';
const SECRET = 'callback-secret-e2e-9d1f';
const MINUTE = 60_000;
const ago = (ms: number) => new Date(Date.now() - ms);
const callbackOf = (modelId: string) => `https://app.example.test/api/astria/callback?secret=${SECRET}&model=${modelId}`;
const orphan = (id: string): SeedModel => ({ id, status: 'TRAINING', trainingJobId: null, createdAt: ago(30 * MINUTE), updatedAt: ago(30 * MINUTE) });

let db: TestDatabase;
let astria: SimulatedAstria;
let env: Record<string, string>;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());
beforeEach(async () => {
  astria = await startSimulatedAstria({ apiKey: API_KEY, latencyMs: 5 });
  await db.pool.query('DELETE FROM ai_models');
  env = { DATABASE_URL: db.url, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url, LOG_LEVEL: 'debug', ASTRIA_TUNE_TITLE: 'Model {modelId}' };
});
afterEach(() => astria.close());

describe('models without a tune id (built CLI, real database, loopback Astria)', () => {
  it('--once --dry-run shows what it would link, --once links and recovers it, report lists what is left', async () => {
    const trained = astria.addTune({ title: 'x', callback: callbackOf('o-callback'), startedTrainingAt: ago(20 * MINUTE), trainedAt: ago(2 * MINUTE) });
    const titled = astria.addTune({ title: 'Model o-title', startedTrainingAt: ago(10 * MINUTE), eta: new Date(Date.now() + 30 * MINUTE) });
    const twins = [astria.addTune({ title: 'Model o-twice' }), astria.addTune({ title: 'Model o-twice' })];
    await seedModels(db.pool, [orphan('o-callback'), orphan('o-title'), orphan('o-twice'), orphan('o-none')]);

    const dry = await runCli(['--once', '--dry-run', '--json'], env);
    expect(dry.code).toBe(0);
    expect(JSON.parse(dry.stdout).orphans).toMatchObject({
      linked: expect.arrayContaining([{ modelId: 'o-callback', tuneId: trained.id }, { modelId: 'o-title', tuneId: titled.id }]),
      ambiguous: [{ modelId: 'o-twice', tuneIds: [twins[1]!.id, twins[0]!.id] }],
      unmatched: [{ modelId: 'o-none' }],
    });
    expect((await readModel(db.pool, 'o-callback')).trainingJobId).toBeNull();

    const result = await runCli(['--once', '--json'], env);

    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.orphans.linked).toHaveLength(2);
    expect(report.transitions).toEqual([{ modelId: 'o-callback', from: 'TRAINING', to: 'READY' }]);
    expect(await readModel(db.pool, 'o-callback')).toMatchObject({ status: 'READY', trainingJobId: String(trained.id) });
    expect(await readModel(db.pool, 'o-title')).toMatchObject({ status: 'TRAINING', trainingJobId: String(titled.id) });
    expect(await readModel(db.pool, 'o-twice')).toMatchObject({ trainingJobId: null });
    expect(result.stderr).toContain('o-callback');
    expect(result.stderr).not.toContain(SECRET);

    const left = await runCli(['report', '--json'], { DATABASE_URL: db.url });
    expect(left.code).toBe(0);
    expect(JSON.parse(left.stdout).orphans).toEqual({
      total: 2,
      models: expect.arrayContaining([expect.objectContaining({ modelId: 'o-twice' }), expect.objectContaining({ modelId: 'o-none' })]),
    });
  });

  it('the daemon links an orphan whose tune shows up later and recovers it, counting it', async () => {
    await seedModels(db.pool, [orphan('o-late')]);
    const daemon = await startDaemon({ ...env, RECONCILER_INTERVAL: '200ms', RECONCILER_OBSERVE_EVERY: '200ms' });
    try {
      await waitUntil(async () => (await fetch(`${daemon.url}/metrics`).then((res) => res.text())).includes('astria_reconciler_orphans_total{outcome="unmatched"} 1'), 15_000, 'the orphan counted unmatched');
      const tune = astria.addTune({ title: 'Model o-late', startedTrainingAt: ago(5 * MINUTE), trainedAt: ago(MINUTE) });

      await waitUntil(async () => (await readModel(db.pool, 'o-late')).status === 'READY', 15_000, 'the orphan recovered');

      expect((await readModel(db.pool, 'o-late')).trainingJobId).toBe(String(tune.id));
      const metrics = await fetch(`${daemon.url}/metrics`).then((res) => res.text());
      expect(metrics).toContain('astria_reconciler_orphans_total{outcome="linked"} 1');
      expect(metrics).toContain('astria_reconciler_orphans_total{outcome="ambiguous"} 0');
    } finally {
      daemon.kill('SIGTERM');
      await daemon.done;
    }
  });
});
