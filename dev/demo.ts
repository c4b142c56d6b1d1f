/**
 * `npm run demo`: the whole story on one machine, offline. A scratch PostgreSQL (embedded, or a
 * throwaway database on DATABASE_URL's server) gets the app's table and a handful of models whose
 * Astria callbacks were lost; a simulated Astria knows the truth; the real CLI runs one `--once` pass;
 * the demo prints the table before and after and the events a browser would have received.
 */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { flushNotifications, listenForEvents } from '../src/db/events.js';
import { listModels } from '../src/db/models.js';
import { createDatabase, dropDatabase, startEmbeddedPostgres } from './embedded-postgres.js';
import { HOST_SCHEMA_SQL, seedModels, type SeedModel } from './host-schema.js';
import { startSimulatedAstria } from './simulated-astria.js';

const API_KEY = 'sd_demo_key';
const MINUTE = 60_000;
const CLI = fileURLToPath(new URL('../src/cli/main.js', import.meta.url));

interface ScratchDatabase {
  url: string;
  describe: string;
  dispose(): Promise<void>;
}

async function scratchDatabase(): Promise<ScratchDatabase> {
  const adminUrl = process.env.DATABASE_URL;
  if (!adminUrl) {
    const server = await startEmbeddedPostgres();
    return { url: server.url, describe: 'embedded PostgreSQL (started for this demo)', dispose: () => server.stop() };
  }
  // Never seed into the app's own database: a throwaway one on the same server instead.
  const name = `astria_reconciler_demo_${randomBytes(4).toString('hex')}`;
  const url = await createDatabase(adminUrl, name);
  return { url, describe: `scratch database ${name} on DATABASE_URL's server`, dispose: () => dropDatabase(adminUrl, name) };
}

async function main(): Promise<void> {
  const database = await scratchDatabase();
  const astria = await startSimulatedAstria({ apiKey: API_KEY, latencyMs: 25 });
  const pool = new pg.Pool({ connectionString: database.url, max: 2 });
  const listener = new pg.Client({ connectionString: database.url });
  try {
    console.log(`Database: ${database.describe}`);
    console.log(`Astria:   simulated at ${astria.url}\n`);
    await pool.query(HOST_SCHEMA_SQL);
    await seedModels(pool, await seedStory(astria));

    console.log('Before: the webhooks were lost, so the app still shows "Preparando..."');
    await printModels(pool);

    const events: string[] = [];
    await listener.connect();
    listener.on('notification', (message) => events.push(message.payload ?? ''));
    await listenForEvents(listener, 'model_status_changed');

    const env = { DATABASE_URL: database.url, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url, LOG_LEVEL: 'warn' };
    console.log('\n$ astria-reconciler --once        # backfill every in-flight model stuck for over 2m, and find ivo-orphan\'s tune');
    const exitCode = await runCli(['--once'], env);
    console.log(`(exit code ${exitCode}${exitCode === 3 ? ': a model could not be checked, see above; safe to re-run' : ''})`);
    console.log('\n$ astria-reconciler --once --model-id bruno-false-error   # heal a false failure');
    console.log(`(exit code ${await runCli(['--once', '--model-id', 'bruno-false-error'], env)})\n`);

    console.log('After:');
    await printModels(pool);
    await flushNotifications(listener);
    console.log(`\nEvents broadcast on model_status_changed (${events.length}), as an open browser would get them:`);
    for (const payload of events) console.log(`  ${payload}`);
    console.log(`\nAstria requests served: ${astria.stats.requests} (list: ${astria.stats.list}, single: ${astria.stats.get}).`);
  } finally {
    await listener.end().catch(() => undefined);
    await pool.end();
    await astria.close();
    await database.dispose();
  }
}

/** The stuck models: one per thing that can have happened to a tune while its callback was lost. */
async function seedStory(astria: Awaited<ReturnType<typeof startSimulatedAstria>>): Promise<SeedModel[]> {
  const ago = (minutes: number) => new Date(Date.now() - minutes * MINUTE);
  const trained = astria.addTune({ title: 'ana', startedTrainingAt: ago(40), trainedAt: ago(12) });
  const healed = astria.addTune({ title: 'bruno', startedTrainingAt: ago(90), trainedAt: ago(50) });
  const failed = astria.addTune({ title: 'carla', status: 'failed', errorMessage: 'no face found in 4 of 10 photos' });
  const training = astria.addTune({ title: 'davi', startedTrainingAt: ago(20), eta: ago(-20) });
  const queued = astria.addTune({ title: 'elis', startedTrainingAt: ago(3), eta: ago(-37) });
  // Its create call timed out at the app: the tune exists, its id was never saved. Its callback URL names the model.
  astria.addTune({
    title: 'ivo-orphan',
    callback: 'https://app.example.test/api/webhooks/astria?secret=demo&model=ivo-orphan',
    startedTrainingAt: ago(30),
    trainedAt: ago(8),
  });
  const stuck = (id: string, tuneId: string | null, status: SeedModel['status'] = 'TRAINING', extra: Partial<SeedModel> = {}): SeedModel => ({
    id,
    userId: `user-${id.split('-')[0]}`,
    status,
    trainingJobId: tuneId,
    createdAt: ago(60),
    updatedAt: ago(45),
    ...extra,
  });
  return [
    stuck('ana-trained', String(trained.id)),
    stuck('bruno-false-error', String(healed.id), 'ERROR', { errorMessage: 'callback timed out' }),
    stuck('carla-failed', String(failed.id)),
    stuck('davi-training', String(training.id)),
    stuck('elis-processing', String(queued.id), 'PROCESSING'),
    stuck('fabio-deleted', '987654'),
    stuck('gil-bad-id', 'job_abc'),
    stuck('hana-just-started', String(training.id), 'TRAINING', { updatedAt: ago(0.5) }),
    stuck('ivo-orphan', null, 'PROCESSING', { createdAt: ago(31) }),
  ];
}

async function printModels(pool: pg.Pool): Promise<void> {
  console.table(await listModels(pool));
}

function runCli(args: string[], env: Record<string, string>): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...env }, stdio: 'inherit' });
    child.on('error', reject);
    child.on('exit', (code) => resolve(code ?? 1));
  });
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
