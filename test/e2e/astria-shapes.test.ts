/**
 * Astria as apps meet it, through the built CLI (`--once`, `report`), a real database and the simulated
 * Astria on loopback: tunes kept in a workspace, every failure shape, an implausible `trained_at`.
 */
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { seedModels, type SeedModel } from '../../dev/host-schema.js';
import { startSimulatedAstria, type SimulatedAstria, type SimulatedAstriaOptions } from '../../dev/simulated-astria.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';

const API_KEY = 'sd_e2e_shapes_key_81c3';
const HOUR = 3_600_000;
const ago = (ms: number) => new Date(Date.now() - ms);

let db: TestDatabase;
let astria: SimulatedAstria | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());
beforeEach(async () => {
  await db.pool.query('DELETE FROM ai_models');
});
afterEach(async () => {
  await astria?.close();
  astria = undefined;
});

async function start(options: Partial<SimulatedAstriaOptions> = {}): Promise<{ astria: SimulatedAstria; env: Record<string, string> }> {
  astria = await startSimulatedAstria({ apiKey: API_KEY, ...options });
  return { astria, env: { DATABASE_URL: db.url, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url, LOG_LEVEL: 'info' } };
}

const stuck = (id: string, tuneId: number, extra: Partial<SeedModel> = {}): SeedModel => ({
  id,
  status: 'TRAINING',
  trainingJobId: String(tuneId),
  updatedAt: ago(HOUR),
  createdAt: ago(2 * HOUR),
  ...extra,
});

describe('ASTRIA_WORKSPACE_ID with tunes kept in a workspace', () => {
  it('set: --once sends X-Workspace-Id on every request and recovers the models', async () => {
    const { astria, env } = await start({ workspaceId: '4242' });
    const workspaces = new Set<string | null>();
    astria.onRequest((event) => workspaces.add(event.workspaceId));
    const tunes = [0, 1, 2].map(() => astria.addTune({ createdAt: ago(2 * HOUR), trainedAt: ago(HOUR) }));
    await seedModels(db.pool, tunes.map((tune, i) => stuck(`ws-${i}`, tune.id)));

    const result = await runCli(['--once', '--json'], { ...env, ASTRIA_WORKSPACE_ID: '4242' });

    expect(result.code, result.stderr).toBe(0);
    expect(JSON.parse(result.stdout)).toMatchObject({ checked: 3, transitioned: 3, failed: 0 });
    for (const i of [0, 1, 2]) expect((await readModel(db.pool, `ws-${i}`)).status).toBe('READY');
    expect([...workspaces]).toEqual(['4242']);
  });

  it('unset: Astria shows none of the workspace tunes, and no model is marked (neither READY nor "not found")', async () => {
    const { astria, env } = await start({ workspaceId: '4242' });
    const tunes = [0, 1, 2].map(() => astria.addTune({ createdAt: ago(2 * HOUR), trainedAt: ago(HOUR) }));
    await seedModels(db.pool, tunes.map((tune, i) => stuck(`ws-${i}`, tune.id)));

    const result = await runCli(['--once', '--json'], env);

    // Every tune "gone" at once is held back by the not-found guard: nothing checked, safe to re-run.
    expect(result.code).toBe(3);
    expect(JSON.parse(result.stdout)).toMatchObject({ checked: 3, transitioned: 0, failed: 3 });
    for (const i of [0, 1, 2]) expect((await readModel(db.pool, `ws-${i}`)).status).toBe('TRAINING');
  });

  it('a value that is no workspace id fails at start naming the variable', async () => {
    const { env } = await start();
    const result = await runCli(['--once'], { ...env, ASTRIA_WORKSPACE_ID: 'team-a' });
    expect(result.code).toBe(1);
    expect(result.stderr).toContain('ASTRIA_WORKSPACE_ID');
  });
});

