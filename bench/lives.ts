/**
 * Whole lives, like for like (issues 16 and 20): every strategy watches the same workload from before
 * the first object is created until the last one is done, in the same virtual time, each in a world of
 * its own (a scratch database and a simulated Astria, built the same way from the same seed, so the
 * ids match). The app creates each model's row and tune at its creation time (and a pack's prompts
 * and generation rows at theirs); an object becomes done lazily, when a request reaches Astria after
 * its finish time F. No callback ever arrives.
 *
 * Strategies:
 *   daemon     `runDaemon` at default settings (the real loop, leader election, engine, service)
 *   get-5s     what an app writes: each object polled with a GET every 5 s from its creation until it
 *              is done (each poll reads its row first, as the app's route does)
 *   scan-30s   a list scan every 30 s while anything is in flight: the in-flight rows read, then list
 *              pages from the newest object down to the oldest in flight (a GET for one missing from
 *              the list: gone)
 * The pollers apply what they see with the same rules and the same status service as the daemon, so
 * their database statements are those of an app doing the same work. Measured per strategy: Astria
 * calls and the bytes of Astria's response bodies (counted by the simulated Astria), database
 * statements (a counting wrapper around the pool, plus the leader's lock refresh: one statement each;
 * the app's own inserts of new rows are not counted, being the same for all), and lag = when the
 * status event was written − F (virtual time).
 */
import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { pino } from 'pino';
import { createAstriaClient, type AstriaClient } from '../src/astria/client.js';
import { DEFAULT_HOST_SCHEMA } from '../src/db/host-names.js';
import { ALL_IN_FLIGHT } from '../src/db/inflight.js';
import { createPool } from '../src/db/pool.js';
import { createMetrics } from '../src/metrics.js';
import { DAEMON_DEFAULTS, runDaemon } from '../src/reconciler/daemon.js';
import { createLeaderElection } from '../src/reconciler/leader.js';
import { prompts, tunes, type HostRow, type RemoteObservation, type ResourceKind, type StatusChange } from '../src/reconciler/resource.js';
import { createStatusService, type StatusService } from '../src/status/service.js';
import { seedModels } from '../dev/host-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../dev/simulated-astria.js';
import { GENERATIONS_SCHEMA_SQL, seedGenerations } from '../test/support/generations-schema.js';
import { countStatements } from './counting-pool.js';
import { API_KEY, scratchDatabase } from './scenario.js';
import { trackLeader, trackPool, trackUndiciRequests, VirtualClock } from './virtual-clock.js';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const DAY = 24 * 60 * MINUTE;
/** Default settings (SPEC.md / src/config.ts). */
export const DEFAULTS = { intervalMs: 30 * SECOND, stuckAfterMs: 2 * MINUTE, maxRps: 5, concurrency: 4, trainingTimeoutMs: 24 * 60 * MINUTE };
const GET_EVERY_MS = 5 * SECOND;
const SCAN_EVERY_MS = 30 * SECOND;
const HISTORY_TUNES = 500;
/** The last this many history tunes have READY models: packs are made on them. */
export const PACK_TUNES = 100;
const REAL_TIME_LIMIT_MS = 20 * MINUTE;
const RULES = { trainingTimeoutMs: DEFAULTS.trainingTimeoutMs };

export type Strategy = 'daemon' | 'get-5s' | 'scan-30s';
export const STRATEGIES: readonly Strategy[] = ['daemon', 'get-5s', 'scan-30s'];
export const STRATEGY_NAMES: Record<Strategy, string> = {
  daemon: 'reconciler daemon',
  'get-5s': 'GET per object every 5 s',
  'scan-30s': 'list scan every 30 s',
};

export type EtaQuality = 'accurate' | 'late' | 'none';

/** Times are offsets (ms) from the run's start, when nothing exists yet. */
export interface TuneLife {
  createdAt: number;
  finishAt: number;
  /** Astria's eta, null when it gives none. */
  eta: number | null;
  quality: EtaQuality;
  ending: 'trained' | 'failed' | 'gone';
  /** Tunes of the account that are not the app's, created right after this one. */
  foreignAfter: number;
}

export interface PackLife {
  createdAt: number;
  /** Which of the READY history tunes (0..PACK_TUNES-1) the pack is for. */
  tuneIndex: number;
  prompts: { finishAt: number; failed: boolean }[];
}

export interface Workload {
  name: string;
  tunes: TuneLife[];
  packs: PackLife[];
  observeEveryMs?: number;
}

