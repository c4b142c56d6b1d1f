/**
 * The daemon loop in-process at default settings, on a fake (virtual) clock: real PostgreSQL, the
 * real Astria client over loopback HTTP against the simulated Astria, a real leader election. Time
 * moves only when the process is idle, so ten minutes of schedule take a second, and every figure
 * below is in virtual time (what the schedule decided, not how fast the machine is). The last test
 * runs on the real clock: a lock timeout is real time, which a virtual clock stands still through.
 */
import { setMaxListeners } from 'node:events';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it, vi } from 'vitest';
import { VirtualClock, trackLeader, trackPool, trackUndiciRequests } from '../../bench/virtual-clock.js';
import { createAstriaClient } from '../../src/astria/client.js';
import { systemClock } from '../../src/clock.js';
import { seedModels, type SeedModel } from '../../dev/host-schema.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { createMetrics, type Metrics } from '../../src/metrics.js';
import { runDaemon, type DaemonOptions } from '../../src/reconciler/daemon.js';
import { createLeaderElection, type LeaderElection } from '../../src/reconciler/leader.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { GENERATIONS_SCHEMA_SQL, readGeneration, seedGenerations } from '../support/generations-schema.js';

const API_KEY = 'sd_rounds_test_key';
const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
/** What the daemon logged at warn and above during the test. */
let logged: { msg: string; modelId?: string; err?: string }[];
const log = pino({ level: 'warn' }, { write: (line: string) => void logged.push(JSON.parse(line)) });

let db: TestDatabase;
let astria: SimulatedAstria;
let clock: VirtualClock;
/** Set by `runFor`: when the run ends. */
let clockOptions: { start: number; stopAt?: number; onStop?: () => void };
let t0: number;
/** The running daemon's metrics and shutdown signal (set by `runFor`). */
let metrics: Metrics;
let stopSignal: AbortSignal;
/** The running daemon's leader election (set by `runFor`); its lock is `rounds-${t0}`. */
let election: LeaderElection;
/** Virtual arrival time of every request at the simulated Astria, with its path. */
let requests: { at: number; path: string }[];

beforeAll(async () => {
  db = await createTestDatabase();
  await db.pool.query(GENERATIONS_SCHEMA_SQL);
  await ensureOwnSchema(db.pool, 'astria_reconciler');
});
afterAll(() => db.drop());
beforeEach(async () => {
  await db.pool.query('DELETE FROM generations');
  await db.pool.query('DELETE FROM ai_models');
  await db.pool.query('TRUNCATE astria_reconciler.events CASCADE');
  t0 = Math.floor(Date.now() / SECOND) * SECOND;
  clockOptions = { start: t0 };
  clock = new VirtualClock(clockOptions);
  requests = [];
  logged = [];
});
afterEach(() => astria.close());

/** Runs the daemon (default settings unless given) for `forMs` of virtual time; `script` schedules what happens meanwhile. */
async function runFor(
  forMs: number,
  script: (at: (ms: number, what: () => Promise<void> | void) => void) => void,
  settings: Partial<DaemonOptions> = {},
): Promise<Metrics> {
  const stop = new AbortController();
  // Each of the script's timed steps waits on it: more than Node's 10 listeners, and no leak.
  setMaxListeners(0, stop.signal);
  stopSignal = stop.signal;
  clockOptions.stopAt = t0 + forMs;
  clockOptions.onStop = () => stop.abort(new Error('done'));
  astria.onRequest((event) => void requests.push({ at: clock.now(), path: event.path }));
  const untrack = trackUndiciRequests(clock);
  metrics = createMetrics();
  const pool = trackPool(db.pool, clock);
  const client = createAstriaClient({ apiUrl: astria.url, apiKey: API_KEY, maxRps: 5, concurrency: 4, timeoutMs: 10 * SECOND, log, metrics, clock });
  election = createLeaderElection({ databaseUrl: db.url, lockName: `rounds-${t0}`, log, metrics });
  const leader = trackLeader(election, clock);
  script((ms, what) => void clock.sleep(ms, stop.signal).then(() => clock.track(Promise.resolve(what()))).catch(() => undefined));
  try {
    await runDaemon(
      { pool, astria: client, service: createStatusService({ pool, clock, metrics }), log, clock, metrics, leader },
      { intervalMs: 30 * SECOND, stuckAfterMs: 2 * MINUTE, trainingTimeoutMs: 24 * HOUR, concurrency: 4, ...settings, signal: stop.signal },
    );
  } finally {
    untrack();
    await election.release();
    await client.close();
  }
  return metrics;
}

