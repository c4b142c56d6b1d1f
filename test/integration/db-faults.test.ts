/**
 * The database going away under the reconciler:
 * 1. Connections killed mid-pass (`pg_terminate_backend` of the pass's pool connections while it runs
 *    against a slow-ish fake Astria): nothing half-applied (every READY row has its one event, every
 *    other row none), the pass either completes or throws a clear error, and a second pass finishes
 *    the rest.
 * 2. A pass that throws (a write fails) has stopped: nothing it queued keeps calling Astria or writing.
 * 3. A real server restart (a dedicated persistent embedded PostgreSQL, stopped and started again on the
 *    same data directory and port): the in-process daemon (`runDaemon` + `createLeaderElection`) rides
 *    it out and recovers the models without being restarted itself.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createAstriaClient, type AstriaClient } from '../../src/astria/client.js';
import { systemClock } from '../../src/clock.js';
import { HOST_SCHEMA_SQL, seedModels, type SeedModel } from '../../dev/host-schema.js';
import { operatorFilter } from '../../src/db/inflight.js';
import { loadEmbeddedPostgres } from '../../dev/embedded-postgres.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { createPool } from '../../src/db/pool.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { createMetrics } from '../../src/metrics.js';
import { runDaemon } from '../../src/reconciler/daemon.js';
import { createLeaderElection } from '../../src/reconciler/leader.js';
import { reconcileOnce, type OnceReport } from '../../src/reconciler/once.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { runCli, startCli } from '../support/cli.js';
import { freePort, waitUntil } from '../support/daemon.js';

const API_KEY = 'sd_db_faults_key';
const HOUR = 3_600_000;
const TRAINING_TIMEOUT_MS = 24 * HOUR;
const log = pino({ level: 'silent' });
const ago = (ms: number) => new Date(Date.now() - ms);
/** `createPool` names its connections so; the LISTEN and test pools are left alone. */
const APPLICATION_NAME = 'astria-reconciler';

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => undefined);
});

/**
 * `createPool` as the CLI uses it, plus an 'error' listener on every client it connects. Without it a
 * connection killed while its client is checked out emits an unhandled 'error' and takes the process
 * down (see "createPool survives ..." below); here we want to see what the pass does, not that crash.
 */
function passPool(url: string, max: number): { pool: pg.Pool; clientErrors: Error[] } {
  const pool = createPool(url, log, max);
  const clientErrors: Error[] = [];
  pool.on('connect', (client) => client.on('error', (error) => clientErrors.push(error)));
  cleanups.push(() => pool.end());
  return { pool, clientErrors };
}

function astriaClient(astria: SimulatedAstria, concurrency = 4): AstriaClient {
  const client = createAstriaClient({
    apiUrl: astria.url,
    apiKey: API_KEY,
    maxRps: 1_000,
    concurrency,
    timeoutMs: 5_000,
    log,
    metrics: createMetrics(),
    clock: systemClock,
    retry: { attempts: 3, baseDelayMs: 20, maxDelayMs: 100 },
  });
  cleanups.push(() => client.close());
  return client;
}

function pass(pool: pg.Pool, astria: AstriaClient, plan: 'auto' | 'single-gets', modelIds: string[] = []): Promise<OnceReport> {
  const metrics = createMetrics();
  return reconcileOnce(
    { pool, astria, service: createStatusService({ pool, metrics }), log, clock: systemClock, metrics },
    { filter: operatorFilter(Date.now(), 0, modelIds), trainingTimeoutMs: TRAINING_TIMEOUT_MS, concurrency: 4, plan },
  );
}