export interface LifeRun {
  workload: Workload;
  strategy: Strategy;
  calls: number;
  bytes: number;
  statements: number;
  endpoints: { get: number; list: number; promptGet: number; promptList: number };
  lags: { tune: number[]; prompt: number[] };
  /** Virtual time of each Astria request, as an offset from the run's start. */
  requests: number[];
  realMs: number;
  stopReason: string;
}

type Kind = 'tune' | 'prompt';

export async function runLives(adminUrl: string, workload: Workload, strategy: Strategy): Promise<LifeRun> {
  const base = Math.floor(Date.now() / MINUTE) * MINUTE;
  const at = (offset: number) => base + offset;
  const lastFinish = Math.max(...workload.tunes.map((tune) => tune.finishAt), ...workload.packs.flatMap((pack) => pack.prompts.map((prompt) => prompt.finishAt)));
  const stop = new AbortController();
  // Every poller's sleep listens on it: thousands at once in the 5 s GET runs.
  setMaxListeners(0, stop.signal);
  const clock = new VirtualClock({ start: base, stopAt: at(lastFinish + 10 * MINUTE), onStop: () => stop.abort(new Error('virtual time limit')) });
  const untrackUndici = trackUndiciRequests(clock);
  const database = await scratchDatabase(adminUrl);
  const astria = await startSimulatedAstria({ apiKey: API_KEY, now: () => new Date(clock.now()) });
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  const rawPool = createPool(database.url, log, 10);
  const counting = countStatements(rawPool);
  const pool = trackPool(counting.pool, clock);
  const appPool = trackPool(rawPool, clock);
  const daemonRun = strategy === 'daemon';
  const client = createAstriaClient({
    apiUrl: astria.url,
    apiKey: API_KEY,
    // The pollers are an app's own code: no budget of ours spaces them.
    maxRps: daemonRun ? DEFAULTS.maxRps : 1_000_000,
    concurrency: daemonRun ? DEFAULTS.concurrency : 64,
    timeoutMs: 30_000,
    log,
    metrics,
    clock,
  });
  const election = createLeaderElection({ databaseUrl: database.url, lockName: 'astria_reconciler:leader:bench', log, metrics });
  const guard = setTimeout(() => stop.abort(new Error('real-time limit')), REAL_TIME_LIMIT_MS);
  const background = new Set<Promise<void>>();
  const failures: unknown[] = [];
  const spawn = (work: () => Promise<void>) => {
    const running = work().catch((error: unknown) => {
      if (stop.signal.aborted) return;
      failures.push(error);
      stop.abort(error);
    });
    background.add(running);
    void running.finally(() => background.delete(running));
  };

  try {
    if (workload.packs.length > 0) await database.pool.query(GENERATIONS_SCHEMA_SQL);
    // --- the account's history: finished tunes, the newest PACK_TUNES with READY models the packs are for ---
    const history = astria.addTunes(HISTORY_TUNES, (index) => {
      const trainedAt = base - 3 * 24 * 60 * MINUTE + index * MINUTE;
      return { createdAt: new Date(trainedAt - 40 * MINUTE), startedTrainingAt: new Date(trainedAt - 30 * MINUTE), trainedAt: new Date(trainedAt) };
    });
    const packTunes = history.slice(-PACK_TUNES).map((tune) => tune.id);
    await seedModels(
      database.pool,
      packTunes.map((id) => ({ id: `model-${id}`, userId: `user-${id % 50}`, status: 'READY', trainingJobId: String(id), progress: 100, createdAt: new Date(base - DAY), updatedAt: new Date(base - DAY) })),
    );

    // --- what each object's finish does at Astria, applied lazily by the next request after it ---
    const finishes: { at: number; apply: () => void }[] = [];
    const finishAtOf = new Map<string, number>();
    const lags = { tune: [] as number[], prompt: [] as number[] };
    const total = workload.tunes.length + workload.packs.reduce((sum, pack) => sum + pack.prompts.length, 0);
    let done = 0;
    const requests: number[] = [];
    let finishedUpTo = 0;
    // Kept in time order as objects are created (a finish always comes after its creation, so after every finish applied).
    const sortedFinishes = () => finishes.sort((a, b) => a.at - b.at);
    astria.resetStats();
    astria.onRequest(() => {
      const now = clock.now();
      while (finishedUpTo < finishes.length && finishes[finishedUpTo]!.at <= now) finishes[finishedUpTo++]!.apply();
      requests.push(now - base);
    });
    const terminal = (kind: Kind, key: string) => {
      const finishAt = finishAtOf.get(key);
      if (finishAt === undefined) return;
      finishAtOf.delete(key);
      lags[kind].push(clock.now() - finishAt);
      if (++done === total) stop.abort(new Error('all done'));
    };
    const inner = createStatusService({ pool, clock, metrics });
    const service: StatusService = {
      applyProgress: (transitions, source) => inner.applyProgress(transitions, source),
      async apply(transition, source) {
        const result = await inner.apply(transition, source);
        if (result.applied && (transition.to === 'READY' || transition.to === 'ERROR')) terminal('tune', transition.modelId);
        return result;
      },
      async applyGeneration(transition, source) {
        const result = await inner.applyGeneration(transition, source);
        if (result.applied && (transition.to === 'COMPLETED' || transition.to === 'FAILED')) terminal('prompt', transition.generationId);
        return result;
      },
    };
    const pollers = createPollers({ clock, pool, client, signal: stop.signal });
    const applyTune = (change: Parameters<StatusService['apply']>[0]) => service.apply(change, 'reconciler');
    const applyPrompt = (change: Parameters<StatusService['applyGeneration']>[0]) => service.applyGeneration(change, 'reconciler');

    // --- the app: creations in time order; finishes are known ahead, each once its object has an id ---
    const creations = [
      ...workload.tunes.map((life) => ({ at: life.createdAt, create: () => createTune(life) })),
      ...workload.packs.map((pack) => ({ at: pack.createdAt, create: () => createPack(pack) })),
    ].sort((a, b) => a.at - b.at);
    async function createTune(life: TuneLife): Promise<void> {
      const createdAt = new Date(at(life.createdAt));
      const tune = astria.addTune({ createdAt, startedTrainingAt: createdAt, eta: life.eta === null ? null : new Date(at(life.eta)) });
      astria.addTunes(life.foreignAfter, () => ({ createdAt, trainedAt: createdAt }));
      const modelId = `model-${tune.id}`;
      finishAtOf.set(modelId, at(life.finishAt));
      finishes.push({
        at: at(life.finishAt),
        apply: () => (life.ending === 'trained' ? astria.train(tune.id, new Date(at(life.finishAt))) : life.ending === 'failed' ? astria.fail(tune.id) : astria.remove(tune.id)),
      });
      sortedFinishes();
      await seedModels(appPool, [{ id: modelId, userId: `user-${tune.id % 50}`, status: 'TRAINING', trainingJobId: String(tune.id), progress: 0, createdAt, updatedAt: createdAt }]);
      if (strategy === 'get-5s') spawn(() => pollers.everyFiveSeconds(tunes(DEFAULT_HOST_SCHEMA), tune.id, applyTune));
    }
    async function createPack(pack: PackLife): Promise<void> {
      const createdAt = new Date(at(pack.createdAt));
      const tuneId = packTunes[pack.tuneIndex]!;
      const made = astria.addPack(tuneId, pack.prompts.length, () => ({ createdAt, startedAt: createdAt }));
      made.forEach((prompt, index) => {
        const { finishAt, failed } = pack.prompts[index]!;
        finishAtOf.set(`generation-${prompt.id}`, at(finishAt));
        finishes.push({
          at: at(finishAt),
          apply: () => (failed ? astria.failPrompt(prompt.id, 'Prompt flagged by the safety filter') : astria.finishPrompt(prompt.id, { at: new Date(at(finishAt)) })),
        });
      });
      sortedFinishes();
      await seedGenerations(
        appPool,
        made.map((prompt) => ({ id: `generation-${prompt.id}`, userId: `user-${tuneId % 50}`, modelId: `model-${tuneId}`, status: 'PROCESSING', jobId: String(prompt.id), createdAt, updatedAt: createdAt })),
      );
      if (strategy === 'get-5s') for (const prompt of made) spawn(() => pollers.everyFiveSeconds(prompts(DEFAULT_HOST_SCHEMA), prompt.id, applyPrompt));
    }
    spawn(async () => {
      for (const creation of creations) {
        await clock.sleep(at(creation.at) - clock.now(), stop.signal);
        await creation.create();
      }
    });

    let leaderRefreshes = 0;
    const realStart = performance.now();
    if (strategy === 'daemon') {
      await runDaemon(
        { pool, astria: client, service, log, clock, metrics, leader: trackLeader(election, clock, () => leaderRefreshes++) },
        {
          intervalMs: DEFAULTS.intervalMs,
          stuckAfterMs: DEFAULTS.stuckAfterMs,
          observeEveryMs: workload.observeEveryMs ?? DAEMON_DEFAULTS.observeEveryMs,
          trainingTimeoutMs: DEFAULTS.trainingTimeoutMs,
          concurrency: DEFAULTS.concurrency,
          signal: stop.signal,
        },
      );
    } else if (strategy === 'scan-30s') {
      spawn(() => pollers.scanEveryThirtySeconds(tunes(DEFAULT_HOST_SCHEMA), applyTune));
      if (workload.packs.length > 0) spawn(() => pollers.scanEveryThirtySeconds(prompts(DEFAULT_HOST_SCHEMA), applyPrompt));
    }
    await new Promise<void>((resolve) => (stop.signal.aborted ? resolve() : stop.signal.addEventListener('abort', () => resolve(), { once: true })));
    while (background.size > 0) await Promise.all(background);
    const realMs = performance.now() - realStart;
    if (failures.length > 0) throw failures[0];
    const { stats } = astria;
    return {
      workload,
      strategy,
      calls: stats.requests,
      bytes: stats.bytes,
      statements: counting.statements() + leaderRefreshes,
      endpoints: { get: stats.get, list: stats.list, promptGet: stats.prompt_get, promptList: stats.prompt_list },
      lags,
      requests,
      realMs,
      stopReason: String((stop.signal.reason as Error)?.message ?? stop.signal.reason),
    };
  } finally {
    clearTimeout(guard);
    if (!stop.signal.aborted) stop.abort(new Error('run ended'));
    await Promise.allSettled(background);
    untrackUndici();
    await election.release();
    await client.close();
    await rawPool.end();
    await astria.close();
    await database.drop();
  }
}