const training = (tuneId: number, extra: Partial<SeedModel> = {}): SeedModel => ({
  id: `m-${tuneId}`,
  status: 'TRAINING',
  trainingJobId: String(tuneId),
  updatedAt: new Date(t0 - HOUR),
  ...extra,
});

/** A metric's value, summed over its labels. */
const counter = async (metric: { get(): Promise<{ values: { value: number }[] }> }) => (await metric.get()).values.reduce((sum, { value }) => sum + value, 0);

/** Virtual epoch ms of the model's event to `status`. */
async function eventAt(modelId: string, status: string): Promise<number> {
  const { rows } = await db.pool.query<{ at: string }>(
    `SELECT (extract(epoch FROM occurred_at) * 1000)::bigint::text AS at FROM astria_reconciler.events WHERE model_id = $1 AND to_status = $2`,
    [modelId, status],
  );
  expect(rows).toHaveLength(1);
  return Number(rows[0]!.at);
}

/** Virtual seconds from `trainedAt` to the READY event (occurred_at is stamped with the virtual clock). */
async function lagSeconds(modelId: string): Promise<number> {
  const { rows } = await db.pool.query<{ lag: number }>(
    `SELECT extract(epoch FROM occurred_at - trained_at)::float8 AS lag FROM astria_reconciler.events WHERE model_id = $1 AND to_status = 'READY'`,
    [modelId],
  );
  expect(rows).toHaveLength(1);
  return rows[0]!.lag;
}