/** Every READY row has exactly one event (TRAINING → READY) and its columns; every other row none. */
async function expectNothingHalfApplied(pool: pg.Pool | pg.Client, prefix: string): Promise<{ ready: number; training: number }> {
  const { rows } = await pool.query<{ id: string; status: string; progress: number; modelUrl: string | null; trainingJobId: string; events: string[] }>(
    `SELECT m.id, m.status::text AS status, m.progress, m."modelUrl", m."trainingJobId",
            coalesce((SELECT array_agg(e.from_status || '>' || e.to_status ORDER BY e.seq) FROM astria_reconciler.events e WHERE e.model_id = m.id), '{}') AS events
       FROM ai_models m WHERE m.id LIKE $1 ORDER BY m.id`,
    [`${prefix}%`],
  );
  const bad = rows.filter((row) =>
    row.status === 'READY'
      ? row.progress !== 100 || row.modelUrl !== row.trainingJobId || row.events.length !== 1 || row.events[0] !== 'TRAINING>READY'
      : row.status !== 'TRAINING' || row.events.length !== 0,
  );
  expect(bad).toEqual([]);
  return { ready: rows.filter((row) => row.status === 'READY').length, training: rows.filter((row) => row.status === 'TRAINING').length };
}

/** A test database with our schema, and a connection of its own that terminates the others' backends. */
async function databaseWithAdmin(): Promise<{ db: TestDatabase; admin: pg.Client }> {
  const db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
  const admin = new pg.Client({ connectionString: db.url });
  await admin.connect();
  admin.on('error', () => undefined);
  return { db, admin };
}