describe('failure shapes seen in the wild', () => {
  it('--once marks each failed tune ERROR with a human message, instead of waiting out the 24 h timeout', async () => {
    const { astria, env } = await start();
    const shapes = [
      [{ status: 'error' }, 'Astria training failed'],
      [{ status: 'canceled' }, 'Astria training was cancelled'],
      [{ user_error: 'No face detected in 7 of 10 images' }, 'Astria training failed: No face detected in 7 of 10 images'],
      [{ user_error: { message: 'Images rejected' } }, 'Astria training failed: Images rejected'],
      [{ error: { detail: 'GPU gone' } }, 'Astria training failed: GPU gone'],
    ] as const;
    const models = shapes.map(([failure], i) => {
      const tune = astria.addTune({ createdAt: ago(HOUR), startedTrainingAt: ago(HOUR) });
      astria.fail(tune.id, failure);
      return stuck(`failed-${i}`, tune.id);
    });
    await seedModels(db.pool, models);

    const result = await runCli(['--once', '--json'], env);

    expect(result.code, result.stderr).toBe(0);
    for (const [i, [, message]] of shapes.entries()) {
      expect(await readModel(db.pool, `failed-${i}`)).toMatchObject({ status: 'ERROR', errorMessage: message });
    }
  });
});

describe('an implausible trained_at', () => {
  it('--once makes the model READY at the time it was observed, warns naming the tune, and report counts no lag for it', async () => {
    const { astria, env } = await start();
    const epoch = astria.addTune({ createdAt: ago(2 * HOUR), startedTrainingAt: ago(2 * HOUR) });
    astria.train(epoch.id, new Date(0));
    const leap = astria.addTune({ createdAt: ago(2 * HOUR), startedTrainingAt: ago(2 * HOUR) });
    astria.train(leap.id);
    // What Astria writes for a training that ended on a leap second (yesterday's last one).
    const leapText = `${ago(24 * HOUR).toISOString().slice(0, 10)}T23:59:60Z`;
    astria.getTune(leap.id)!.trained_at = leapText;
    astria.getTune(leap.id)!.created_at = `${leapText.slice(0, 10)}T23:00:00.000Z`;
    await seedModels(db.pool, [stuck('epoch', epoch.id), stuck('leap', leap.id)]);
    // The report below reads the whole event log: only this test's transitions in it (the CLI recreates it).
    await db.pool.query('DROP SCHEMA IF EXISTS astria_reconciler CASCADE');

    const before = Date.now();
    const result = await runCli(['--once', '--json'], env);
    const after = Date.now();

    expect(result.code, result.stderr).toBe(0);
    const model = await readModel(db.pool, 'epoch');
    expect(model.status).toBe('READY');
    // timestamp(3): within the run, to the millisecond.
    expect(model.trainedAt!.getTime()).toBeGreaterThanOrEqual(before - 1);
    expect(model.trainedAt!.getTime()).toBeLessThanOrEqual(after);
    expect((await readModel(db.pool, 'leap')).trainedAt?.toISOString()).toBe(`${leapText.slice(0, 10)}T23:59:59.999Z`);
    const warning = result.stderr.split('\n').find((line) => line.includes('implausible'));
    expect(warning).toBeDefined();
    expect(warning).toContain(`Astria tune ${epoch.id}`);
    expect(warning).toContain('1970-01-01T00:00:00.000Z');

    const report = await runCli(['report', '--json'], { DATABASE_URL: db.url });
    expect(report.code, report.stderr).toBe(0);
    // Two recoveries, one lag sample: the leap second's (about a day), not 1970's (56 years).
    const json = JSON.parse(report.stdout);
    expect(json).toMatchObject({ transitions: { READY: { reconciler: 2 } }, recoveries: 1 });
    expect(json.lagSeconds.max).toBeLessThan(2 * 86_400);
    expect(json.slowest.map((slow: { modelId: string }) => slow.modelId)).toEqual(['leap']);
  });
});