describe('daemon rounds on a fake clock', () => {
  beforeEach(async () => {
    astria = await startSimulatedAstria({ apiKey: API_KEY, now: () => new Date(clock.now()) });
  });

  it('nothing in flight: no Astria call in ten minutes, and the loop keeps reporting success', async () => {
    const done = astria.addTune({ trainedAt: new Date(t0 - HOUR) });
    await seedModels(db.pool, [training(done.id, { id: 'ready', status: 'READY' })]);
    const metrics = await runFor(10 * MINUTE, () => undefined);
    expect(requests).toEqual([]);
    const lastSuccess = (await metrics.lastSuccess.get()).values[0]!.value;
    expect(lastSuccess * 1000).toBeGreaterThan(t0 + 9 * MINUTE);
  });

  it('a tune finishing 25 min after its eta, one with no eta, one failing and one deleted: each applied within a round or two', async () => {
    const late = astria.addTune({ startedTrainingAt: new Date(t0 - HOUR), eta: new Date(t0 - 20 * MINUTE) });
    const none = astria.addTune({ startedTrainingAt: new Date(t0 - HOUR), eta: null });
    const failing = astria.addTune({ startedTrainingAt: new Date(t0 - HOUR), eta: new Date(t0 - MINUTE) });
    const deleted = astria.addTune({ startedTrainingAt: new Date(t0 - HOUR), eta: new Date(t0 - MINUTE) });
    astria.addTunes(5);
    await seedModels(db.pool, [training(late.id), training(none.id), training(failing.id), training(deleted.id)]);
    const finishedAt: Record<string, number> = {};
    await runFor(12 * MINUTE, (at) => {
      at(5 * MINUTE + 300, () => astria.train(late.id, new Date(t0 + 5 * MINUTE + 300)));
      at(7 * MINUTE + 1_100, () => astria.train(none.id, new Date(t0 + 7 * MINUTE + 1_100)));
      at(9 * MINUTE, () => void ((finishedAt.failing = clock.now()), astria.fail(failing.id, 'GPU on fire')));
      at(10 * MINUTE, () => void ((finishedAt.deleted = clock.now()), astria.remove(deleted.id)));
    });
    expect(await lagSeconds(`m-${late.id}`)).toBeLessThanOrEqual(2.5);
    expect(await lagSeconds(`m-${none.id}`)).toBeLessThanOrEqual(2.5);
    for (const [name, tune] of [['failing', failing], ['deleted', deleted]] as const) {
      expect((await readModel(db.pool, `m-${tune.id}`)).status).toBe('ERROR');
      const { rows } = await db.pool.query<{ at: string }>(
        `SELECT (extract(epoch FROM occurred_at) * 1000)::bigint::text AS at FROM astria_reconciler.events WHERE model_id = $1 AND to_status = 'ERROR'`,
        [`m-${tune.id}`],
      );
      expect(Number(rows[0]!.at) - finishedAt[name]!).toBeLessThanOrEqual(2_500);
    }
    // One list page a round (the four share a page), single GETs only for the deleted tune.
    const gets = requests.filter((request) => request.path.startsWith('/tunes/'));
    expect(gets.every((request) => request.path === `/tunes/${deleted.id}`)).toBe(true);
    expect(requests.length).toBeLessThanOrEqual(12 * 30 + 5);
  });

  it('many models on one page cost one call a round; a straggler far down costs one GET a round, not the pages to reach it', async () => {
    const straggler = astria.addTune({ startedTrainingAt: new Date(t0 - 5 * HOUR), eta: null });
    astria.addTunes(2_000);
    const cluster = astria.addTunes(100, () => ({ startedTrainingAt: new Date(t0 - HOUR), eta: null }));
    await seedModels(db.pool, [training(straggler.id), ...cluster.map((tune) => training(tune.id))]);
    await runFor(MINUTE, () => undefined);
    const lists = requests.filter((request) => request.path.startsWith('/tunes?'));
    const gets = requests.filter((request) => request.path === `/tunes/${straggler.id}`);
    expect(lists.length).toBeGreaterThanOrEqual(25);
    expect(lists.length).toBeLessThanOrEqual(31);
    expect(gets.length).toBeGreaterThanOrEqual(lists.length - 1); // the run may end between the two
    expect(requests.length).toBe(lists.length + gets.length);
    // Discovery noted each in-flight model under its tune: a callback without &model= finds it there.
    const noted = await db.pool.query<{ tune_id: string; model_id: string }>(
      `SELECT tune_id, model_id FROM astria_reconciler.tune_models WHERE model_id = ANY ($1::text[]) ORDER BY model_id`,
      [[straggler, ...cluster].map((tune) => `m-${tune.id}`)],
    );
    expect(noted.rows).toEqual(
      [straggler, ...cluster].map((tune) => ({ tune_id: String(tune.id), model_id: `m-${tune.id}` })).sort((a, b) => a.model_id.localeCompare(b.model_id)),
    );
  });

  it('prompts are looked at every 3 s and tunes every 2 s by default: a lost prompt callback is applied within 3 s', async () => {
    const tune = astria.addTune({ startedTrainingAt: new Date(t0 - HOUR), eta: null });
    const packTune = astria.addTune({ trainedAt: new Date(t0 - 24 * HOUR) });
    await seedModels(db.pool, [training(tune.id), training(packTune.id, { status: 'READY' })]);
    const pack = astria.addPack(packTune.id, 30);
    await seedGenerations(
      db.pool,
      pack.map((prompt) => ({ id: `g-${prompt.id}`, modelId: `m-${packTune.id}`, status: 'PROCESSING' as const, jobId: String(prompt.id), createdAt: new Date(t0), updatedAt: new Date(t0) })),
    );
    const finishedAt = t0 + 31 * SECOND + 300;
    await runFor(MINUTE, (at) => at(finishedAt - t0, () => astria.finishPrompt(pack[0]!.id, { at: new Date(finishedAt) })));
    const tuneLists = requests.filter((request) => request.path.startsWith('/tunes?')).length;
    const promptLists = requests.filter((request) => request.path.startsWith('/prompts?')).length;
    expect(tuneLists).toBeGreaterThanOrEqual(29);
    expect(tuneLists).toBeLessThanOrEqual(31);
    expect(promptLists).toBeGreaterThanOrEqual(19);
    expect(promptLists).toBeLessThanOrEqual(21);
    expect(requests).toHaveLength(tuneLists + promptLists);
    expect((await readGeneration(db.pool, `g-${pack[0]!.id}`)).status).toBe('COMPLETED');
    const { rows } = await db.pool.query<{ at: string }>(
      `SELECT (extract(epoch FROM occurred_at) * 1000)::bigint::text AS at FROM astria_reconciler.events WHERE generation_id = $1 AND to_status = 'COMPLETED'`,
      [`g-${pack[0]!.id}`],
    );
    expect(rows).toHaveLength(1);
    expect(Number(rows[0]!.at) - finishedAt).toBeLessThanOrEqual(3 * SECOND);
  });

  it.each([
    ['RECONCILER_OBSERVE_EVERY 1s speeds the prompts up too (every 1.5 s)', { observeEveryMs: SECOND }, [39, 41]],
    ['RECONCILER_OBSERVE_PROMPTS_EVERY 10s sets the prompts\' cadence alone', { observePromptsEveryMs: 10 * SECOND }, [6, 7]],
  ] as const)('%s', async (_name, settings, [fewest, most]) => {
    const packTune = astria.addTune({ trainedAt: new Date(t0 - 24 * HOUR) });
    await seedModels(db.pool, [training(packTune.id, { status: 'READY' })]);
    const pack = astria.addPack(packTune.id, 5);
    await seedGenerations(db.pool, pack.map((prompt) => ({ id: `g-${prompt.id}`, modelId: `m-${packTune.id}`, status: 'PROCESSING' as const, jobId: String(prompt.id) })));
    await runFor(MINUTE, () => undefined, settings);
    const promptLists = requests.filter((request) => request.path.startsWith('/prompts?')).length;
    expect(promptLists).toBeGreaterThanOrEqual(fewest);
    expect(promptLists).toBeLessThanOrEqual(most);
    expect(requests).toHaveLength(promptLists);
  });

  it('a row the app touches every 3 s is looked at once when it appears, then spared until the grace from first sight ends', async () => {
    const tune = astria.addTune({ startedTrainingAt: new Date(t0 - 2 * HOUR), eta: null });
    await seedModels(db.pool, [training(tune.id, { updatedAt: new Date(t0) })]);
    const touch = async () => {
      await db.pool.query(`UPDATE ai_models SET "updatedAt" = ($1::timestamptz AT TIME ZONE 'UTC') WHERE id = $2`, [new Date(clock.now()).toISOString(), `m-${tune.id}`]);
    };
    await runFor(4 * MINUTE, (at) => {
      for (let ms = 3 * SECOND; ms < 4 * MINUTE; ms += 3 * SECOND) at(ms, touch);
      at(MINUTE, () => astria.train(tune.id));
    });
    expect((await readModel(db.pool, `m-${tune.id}`)).status).toBe('READY');
    // Its first look is at once; then nothing is asked of Astria during the grace: it exists to save calls.
    expect(requests[0]!.at).toBe(t0);
    const afterFirst = requests.slice(1);
    expect(afterFirst[0]!.at).toBeGreaterThanOrEqual(t0 + 2 * MINUTE);
    expect(afterFirst[0]!.at).toBeLessThanOrEqual(t0 + 2 * MINUTE + 31 * SECOND);
  });

  it('a young model whose tune was trained at creation (FaceID, gemini-2, fast) is applied within a round of appearing, not after the grace', async () => {
    astria.addTunes(300, () => ({ startedTrainingAt: new Date(t0 - 2 * HOUR), trainedAt: new Date(t0 - HOUR) }));
    const instant = astria.addTune({ createdAt: new Date(t0 + 10 * SECOND), trainedAt: new Date(t0 + 10 * SECOND) });
    await runFor(30 * SECOND, (at) => at(10 * SECOND, () => seedModels(db.pool, [training(instant.id, { updatedAt: new Date(clock.now()) })])));
    expect((await readModel(db.pool, `m-${instant.id}`)).status).toBe('READY');
    // One call for it, asking for no more than the one tune it needs.
    expect(requests.map((request) => request.path)).toEqual([`/tunes?limit=1&before_id=${instant.id + 1}`]);
    expect(requests[0]!.at - (t0 + 10 * SECOND)).toBeLessThanOrEqual(5 * SECOND);
  });

  it('a tune whose eta is 30 min away is looked at every 30 s, its progress written in steps of 5 points (or 5 minutes left)', async () => {
    // A 40-minute training, 10 minutes in: 2.5 points a minute.
    const tune = astria.addTune({ startedTrainingAt: new Date(t0 - 10 * MINUTE), eta: new Date(t0 + 30 * MINUTE) });
    await seedModels(db.pool, [training(tune.id, { progress: 25, estimatedTime: 30 })]);
    const figures: { at: number; figure: string }[] = [];
    await runFor(10 * MINUTE, (at) => {
      for (let ms = SECOND; ms < 10 * MINUTE; ms += 5 * SECOND) {
        at(ms, async () => {
          const row = await readModel(db.pool, `m-${tune.id}`);
          const figure = `${row.progress}% ${row.estimatedTime} min`;
          if (figures.at(-1)?.figure !== figure) figures.push({ at: clock.now(), figure });
        });
      }
    });
    expect(figures[0]!.figure).toBe('25% 30 min');
    const writes = figures.slice(1);
    // 25 points in 10 minutes: a write every 2 minutes, not every 30 s.
    expect(writes.length).toBeGreaterThanOrEqual(4);
    expect(writes.length).toBeLessThanOrEqual(6);
    for (let index = 1; index < figures.length; index += 1) {
      const [progressBefore, minutesBefore] = figures[index - 1]!.figure.match(/\d+/g)!.map(Number);
      const [progressAfter, minutesAfter] = figures[index]!.figure.match(/\d+/g)!.map(Number);
      expect(progressAfter! - progressBefore! >= 5 || minutesBefore! - minutesAfter! >= 5).toBe(true);
    }
    // The first look at once, then one every 30 s (not every 2 s) while the eta is more than a minute away.
    expect(requests[0]!.at).toBe(t0);
    expect(requests.length).toBeGreaterThanOrEqual(19);
    expect(requests.length).toBeLessThanOrEqual(21);
    expect(Math.max(...requests.slice(1).map((request, index) => request.at - requests[index]!.at))).toBe(30 * SECOND);
  });

  it('from a minute before the eta the tune is looked at every round: finishing at its eta, it is READY within seconds', async () => {
    const tune = astria.addTune({ startedTrainingAt: new Date(t0 - 10 * MINUTE), eta: new Date(t0 + 3 * MINUTE) });
    await seedModels(db.pool, [training(tune.id)]);
    let trainedAt = 0;
    await runFor(4 * MINUTE, (at) =>
      at(3 * MINUTE + 7 * SECOND, () => {
        trainedAt = clock.now();
        astria.train(tune.id, new Date(trainedAt));
      }),
    );
    expect((await readModel(db.pool, `m-${tune.id}`)).status).toBe('READY');
    const { rows } = await db.pool.query(`SELECT (extract(epoch FROM occurred_at) * 1000)::bigint::text AS at FROM astria_reconciler.events WHERE model_id = $1`, [`m-${tune.id}`]);
    expect(Number(rows[0].at) - trainedAt).toBeLessThanOrEqual(2 * SECOND);
    // Every 30 s for the first two minutes, every 2 s from 2 min on.
    expect(requests.filter((request) => request.at < t0 + 2 * MINUTE)).toHaveLength(4);
  });

  it('429s slow the cadence down; clean rounds bring it back', async () => {
    const tune = astria.addTune({ startedTrainingAt: new Date(t0 - HOUR), eta: null });
    await seedModels(db.pool, [training(tune.id)]);
    // Three rounds in a row find the list rate limited on every attempt.
    await runFor(3 * MINUTE, (at) => at(MINUTE, () => astria.injectFaults({ status: 429, headers: { 'retry-after': '1' } }, 12)));
    const gapsAfter = (from: number, to: number) => {
      const times = requests.filter((request) => request.at >= from && request.at < to).map((request) => request.at);
      return times.slice(1).map((time, index) => time - times[index]!);
    };
    expect(Math.max(...gapsAfter(t0, t0 + MINUTE))).toBe(2 * SECOND);
    // The minute after: the budget's rate halved and the rounds spaced out (30 calls in a normal minute).
    expect(Math.max(...gapsAfter(t0 + MINUTE, t0 + 2 * MINUTE))).toBeGreaterThanOrEqual(6 * SECOND);
    expect(requests.filter((request) => request.at >= t0 + MINUTE && request.at < t0 + 2 * MINUTE).length).toBeLessThanOrEqual(15);
    expect(Math.max(...gapsAfter(t0 + 150 * SECOND, t0 + 3 * MINUTE))).toBe(2 * SECOND);
  });
});