describe('connections killed mid-pass', () => {
  let db: TestDatabase;
  let admin: pg.Client;
  let astria: SimulatedAstria;

  beforeAll(async () => {
    ({ db, admin } = await databaseWithAdmin());
    astria = await startSimulatedAstria({ apiKey: API_KEY, latencyMs: 25 });
  });
  afterAll(async () => {
    await astria?.close();
    await admin?.end();
    await db?.drop();
  });

  const MODELS = 60;
  const rounds = [
    { plan: 'single-gets' as const, killAfterReady: 5 },
    { plan: 'single-gets' as const, killAfterReady: 25 },
    { plan: 'auto' as const, killAfterReady: 1 },
    { plan: 'auto' as const, killAfterReady: 20 },
  ];

  it.each(rounds)('%o: nothing half-applied, a clear error or a full report, a second pass finishes', async ({ plan, killAfterReady }) => {
    const prefix = `kill-${plan}-${killAfterReady}-`;
    const tunes = astria.addTunes(MODELS, () => ({ startedTrainingAt: ago(HOUR), trainedAt: ago(60_000) }));
    await seedModels(
      db.pool,
      tunes.map((tune, i): SeedModel => ({ id: `${prefix}${String(i).padStart(3, '0')}`, status: 'TRAINING', trainingJobId: String(tune.id), updatedAt: ago(HOUR) })),
    );
    const ids = tunes.map((_, i) => `${prefix}${String(i).padStart(3, '0')}`);
    const { pool } = passPool(db.url, 6);
    const client = astriaClient(astria);

    const running = pass(pool, client, plan, ids).then(
      (report) => ({ report }),
      (error: Error) => ({ error }),
    );
    const readyCount = async () =>
      (await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM ai_models WHERE id LIKE $1 AND status = 'READY'`, [`${prefix}%`])).rows[0]!.n;
    let killed = 0;
    await waitUntil(async () => (await readyCount()) >= killAfterReady, 10_000, `${killAfterReady} models READY`);
    // Kill the pass's connections, twice, a moment apart: in the middle of transactions as often as not.
    for (let i = 0; i < 2; i++) {
      const { rows } = await admin.query<{ killed: boolean }>(
        `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE datname = current_database() AND application_name = $1`,
        [APPLICATION_NAME],
      );
      killed += rows.filter((row) => row.killed).length;
      await new Promise((resolve) => setTimeout(resolve, 40));
    }
    const outcome = await running;
    expect(killed).toBeGreaterThan(0);
    if ('error' in outcome) {
      expect(outcome.error).toBeInstanceOf(Error);
      // A database error, said as such: not a TypeError from half-torn state.
      expect(outcome.error.message).toMatch(/terminat|Connection terminated|connection|ECONNRESET|Client has encountered/i);
    } else {
      expect(outcome.report.checked).toBe(MODELS);
    }
    // Leftover checks (if any) settle before we look.
    await new Promise((resolve) => setTimeout(resolve, 300));
    const afterKill = await expectNothingHalfApplied(db.pool, prefix);
    console.log(`[db-faults] ${plan} kill after ${killAfterReady}: ${'error' in outcome ? `threw "${outcome.error.message}"` : 'completed'}, ` +
      `${afterKill.ready} READY / ${afterKill.training} left`);

    // A second pass, on a fresh pool, finishes the rest.
    const { pool: second } = passPool(db.url, 6);
    const report = await pass(second, astriaClient(astria), plan, ids);
    expect(report.failed).toBe(0);
    expect(report.transitioned).toBeLessThanOrEqual(afterKill.training);
    expect(await expectNothingHalfApplied(db.pool, prefix)).toEqual({ ready: MODELS, training: 0 });
  });
});

describe('a connection killed while its client is checked out', () => {
  let db: TestDatabase;
  let admin: pg.Client;

  beforeAll(async () => {
    ({ db, admin } = await databaseWithAdmin());
  });
  afterAll(async () => {
    await admin?.end();
    await db?.drop();
  });

  it('createPool hands out clients that survive it: the query fails, the process does not', async () => {
    const pool = createPool(db.url, log, 2);
    cleanups.push(() => pool.end());
    const client = await pool.connect();
    cleanups.push(async () => client.release(true));
    // pg emits 'error' on a client whose connection dies. The pool listens only while the client is
    // idle; checked out (in a pass's transaction), an 'error' without a listener is an uncaught
    // exception: the CLI or the daemon dies with "Unhandled 'error' event" instead of failing the pass.
    expect(client.listenerCount('error'), 'a checked-out client has no error listener').toBeGreaterThan(0);
    const { rows } = await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid');
    const query = client.query('SELECT pg_sleep(5)').then(
      () => null,
      (error: Error) => error,
    );
    await new Promise((resolve) => setTimeout(resolve, 50));
    await admin.query('SELECT pg_terminate_backend($1)', [rows[0]!.pid]);
    expect((await query)?.message).toMatch(/terminat/);
    expect((await pool.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one).toBe(1);
  });

  it('the built CLI: --once whose connections are killed mid-write exits cleanly; a re-run finishes', async () => {
    // Slow writes (a trigger sleeps), so the CLI's clients are checked out when the kill comes.
    await db.pool.query(`
      CREATE FUNCTION slow_write() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_sleep(0.15); RETURN NEW; END $$;
      CREATE TRIGGER slow_write BEFORE UPDATE ON ai_models FOR EACH ROW EXECUTE FUNCTION slow_write();`);
    const astria = await startSimulatedAstria({ apiKey: API_KEY });
    cleanups.push(() => astria.close());
    const tunes = astria.addTunes(30, () => ({ startedTrainingAt: ago(HOUR), trainedAt: ago(60_000) }));
    await seedModels(db.pool, tunes.map((tune, i): SeedModel => ({ id: `cli-${String(i).padStart(2, '0')}`, status: 'TRAINING', trainingJobId: String(tune.id), updatedAt: ago(HOUR) })));
    const env = { DATABASE_URL: db.url, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url, ASTRIA_MAX_RPS: '100', RECONCILER_STUCK_AFTER: '0s', LOG_LEVEL: 'warn' };

    const { child, done } = startCli(['--once', '--json'], env);
    cleanups.push(async () => void child.kill('SIGKILL'));
    await waitUntil(
      async () => (await db.pool.query(`SELECT count(*)::int AS n FROM ai_models WHERE status = 'READY'`)).rows[0].n >= 3,
      10_000,
      'the CLI to apply a few transitions',
    );
    const { rows } = await admin.query<{ killed: boolean }>(
      `SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity
        WHERE datname = current_database() AND application_name = $1 AND state = 'active'`,
      [APPLICATION_NAME],
    );
    expect(rows.length, 'a CLI connection was busy when killed').toBeGreaterThan(0);
    const result = await done;

    expect(result.stderr, 'crashed on an unhandled pg client error').not.toMatch(/Unhandled 'error' event|Emitted 'error' event/);
    expect([0, 1, 3]).toContain(result.code);
    if (result.code === 1) expect(result.stderr).toMatch(/astria-reconciler: .*(terminat|connection)/i);
    await expectNothingHalfApplied(db.pool, 'cli-');

    await db.pool.query('DROP TRIGGER slow_write ON ai_models');
    const again = await runCli(['--once', '--json'], env);
    expect(again.code, again.stderr).toBe(0);
    expect(await expectNothingHalfApplied(db.pool, 'cli-')).toEqual({ ready: 30, training: 0 });
  }, 30_000);
});

describe('a write the database refuses', () => {
  let db: TestDatabase;
  let astria: SimulatedAstria;

  beforeAll(async () => {
    db = await createTestDatabase();
    await ensureOwnSchema(db.pool, 'astria_reconciler');
    astria = await startSimulatedAstria({ apiKey: API_KEY, latencyMs: 10 });
    // A write the database refuses, for one model only: a deterministic "database error mid-pass".
    await db.pool.query(`
      CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN
        IF NEW.id LIKE '%poison%' AND NEW.status IS DISTINCT FROM OLD.status THEN
          RAISE EXCEPTION 'injected failure writing %', NEW.id;
        END IF;
        RETURN NEW;
      END $$;
      CREATE TRIGGER refuse_poison BEFORE UPDATE ON ai_models FOR EACH ROW EXECUTE FUNCTION refuse_poison();`);
  });
  afterAll(async () => {
    await astria?.close();
    await db?.drop();
  });

  it('a write the database refuses for one model is that model\'s failure; the pass goes on', async () => {
    const tunes = astria.addTunes(12, () => ({ startedTrainingAt: ago(HOUR), trainedAt: ago(60_000) }));
    // 'a-poison' sorts first: its write fails first, with 11 checks still queued.
    const ids = tunes.map((_, i) => (i === 0 ? 'a-poison' : `b-${String(i).padStart(2, '0')}`));
    await seedModels(db.pool, tunes.map((tune, i): SeedModel => ({ id: ids[i]!, status: 'TRAINING', trainingJobId: String(tune.id), updatedAt: ago(HOUR) })));
    const { pool } = passPool(db.url, 4);
    const client = astriaClient(astria, 1);
    astria.resetStats();

    const metrics = createMetrics();
    const report = await reconcileOnce(
      { pool, astria: client, service: createStatusService({ pool, metrics }), log, clock: systemClock, metrics },
      { filter: operatorFilter(Date.now(), 0, ids), trainingTimeoutMs: TRAINING_TIMEOUT_MS, concurrency: 1, plan: 'single-gets' },
    );
    expect(report).toMatchObject({ checked: 12, transitioned: 11, failed: 1 });
    expect(report.failures[0]).toMatchObject({ modelId: 'a-poison' });
    expect(report.failures[0]!.reason).toMatch(/database refused the write: injected failure writing a-poison/);
  });
});

describe('PostgreSQL restarted under the daemon', () => {
  it('the daemon rides out a stop and start of the server and recovers the models, without being restarted', async () => {
    // Loaded as the test harness loads it: reachable by the `postgres` user from a 0700 checkout too.
    const EmbeddedPostgres = await loadEmbeddedPostgres();
    const port = await freePort();
    const databaseDir = await mkdtemp(join(tmpdir(), 'astria-reconciler-restart-'));
    cleanups.push(() => rm(databaseDir, { recursive: true, force: true }));
    const options = {
      databaseDir,
      port,
      user: 'postgres',
      password: 'postgres',
      // Kept on stop: the restart must find the data where it left it.
      persistent: true,
      createPostgresUser: true,
      onLog: () => undefined,
      onError: () => undefined,
      postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories=', '-c', 'fsync=off', '-c', 'max_connections=50'],
    };
    let server = new EmbeddedPostgres(options);
    await server.initialise();
    await server.start();
    cleanups.push(() => server.stop());
    const adminUrl = `postgresql://postgres:postgres@127.0.0.1:${port}/postgres`;
    const setup = new pg.Client({ connectionString: adminUrl });
    await setup.connect();
    await setup.query('CREATE DATABASE app');
    await setup.end();
    const url = `postgresql://postgres:postgres@127.0.0.1:${port}/app`;
    const check = new pg.Pool({ connectionString: url, max: 2 });
    check.on('error', () => undefined);
    cleanups.push(() => check.end());
    await check.query(HOST_SCHEMA_SQL);
    await ensureOwnSchema(check, 'astria_reconciler');

    const astria = await startSimulatedAstria({ apiKey: API_KEY });
    cleanups.push(() => astria.close());
    const first = astria.addTune({ startedTrainingAt: ago(HOUR), trainedAt: ago(60_000) });
    const later = astria.addTunes(5, () => ({ startedTrainingAt: ago(HOUR), eta: ago(1_000) }));
    await seedModels(check, [
      { id: 'before', status: 'TRAINING', trainingJobId: String(first.id), updatedAt: ago(HOUR) },
      ...later.map((tune, i): SeedModel => ({ id: `after-${i}`, status: 'TRAINING', trainingJobId: String(tune.id), updatedAt: ago(HOUR) })),
    ]);

    const metrics = createMetrics();
    const { pool } = passPool(url, 4);
    const leader = createLeaderElection({ databaseUrl: url, lockName: 'astria_reconciler:leader:restart', log, metrics, connectTimeoutMs: 1_000 });
    cleanups.push(() => leader.release());
    const controller = new AbortController();
    cleanups.push(async () => controller.abort());
    let daemonSettled: 'running' | 'resolved' | Error = 'running';
    const daemon = runDaemon(
      { pool, astria: astriaClient(astria), service: createStatusService({ pool, metrics }), log, clock: systemClock, metrics, leader },
      { intervalMs: 300, stuckAfterMs: 0, trainingTimeoutMs: TRAINING_TIMEOUT_MS, concurrency: 4, signal: controller.signal },
    ).then(
      () => void (daemonSettled = 'resolved'),
      (error: Error) => void (daemonSettled = error),
    );
    const statusOf = async (id: string) => (await check.query<{ status: string }>(`SELECT status::text AS status FROM ai_models WHERE id = $1`, [id])).rows[0]?.status;

    await waitUntil(async () => (await statusOf('before')) === 'READY', 10_000, 'the daemon to recover a model before the restart');

    await server.stop();
    const down = Date.now();
    for (const tune of later) astria.train(tune.id);
    // Down long enough for several loop iterations to fail (connections, leader lock, passes).
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    expect(daemonSettled).toBe('running');
    expect(leader.isLeader()).toBe(false);

    server = new EmbeddedPostgres(options);
    await server.start();
    const recovered = await waitUntil(
      async () => {
        const { rows } = await check.query<{ n: number }>(`SELECT count(*)::int AS n FROM ai_models WHERE id LIKE 'after-%' AND status = 'READY'`).catch(() => ({ rows: [{ n: -1 }] }));
        return rows[0]!.n === later.length;
      },
      15_000,
      'the daemon to recover the models trained while the database was down',
    );
    console.log(`[db-faults] server down ${((Date.now() - down - recovered) / 1000).toFixed(1)} s; models recovered ${recovered} ms after it came back`);
    expect(daemonSettled).toBe('running');
    expect(leader.isLeader()).toBe(true);
    await expectNothingHalfApplied(check, '');

    controller.abort();
    await daemon;
    expect(daemonSettled).toBe('resolved');
  }, 60_000);
});
