/**
 * ASTRIA_API_KEY_FILE: the built daemon reads its key from a file (a Kubernetes Secret mounted as a
 * volume), so a key rotated in the Secret is picked up without a restart.
 */
import { mkdtemp, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { seedModels } from '../../dev/host-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { startDaemon, waitUntil, type RunningDaemon } from '../support/daemon.js';

const API_KEY = 'sd_rotated_key_after';
const OLD_KEY = 'sd_revoked_key_before';

let db: TestDatabase;
let astria: SimulatedAstria;
let dir: string;
let running: RunningDaemon | undefined;

beforeAll(async () => {
  db = await createTestDatabase();
  astria = await startSimulatedAstria({ apiKey: API_KEY });
  dir = await mkdtemp(join(tmpdir(), 'astria-key-file-'));
});
afterAll(async () => {
  if (running && !running.exited()) running.kill('SIGKILL');
  await astria.close();
  await rm(dir, { recursive: true, force: true });
  await db.drop();
});

async function authOk(daemon: RunningDaemon): Promise<number | undefined> {
  const text = await (await fetch(`${daemon.url}/metrics`)).text();
  const line = text.split('\n').find((entry) => entry.startsWith('astria_reconciler_astria_auth_ok '));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

it('a key rotated in the file is used without a restart: polling resumes, the model is recovered, no key is logged', async () => {
  const tune = astria.addTune({ startedTrainingAt: new Date(Date.now() - 3_600_000), trainedAt: new Date(Date.now() - 60_000) });
  await seedModels(db.pool, [{ id: 'rotated', status: 'TRAINING', trainingJobId: String(tune.id), updatedAt: new Date(Date.now() - 3_600_000) }]);
  const file = join(dir, 'astria-api-key');
  await writeFile(file, `${OLD_KEY}\n`);

  running = await startDaemon({ DATABASE_URL: db.url, ASTRIA_API_KEY_FILE: file, ASTRIA_API_URL: astria.url, RECONCILER_AUTH_RETRY: '1s' });
  await waitUntil(async () => (await authOk(running!)) === 0, 15_000, 'astria_auth_ok 0 with the revoked key');
  expect((await readModel(db.pool, 'rotated')).status).toBe('TRAINING');

  await writeFile(file, `${API_KEY}\n`);
  await utimes(file, new Date(), new Date(Date.now() + 5_000));
  await waitUntil(async () => (await readModel(db.pool, 'rotated')).status === 'READY', 20_000, 'the model recovered with the rotated key');
  expect(await authOk(running)).toBe(1);
  expect(running.exited()).toBe(false);
  expect(running.output()).toContain('ASTRIA_API_KEY_FILE changed');
  expect(running.output()).not.toContain(OLD_KEY);
  expect(running.output()).not.toContain(API_KEY);
}, 60_000);