describe('daemon rounds: leadership lost', () => {
  it('a leader whose key Astria rejects, with models in flight, loses the lock: its gauges no longer say "key rejected" or count models it does not poll', async () => {
    astria = await startSimulatedAstria({ apiKey: 'sd_another_key', now: () => new Date(clock.now()) });
    const tunes = astria.addTunes(5, () => ({ startedTrainingAt: new Date(t0 - HOUR), eta: null }));
    await seedModels(db.pool, tunes.map((tune) => training(tune.id)));
    const rival = createLeaderElection({ databaseUrl: db.url, lockName: `rounds-${t0}`, log, metrics: createMetrics() });
    const whileLeading: Record<string, number> = {};
    try {
      await runFor(3 * MINUTE, (at) =>
        at(MINUTE, async () => {
          whileLeading.authOk = await counter(metrics.astriaAuthOk);
          whileLeading.inflight = await counter(metrics.inflightModels);
          // Another replica takes the lock (as when this one's session dropped).
          await election.release();
          expect(await rival.refresh()).toBe(true);
        }),
      );
    } finally {
      await rival.release();
    }
    expect(whileLeading).toEqual({ authOk: 0, inflight: 5 });
    expect(await counter(metrics.isLeader)).toBe(0);
    expect(await counter(metrics.astriaAuthOk)).toBe(1);
    expect(await counter(metrics.inflightModels)).toBe(0);
  });
});

