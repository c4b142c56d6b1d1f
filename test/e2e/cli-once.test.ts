import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { seedModels, type SeedModel } from '../../dev/host-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { listen } from '../support/listen.js';

const API_KEY = 'sd_e2e_secret_key_4f9a';
const HOUR = 3_600_000;
const ago = (ms: number) => new Date(Date.now() - ms);

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
  env = { DATABASE_URL: db.url, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url, LOG_LEVEL: 'debug' };
});
afterEach(() => astria.close());

const stuck = (id: string, tuneId: number | string, extra: Partial<SeedModel> = {}): SeedModel => ({
  id,
  status: 'TRAINING',
  trainingJobId: String(tuneId),
  updatedAt: ago(HOUR),
  ...extra,
});

function expectNoSecret(output: { stdout: string; stderr: string }) {
  expect(output.stdout).not.toContain(API_KEY);
  expect(output.stderr).not.toContain(API_KEY);
}

describe('astria-reconciler --once (built CLI, real database, loopback Astria)', () => {
  it('backfills stuck models, prints the JSON report of SPEC.md and broadcasts each transition once', async () => {
    const trained = astria.addTune({ trainedAt: ago(5 * 60_000) });
    const failed = astria.addTune({ status: 'failed', error: 'GPU fell over' });
    const training = astria.addTune({ startedTrainingAt: ago(60_000), eta: new Date(Date.now() + HOUR) });
    await seedModels(db.pool, [stuck('a', trained.id), stuck('b', failed.id), stuck('c', training.id), stuck('d', 777_777)]);
    const listener = await listen(db.url);

    const result = await runCli(['--once', '--json'], env);

    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(Object.keys(report)).toEqual(
      expect.arrayContaining(['checked', 'transitioned', 'unchanged', 'failed', 'apiCalls', 'durationMs', 'transitions']),
    );
    expect(report).toMatchObject({ checked: 4, transitioned: 3, unchanged: 1, failed: 0 });
    expect(report.apiCalls).toBeGreaterThan(0);
    expect(report.apiCalls).toBe(astria.stats.requests);
    expect(report.durationMs).toEqual(expect.any(Number));
    expect(new Set(report.transitions)).toEqual(
      new Set([
        { modelId: 'a', from: 'TRAINING', to: 'READY' },
        { modelId: 'b', from: 'TRAINING', to: 'ERROR' },
        { modelId: 'd', from: 'TRAINING', to: 'ERROR' },
      ]),
    );
    expect((await readModel(db.pool, 'a')).status).toBe('READY');
    expect((await readModel(db.pool, 'b')).errorMessage).toBe('Astria training failed: GPU fell over');
    expect((await readModel(db.pool, 'c')).status).toBe('TRAINING');

    const events = ((await listener.settle()) as { type: string; modelId: string }[]).filter((e) => e.type === 'model_status_changed');
    await listener.close();
    expect(events.map((e) => e.modelId).sort()).toEqual(['a', 'b', 'd']);
    expectNoSecret(result);
  });

  it('a second run finds nothing left to do', async () => {
    const trained = astria.addTune({ trainedAt: ago(60_000) });
    await seedModels(db.pool, [stuck('a', trained.id)]);

    expect((await runCli(['--once', '--json'], env)).code).toBe(0);
    const second = await runCli(['--once', '--json'], env);

    expect(JSON.parse(second.stdout)).toMatchObject({ checked: 0, transitioned: 0, apiCalls: 0 });
  });

  it('--dry-run reports what would change and writes nothing', async () => {
    const trained = astria.addTune({ trainedAt: ago(60_000) });
    await seedModels(db.pool, [stuck('a', trained.id)]);
    const listener = await listen(db.url);
    // A fresh database: a dry run must not even create our own schema there.
    const fresh = await createTestDatabase();
    await seedModels(fresh.pool, [stuck('a', trained.id)]);

    const result = await runCli(['--once', '--dry-run', '--json'], env);
    const freshResult = await runCli(['--once', '--dry-run'], { ...env, DATABASE_URL: fresh.url });

    expect(result.code).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ transitioned: 1, transitions: [{ modelId: 'a', from: 'TRAINING', to: 'READY' }] });
    expect((await readModel(db.pool, 'a')).status).toBe('TRAINING');
    expect(await listener.settle()).toEqual([]);
    await listener.close();
    expect(freshResult.code).toBe(0);
    expect(freshResult.stdout).toMatch(/would transition 1/);
    const { rows } = await fresh.pool.query(`SELECT 1 FROM pg_namespace WHERE nspname = 'astria_reconciler'`);
    expect(rows).toHaveLength(0);
    await fresh.drop();
  });

  it('prints a human summary without --json', async () => {
    const trained = astria.addTune({ trainedAt: ago(60_000) });
    await seedModels(db.pool, [stuck('model-42', trained.id)]);

    const result = await runCli(['--once'], env);

    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/checked 1 in-flight model/);
    expect(result.stdout).toMatch(/model-42\s+TRAINING → READY/);
  });

  it('exits 3 and lists the failures when some models could not be checked', async () => {
    const tune = astria.addTune({ trainedAt: ago(60_000) });
    await seedModels(db.pool, [stuck('bad-id', 'tune-abc'), stuck('down', tune.id)]);
    // The list page and the tune's GET alike.
    astria.injectFaults({ status: 503 }, 100);

    const result = await runCli(['--once', '--json'], { ...env, ASTRIA_MAX_RPS: '100' });

    expect(result.code).toBe(3);
    const report = JSON.parse(result.stdout);
    expect(report).toMatchObject({ checked: 2, failed: 2, transitioned: 0 });
    expect(report.failures.map((f: { modelId: string }) => f.modelId).sort()).toEqual(['bad-id', 'down']);
    expectNoSecret(result);
  }, 60_000);

  it('--stuck-after and --model-id narrow the pass', async () => {
    const trained = astria.addTune({ trainedAt: ago(60_000) });
    await seedModels(db.pool, [
      stuck('fresh', trained.id, { updatedAt: ago(60_000) }),
      stuck('old', trained.id),
      stuck('healed', trained.id, { status: 'ERROR' }),
    ]);

    const narrow = JSON.parse((await runCli(['--once', '--json', '--stuck-after', '10m'], env)).stdout);
    expect(narrow.transitions.map((t: { modelId: string }) => t.modelId)).toEqual(['old']);

    const named = JSON.parse((await runCli(['--once', '--json', '--model-id', 'healed'], env)).stdout);
    expect(named.transitions).toEqual([{ modelId: 'healed', from: 'ERROR', to: 'READY' }]);
    expect((await readModel(db.pool, 'fresh')).status).toBe('TRAINING');
  });

  it('exits 1 when Astria rejects the key, without printing the key', async () => {
    await seedModels(db.pool, [stuck('a', astria.addTune().id)]);

    const result = await runCli(['--once'], { ...env, ASTRIA_API_KEY: 'sd_wrong_key_123' });

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/ASTRIA_API_KEY/);
    expect(result.stderr + result.stdout).not.toContain('sd_wrong_key_123');
  });

  it('exits 1 naming the variable when the configuration is invalid', async () => {
    const result = await runCli(['--once'], { ...env, RECONCILER_INTERVAL: 'soon', ASTRIA_CONCURRENCY: '0' });

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/RECONCILER_INTERVAL/);
    expect(result.stderr).toMatch(/ASTRIA_CONCURRENCY/);
    expectNoSecret(result);
  });

  it('exits 1 when the database is unreachable', async () => {
    const result = await runCli(['--once'], { ...env, DATABASE_URL: 'postgresql://nobody:hunter2@127.0.0.1:1/none' });

    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/database unreachable/);
    expect(result.stderr).not.toContain('hunter2');
  });

  it('exits 2 with the usage on an unknown flag or a bad duration', async () => {
    const unknown = await runCli(['--once', '--frobnicate'], env);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/--frobnicate/);
    expect(unknown.stderr).toMatch(/--help/);
    expect(unknown.stderr).not.toMatch(/positional/);

    const badDuration = await runCli(['--once', '--stuck-after', 'later'], env);
    expect(badDuration.code).toBe(2);

    const dryRunAlone = await runCli(['--dry-run'], env);
    expect(dryRunAlone.code).toBe(2);
  });

  it('--help and --version exit 0', async () => {
    const help = await runCli(['--help'], {});
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/--once/);
    const version = await runCli(['--version'], {});
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+$/);
  });
});