interface PollerDeps {
  clock: VirtualClock;
  pool: pg.Pool;
  client: AstriaClient;
  signal: AbortSignal;
}

/** The two pollers an app would write, with the engine's own rules and reads. */
function createPollers({ clock, pool, client, signal }: PollerDeps) {
  const decideAndApply = async <Row extends HostRow, Remote, Change extends StatusChange>(
    kind: ResourceKind<Row, Remote, Change>,
    row: Row,
    observation: RemoteObservation<Remote>,
    apply: (change: Change) => Promise<unknown>,
  ) => {
    const change = kind.decide(row, observation, new Date(clock.now()), RULES);
    if (change) await apply(change);
  };

  return {
    /** A GET every 5 s from creation until the row is no longer in flight; each poll reads the row first. */
    async everyFiveSeconds<Row extends HostRow, Remote, Change extends StatusChange>(kind: ResourceKind<Row, Remote, Change>, id: number, apply: (change: Change) => Promise<unknown>) {
      for (;;) {
        await clock.sleep(GET_EVERY_MS, signal);
        const ref = (await kind.inFlight.refs(pool, ALL_IN_FLIGHT)).find((each) => each.remoteId === String(id));
        if (!ref) return;
        const result = await kind.fetch(client, id, ref.parentRemoteId ?? null, signal);
        if (result.kind !== 'failed') await decideAndApply(kind, ref.row, result, apply);
      }
    },

    /** Every 30 s, while anything is in flight: list pages from the newest down to the oldest in flight; a GET for any the list no longer shows. */
    async scanEveryThirtySeconds<Row extends HostRow, Remote, Change extends StatusChange>(kind: ResourceKind<Row, Remote, Change>, apply: (change: Change) => Promise<unknown>) {
      for (;;) {
        await clock.sleep(SCAN_EVERY_MS, signal);
        const rows = await kind.inFlight.refs(pool, ALL_IN_FLIGHT);
        if (rows.length === 0) continue;
        const wanted = new Set(rows.map((ref) => Number(ref.remoteId)));
        const oldest = Math.min(...wanted);
        const seen = new Map<number, RemoteObservation<Remote>>();
        for (let beforeId: number | null = null; ; ) {
          const page = await kind.list(client, beforeId, signal);
          if (page.kind === 'failed') break;
          for (const item of page.items) if (wanted.has(kind.idOf(item))) seen.set(kind.idOf(item), { kind: 'seen', remote: item });
          const last = page.items.at(-1);
          if (!last || kind.idOf(last) <= oldest || page.nextBeforeId === null) break;
          beforeId = page.nextBeforeId;
        }
        for (const ref of rows) {
          const id = Number(ref.remoteId);
          if (seen.has(id)) continue;
          const result = await kind.fetch(client, id, ref.parentRemoteId ?? null, signal);
          if (result.kind !== 'failed') seen.set(id, result);
        }
        for (const ref of rows) {
          const observation = seen.get(Number(ref.remoteId));
          if (observation) await decideAndApply(kind, ref.row, observation, apply);
        }
      }
    },
  };
}