describe('daemon rounds: one model\'s failure stays that model\'s', () => {
  beforeEach(async () => {
    astria = await startSimulatedAstria({ apiKey: API_KEY, now: () => new Date(clock.now()) });
  });

  it('three of four tunes deleted while the list answers: the three are ERROR "not found" within a round, no loop error', async () => {
    const tunes = astria.addTunes(4, () => ({ startedTrainingAt: new Date(t0 - HOUR), eta: null }));
    await seedModels(db.pool, tunes.map((tune) => training(tune.id)));
    const deleted = tunes.slice(1);
    const metrics = await runFor(2 * MINUTE, (at) => at(MINUTE, () => deleted.forEach((tune) => astria.remove(tune.id))));
    for (const tune of deleted) {
      expect(await readModel(db.pool, `m-${tune.id}`)).toMatchObject({ status: 'ERROR', errorMessage: `Astria tune ${tune.id} not found` });
      expect((await eventAt(`m-${tune.id}`, 'ERROR')) - (t0 + MINUTE)).toBeLessThanOrEqual(2_500);
    }
    expect((await readModel(db.pool, `m-${tunes[0]!.id}`)).status).toBe('TRAINING');
    expect(await counter(metrics.loopErrors)).toBe(0);
    expect((await counter(metrics.lastSuccess)) * 1000).toBeGreaterThan(t0 + 2 * MINUTE - 5 * SECOND);
  });

  it('likewise when the round needs no list page (tunes far apart): the tune still shown proves endpoint and account', async () => {
    const tunes: number[] = [];
    for (let i = 0; i < 4; i += 1) {
      tunes.push(astria.addTune({ startedTrainingAt: new Date(t0 - HOUR), eta: null }).id);
      astria.addTunes(1_000);
    }
    // Newest of all, still in its grace: it only rides along, so no page is worth fetching for it.
    const fresh = astria.addTune({ startedTrainingAt: new Date(t0 - MINUTE), eta: null });
    await seedModels(db.pool, [...tunes.map((id) => training(id)), training(fresh.id, { updatedAt: new Date(t0) })]);
    const metrics = await runFor(MINUTE, (at) => at(30 * SECOND, () => tunes.slice(1).forEach((id) => astria.remove(id))));
    for (const id of tunes.slice(1)) expect((await readModel(db.pool, `m-${id}`)).status).toBe('ERROR');
    expect((await readModel(db.pool, `m-${tunes[0]}`)).status).toBe('TRAINING');
    // The fresh one's first look came before the deletions; after them, every round is single GETs.
    expect(requests.filter((request) => request.path.startsWith('/tunes?') && request.at >= t0 + 30 * SECOND)).toEqual([]);
    expect(await counter(metrics.loopErrors)).toBe(0);
  });

  it("every one of the round's tunes answering 404 while the list answers (another account's key): none is marked ERROR, and the log says why", async () => {
    const tunes = astria.addTunes(4, () => ({ startedTrainingAt: new Date(t0 - HOUR), eta: null }));
    astria.addTunes(50); // the account's other tunes: the list keeps answering
    await seedModels(db.pool, tunes.map((tune) => training(tune.id)));
    await runFor(MINUTE, (at) => at(10 * SECOND, () => tunes.forEach((tune) => astria.remove(tune.id))));
    for (const tune of tunes) expect((await readModel(db.pool, `m-${tune.id}`)).status).toBe('TRAINING');
    const refused = logged.find((line) => line.msg === '404s not applied') as { reason?: string } | undefined;
    expect(refused?.reason).toMatch(/4 of 4 checked models' tunes answered 404.*ASTRIA_API_KEY/);
  });

  it("rows whose updatedAt or createdAt is 'infinity' neither stop the rounds nor wait: all recovered within a round", async () => {
    const tunes = astria.addTunes(4, () => ({ startedTrainingAt: new Date(t0 - HOUR), eta: null }));
    await seedModels(db.pool, tunes.map((tune) => training(tune.id)));
    await db.pool.query(`UPDATE ai_models SET "updatedAt" = 'infinity' WHERE id = $1`, [`m-${tunes[0]!.id}`]);
    await db.pool.query(`UPDATE ai_models SET "createdAt" = 'infinity', "updatedAt" = '-infinity' WHERE id = $1`, [`m-${tunes[1]!.id}`]);
    const metrics = await runFor(MINUTE, (at) => at(30 * SECOND, () => tunes.forEach((tune) => astria.train(tune.id))));
    for (const tune of tunes) expect((await eventAt(`m-${tune.id}`, 'READY')) - (t0 + 30 * SECOND)).toBeLessThanOrEqual(5 * SECOND);
    expect(await counter(metrics.loopErrors)).toBe(0);
  });

  it('a tune list answering 500 on every page: the tunes are fetched one by one, every model recovered, no loop error', async () => {
    const tunes = astria.addTunes(5, () => ({ startedTrainingAt: new Date(t0 - HOUR), eta: null }));
    await seedModels(db.pool, tunes.map((tune) => training(tune.id)));
    astria.injectFaults({ endpoint: 'list', status: 500 }, 1_000_000);
    const metrics = await runFor(2 * MINUTE, (at) => at(MINUTE, () => tunes.forEach((tune) => astria.train(tune.id))));
    for (const tune of tunes) {
      expect((await readModel(db.pool, `m-${tune.id}`)).status).toBe('READY');
      expect((await eventAt(`m-${tune.id}`, 'READY')) - (t0 + MINUTE)).toBeLessThanOrEqual(30 * SECOND);
    }
    expect(requests.filter((request) => /^\/tunes\/\d+/.test(request.path)).length).toBeGreaterThan(0);
    expect(await counter(metrics.loopErrors)).toBe(0);
    // Logged, at most once a minute.
    const warnings = logged.filter((line) => line.msg === 'tune list failed; its tunes were fetched one by one');
    expect(warnings.length).toBeGreaterThan(0);
    expect(warnings.length).toBeLessThanOrEqual(2);
  });

  it('a model whose write the database refuses is retried with backoff (2 s doubling, at most 5 min), while the others go on', async () => {
    const poison = astria.addTune({ startedTrainingAt: new Date(t0 - 2 * HOUR), trainedAt: new Date(t0 - HOUR) });
    const healthy = astria.addTune({ startedTrainingAt: new Date(t0 - HOUR), eta: null });
    await seedModels(db.pool, [training(poison.id, { id: 'poison' }), training(healthy.id)]);
    await db.pool.query(`ALTER TABLE ai_models ADD CONSTRAINT poison_never_ready CHECK (id <> 'poison' OR status <> 'READY')`);
    try {
      const metrics = await runFor(10 * MINUTE, (at) => at(7 * MINUTE + 300, () => astria.train(healthy.id, new Date(t0 + 7 * MINUTE + 300))));
      const attempts = logged.filter((entry) => entry.msg === 'could not write model' && entry.modelId === 'poison');
      // Attempts at 0, 2, 6, 14, 30, 62, 126, 254 and 510 s: nine in ten minutes, not one a round (300).
      expect(attempts).toHaveLength(9);
      expect((await readModel(db.pool, 'poison')).status).toBe('TRAINING');
      expect(await lagSeconds(`m-${healthy.id}`)).toBeLessThanOrEqual(2.5);
      expect(await counter(metrics.loopErrors)).toBe(0);
    } finally {
      await db.pool.query('ALTER TABLE ai_models DROP CONSTRAINT poison_never_ready');
    }
  });

  it('judging lost callbacks failing ("interval out of range") is logged and counted; polling goes on', async () => {
    const tune = astria.addTune({ startedTrainingAt: new Date(t0 - 2 * HOUR), trainedAt: new Date(t0 - HOUR) });
    await seedModels(db.pool, [training(tune.id)]);
    const metrics = await runFor(MINUTE, () => undefined, { callbackGraceMs: 1_000_000_000 * 24 * HOUR });
    expect((await readModel(db.pool, `m-${tune.id}`)).status).toBe('READY');
    expect(await counter(metrics.loopErrors)).toBeGreaterThanOrEqual(1);
    expect(logged.some((entry) => entry.msg.startsWith('judging lost callbacks failed') && /interval out of range/.test(entry.err ?? ''))).toBe(true);
  });

  it('the last-success gauge stays put while every round fails, and moves again once one completes', async () => {
    const tune = astria.addTune({ startedTrainingAt: new Date(t0 - HOUR), eta: null });
    await seedModels(db.pool, [training(tune.id)]);
    // Astria answers 500 to everything for three minutes: every round gives up on the list.
    astria.injectFaults({ status: 500 }, 1_000_000);
    let lastSuccessAtThree: number | undefined;
    await runFor(4 * MINUTE, (at) =>
      at(3 * MINUTE, async () => {
        lastSuccessAtThree = await counter(metrics.lastSuccess);
        astria.clearFaults();
      }),
    );
    expect(lastSuccessAtThree).toBe(0);
    expect(await counter(metrics.loopErrors)).toBeGreaterThan(3);
    // Moved again once Astria answered (the cadence, slowed by the failing rounds, is coming back).
    expect((await counter(metrics.lastSuccess)) * 1000).toBeGreaterThan(t0 + 3 * MINUTE);
  });

  it('combines its shutdown signal with the leader term once per term, not once a round (each costs memory for the life of the process)', async () => {
    const any = vi.spyOn(AbortSignal, 'any');
    try {
      const tune = astria.addTune({ startedTrainingAt: new Date(t0 - HOUR), eta: null });
      await seedModels(db.pool, [training(tune.id)]);
      await runFor(2 * MINUTE, () => undefined);
      expect(requests.length).toBeGreaterThan(50); // a round every 2 s
      expect(any.mock.calls.filter(([signals]) => [...signals].includes(stopSignal))).toHaveLength(1);
    } finally {
      any.mockRestore();
    }
  });
});

describe('daemon rounds in real time: a lock timeout is real', () => {
  it('rows the app keeps locked are retried beside the rounds: the rounds keep their 2 s cadence meanwhile', async () => {
    const now = Date.now();
    astria = await startSimulatedAstria({ apiKey: API_KEY });
    const lockedTunes = astria.addTunes(4, () => ({ startedTrainingAt: new Date(now - 2 * HOUR), trainedAt: new Date(now - HOUR) }));
    const healthy = astria.addTune({ startedTrainingAt: new Date(now - HOUR), eta: null });
    const seed = (tuneId: number): SeedModel => ({ id: `m-${tuneId}`, status: 'TRAINING', trainingJobId: String(tuneId), updatedAt: new Date(now - HOUR) });
    await seedModels(db.pool, [...lockedTunes.map((tune) => seed(tune.id)), seed(healthy.id)]);
    // An idle interactive transaction of the app holding the four rows: each write waits out the 5 s lock timeout.
    const app = await db.pool.connect();
    await app.query('BEGIN');
    await app.query(`UPDATE ai_models SET name = 'renamed' WHERE id = ANY($1::text[])`, [lockedTunes.map((tune) => `m-${tune.id}`)]);
    const lists: number[] = [];
    astria.onRequest((event) => void (event.path.startsWith('/tunes?') && lists.push(Date.now() - now)));
    const stop = new AbortController();
    const metrics = createMetrics();
    const client = createAstriaClient({ apiUrl: astria.url, apiKey: API_KEY, maxRps: 5, concurrency: 4, timeoutMs: 10 * SECOND, log, metrics, clock: systemClock });
    const election = createLeaderElection({ databaseUrl: db.url, lockName: `rounds-real-${now}`, log, metrics });
    const service = createStatusService({ pool: db.pool, metrics });
    const daemon = runDaemon(
      { pool: db.pool, astria: client, service, log, clock: systemClock, metrics, leader: election },
      { intervalMs: 30 * SECOND, stuckAfterMs: 2 * MINUTE, trainingTimeoutMs: 24 * HOUR, concurrency: 4, signal: stop.signal },
    );
    try {
      await new Promise((resolve) => setTimeout(resolve, 20 * SECOND));
    } finally {
      stop.abort();
      await app.query('ROLLBACK');
      app.release();
      await daemon;
      await election.release();
      await client.close();
    }
    // The first round waits out the first lock timeouts (the rows were not known to fail); after it the
    // retries (from 2 s after, two at a time, 5 s each) run beside rounds that go on every 2 s.
    const afterFirstRound = lists.filter((at) => at >= 6 * SECOND && at < 20 * SECOND);
    expect(afterFirstRound.length).toBeGreaterThanOrEqual(5);
    expect(logged.filter((entry) => entry.msg === 'could not write model').length).toBeGreaterThanOrEqual(6);
  }, 60_000);
});

