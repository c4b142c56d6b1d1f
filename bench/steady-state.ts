/**
 * Steady state (issue 5): the real daemon loop watching 200 models in flight, no webhook at all.
 *
 * Every tune started training up to 20 minutes before t0 and truly finishes (trained_at = F) at a
 * uniformly random moment of the 10 minutes after t0; Astria's `eta` is only an estimate of F:
 * F + U(−15 s, +60 s). The account also holds 1,000 older, long-finished tunes (READY models), below
 * the in-flight ones in id order.
 *
 * Everything is real except time: `runDaemon` with a real leader election (advisory lock), the real
 * status service on a scratch PostgreSQL database, the real Astria client over loopback HTTP against
 * the simulated Astria (25 ms latency, no rate limit). Time is a `VirtualClock`: it only moves when the
 * process is idle, to the earliest pending sleep, so the 10+ virtual minutes take a few real seconds
 * and a database write or an Astria round trip takes zero virtual time. A tune becomes trained lazily:
 * each request reaching the simulated Astria first marks every tune whose F has passed (virtual time).
 *
 * Measured: detection lag (event log: occurred_at − trained_at, both virtual), Astria calls per model,
 * against fixed-interval polling computed analytically from the same F values.
 */
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { createAstriaClient } from '../src/astria/client.js';
import { createPool } from '../src/db/pool.js';
import { seedModels, type SeedModel } from '../src/db/host-schema.js';
import { startSimulatedAstria } from '../src/demo/simulated-astria.js';
import { createMetrics } from '../src/metrics.js';
import { runDaemon } from '../src/reconciler/daemon.js';
import { createLeaderElection, type LeaderElection } from '../src/reconciler/leader.js';
import { createStatusService, type StatusService } from '../src/status/service.js';
import { API_KEY, LIST_PAGE_SIZE, prng, scratchDatabase } from './scenario.js';
import { fixedOrDash, formatGrid, maximum, mean, percentile, target, type SectionResult } from './stats.js';
import { VirtualClock, trackPool, trackUndiciRequests } from './virtual-clock.js';

const SEED = 20_240_605;
const MODELS = 200;
const HISTORY_TUNES = 1_000;
const INTERVAL_MS = 30_000;
const STUCK_AFTER_MS = 0;
const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const FINISH_WINDOW_MS = 10 * MINUTE;
const MAX_VIRTUAL_MS = 15 * MINUTE;
const STARTED_BEFORE_T0_MS = 20 * MINUTE;
const ETA_ERROR_MIN_MS = -15 * SECOND;
const ETA_ERROR_MAX_MS = 60 * SECOND;
/** Production defaults (ASTRIA_MAX_RPS, ASTRIA_CONCURRENCY); the budget's spacing runs in virtual time. */
const CLIENT_MAX_RPS = 5;
const CLIENT_CONCURRENCY = 4;
const ASTRIA_LATENCY_MS = 25;
const TRAINING_TIMEOUT_MS = 24 * 60 * MINUTE;
/** Real-time guard: a run that stops making progress (a tracked call that never ends) is cut off. */
const REAL_TIME_LIMIT_MS = 10 * MINUTE;
/** The schedule's default grace after `eta` (src/reconciler/schedule.ts), for the lag breakdown. */
const ETA_GRACE_MS = 2_000;

interface InFlightTune {
  tuneId: number;
  modelId: string;
  /** Virtual epoch ms. */
  startedAt: number;
  finishAt: number;
  eta: number;
}

/** The tunes in flight, as offsets from t0 (ms): the same for every run of the section. */
interface TuneSpec {
  startedOffset: number;
  finishOffset: number;
  etaOffset: number;
}

interface Baseline {
  callsPerModel: number;
  lagsMs: number[];
  listPagesPerModel: number;
  getPerModel: number;
}

/** One run of the daemon over the world, with what it measured. */
interface DaemonRun {
  t0: number;
  inFlight: InFlightTune[];
  accountTuneIds: number[];
  recovered: number;
  readyEvents: number;
  lagByModel: Map<string, number>;
  requests: number;
  list: number;
  get: number;
  nonOk: string;
  listPagesAt: string[];
  getsWhileTraining: number;
  statusEvents: number;
  progressOnly: number;
  wakeUps: number;
  timersFired: number;
  virtualMs: number;
  realMs: number;
  stopReason: string;
}

const DAEMON_ROW = 'reconciler daemon (measured)';

/** Polls at t0 + k·I (k ≥ 1): one GET per model per interval until a poll sees it trained. */
function fixedIntervalPolling(tunes: InFlightTune[], t0: number, interval: number): Baseline {
  let calls = 0;
  const lagsMs: number[] = [];
  for (const tune of tunes) {
    const elapsed = tune.finishAt - t0;
    calls += Math.floor(elapsed / interval) + 1;
    lagsMs.push(interval - (elapsed % interval));
  }
  return { callsPerModel: calls / tunes.length, lagsMs, listPagesPerModel: 0, getPerModel: calls / tunes.length };
}

/**
 * At the same poll times, one list scan per interval: pages from the newest account tune down to the
 * oldest tune still undetected (120 tunes a page). Same lag as fixed polling.
 */
function listScanEveryInterval(tunes: InFlightTune[], accountTuneIds: number[], t0: number, interval: number): Baseline {
  let pages = 0;
  for (let k = 1; ; k += 1) {
    const pollAt = t0 + k * interval;
    const undetected = tunes.filter((tune) => tune.finishAt > pollAt - interval);
    if (undetected.length === 0) break;
    const oldest = Math.min(...undetected.map((tune) => tune.tuneId));
    pages += Math.ceil(accountTuneIds.filter((id) => id >= oldest).length / LIST_PAGE_SIZE);
  }
  const fixed = fixedIntervalPolling(tunes, t0, interval);
  return { callsPerModel: pages / tunes.length, listPagesPerModel: pages / tunes.length, getPerModel: 0, lagsMs: fixed.lagsMs };
}

function tuneSpecs(): TuneSpec[] {
  const random = prng(SEED);
  const uniform = (low: number, high: number) => low + random() * (high - low);
  return Array.from({ length: MODELS }, () => {
    const startedOffset = Math.round(-uniform(0, STARTED_BEFORE_T0_MS));
    const finishOffset = Math.round(uniform(0, FINISH_WINDOW_MS));
    const etaOffset = Math.round(finishOffset + uniform(ETA_ERROR_MIN_MS, ETA_ERROR_MAX_MS));
    return { startedOffset, finishOffset, etaOffset };
  });
}

async function runDaemonOnce(adminUrl: string, specs: TuneSpec[]): Promise<DaemonRun> {
  const t0 = Math.floor(Date.now() / SECOND) * SECOND;
  const stop = new AbortController();
  const clock = new VirtualClock({ start: t0, stopAt: t0 + MAX_VIRTUAL_MS, onStop: () => stop.abort(new Error('virtual time limit')) });
  const untrackUndici = trackUndiciRequests(clock);
  const database = await scratchDatabase(adminUrl);
  const astria = await startSimulatedAstria({ apiKey: API_KEY, latencyMs: ASTRIA_LATENCY_MS, now: () => new Date(clock.now()) });
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  const pool = createPool(database.url, log, 10);
  const client = createAstriaClient({
    apiUrl: astria.url,
    apiKey: API_KEY,
    maxRps: CLIENT_MAX_RPS,
    concurrency: CLIENT_CONCURRENCY,
    timeoutMs: 30_000,
    log,
    metrics,
    clock,
  });
  const election = createLeaderElection({ databaseUrl: database.url, lockName: 'astria_reconciler:leader:bench', log, metrics });
  const guard = setTimeout(() => stop.abort(new Error('real-time limit')), REAL_TIME_LIMIT_MS);

  try {
    // --- the account: 1,000 finished tunes, then the 200 in flight (F in random order of id) ---
    const history = astria.addTunes(HISTORY_TUNES, (index) => {
      const trainedAt = t0 - 2 * 24 * 60 * MINUTE + index * MINUTE;
      return { createdAt: new Date(trainedAt - 40 * MINUTE), startedTrainingAt: new Date(trainedAt - 30 * MINUTE), trainedAt: new Date(trainedAt) };
    });
    const inFlight: InFlightTune[] = specs.map((spec) => {
      const startedAt = t0 + spec.startedOffset;
      const eta = t0 + spec.etaOffset;
      const tune = astria.addTune({ createdAt: new Date(startedAt - MINUTE), startedTrainingAt: new Date(startedAt), eta: new Date(eta) });
      return { tuneId: tune.id, modelId: `model-${tune.id}`, startedAt, finishAt: t0 + spec.finishOffset, eta };
    });
    const accountTuneIds = [...history.map((tune) => tune.id), ...inFlight.map((tune) => tune.tuneId)];
    const models: SeedModel[] = [
      ...history.map((tune) => ({
        id: `model-${tune.id}`,
        userId: `user-${tune.id % 50}`,
        status: 'READY' as const,
        trainingJobId: String(tune.id),
        progress: 100,
        createdAt: new Date(Date.parse(String(tune.created_at))),
        updatedAt: new Date(Date.parse(String(tune.trained_at))),
      })),
      ...inFlight.map((tune) => ({
        id: tune.modelId,
        userId: `user-${tune.tuneId % 50}`,
        status: 'TRAINING' as const,
        trainingJobId: String(tune.tuneId),
        progress: 10,
        createdAt: new Date(tune.startedAt - MINUTE),
        // The app set TRAINING when it created the tune: older than t0, so stuck-after 0 sees it at once.
        updatedAt: new Date(tune.startedAt - MINUTE),
      })),
    ];
    await seedModels(database.pool, models);

    // --- lazy training: every request first marks the tunes whose true finish F has passed ---
    const byFinish = [...inFlight].sort((a, b) => a.finishAt - b.finishAt);
    let trainedUpTo = 0;
    const requestTimes: { at: number; endpoint: string; path: string }[] = [];
    astria.resetStats();
    astria.onRequest((event) => {
      const now = clock.now();
      while (trainedUpTo < byFinish.length && byFinish[trainedUpTo]!.finishAt <= now) {
        const tune = byFinish[trainedUpTo]!;
        astria.train(tune.tuneId, new Date(tune.finishAt));
        trainedUpTo += 1;
      }
      requestTimes.push({ at: now, endpoint: event.endpoint, path: event.path });
    });

    // --- the daemon, with the service and leader counted ---
    const inner = createStatusService({ pool: trackPool(pool, clock), clock, metrics });
    let ready = 0;
    let statusEvents = 0;
    let progressOnly = 0;
    const service: StatusService = {
      async apply(transition, source) {
        const result = await inner.apply(transition, source);
        if (result.applied) {
          if (transition.to === transition.from) progressOnly += 1;
          else statusEvents += 1;
          if (transition.to === 'READY') {
            ready += 1;
            if (ready === MODELS) stop.abort(new Error('all READY'));
          }
        }
        return result;
      },
    };
    let wakeUps = 0;
    const leader: LeaderElection = {
      refresh: () => {
        wakeUps += 1;
        return election.refresh();
      },
      isLeader: () => election.isLeader(),
      termSignal: () => election.termSignal(),
      release: () => election.release(),
    };

    const realStart = performance.now();
    await runDaemon(
      { pool: trackPool(pool, clock), astria: client, service, log, clock, metrics, leader },
      {
        intervalMs: INTERVAL_MS,
        stuckAfterMs: STUCK_AFTER_MS,
        trainingTimeoutMs: TRAINING_TIMEOUT_MS,
        concurrency: CLIENT_CONCURRENCY,
        signal: stop.signal,
      },
    );
    const realMs = performance.now() - realStart;

    const { rows: events } = await database.pool.query<{ model_id: string; lag_ms: string }>(
      `SELECT model_id, extract(epoch FROM occurred_at - trained_at) * 1000 AS lag_ms
         FROM astria_reconciler.events WHERE to_status = 'READY' AND source = 'reconciler'`,
    );
    const { rows: readyRows } = await database.pool.query<{ ready: string }>(
      `SELECT count(*) AS ready FROM ai_models WHERE status = 'READY' AND id = ANY($1::text[])`,
      [inFlight.map((tune) => tune.modelId)],
    );
    // GETs that found the tune still training (they bought nothing but a progress update).
    const finishById = new Map(inFlight.map((tune) => [tune.tuneId, tune.finishAt]));
    let getsWhileTraining = 0;
    for (const request of requestTimes) {
      const match = /^\/tunes\/(\d+)$/.exec(request.path);
      const finishAt = match ? finishById.get(Number(match[1])) : undefined;
      if (finishAt !== undefined && request.at < finishAt) getsWhileTraining += 1;
    }
    const { stats } = astria;
    return {
      t0,
      inFlight,
      accountTuneIds,
      recovered: Number(readyRows[0]!.ready),
      readyEvents: events.length,
      lagByModel: new Map(events.map((row) => [row.model_id, Number(row.lag_ms)])),
      requests: stats.requests,
      list: stats.list,
      get: stats.get,
      nonOk:
        Object.entries(stats.byStatus)
          .filter(([status]) => Number(status) >= 300)
          .map(([status, count]) => `${status}×${count}`)
          .join(', ') || 'none',
      listPagesAt: requestTimes.filter((request) => request.endpoint === 'list').map((request) => ((request.at - t0) / SECOND).toFixed(1)),
      getsWhileTraining,
      statusEvents,
      progressOnly,
      wakeUps,
      timersFired: clock.advances,
      virtualMs: clock.now() - t0,
      realMs,
      stopReason: stop.signal.aborted ? String((stop.signal.reason as Error)?.message ?? stop.signal.reason) : 'daemon returned',
    };
  } finally {
    clearTimeout(guard);
    untrackUndici();
    await election.release();
    await client.close();
    await pool.end();
    await astria.close();
    await database.drop();
  }
}

/** The first `shown` items, then how many more. */
function abbreviate(items: string[], shown: number): string {
  if (items.length === 0) return '-';
  const head = items.slice(0, shown).join(', ');
  return items.length > shown ? `${head}, … +${items.length - shown} more` : head;
}

export async function runSteadyState(adminUrl: string): Promise<SectionResult> {
  const specs = tuneSpecs();
  const run = await runDaemonOnce(adminUrl, specs);

  const measured = (r: DaemonRun): Baseline => ({
    callsPerModel: r.requests / MODELS,
    listPagesPerModel: r.list / MODELS,
    getPerModel: r.get / MODELS,
    lagsMs: [...r.lagByModel.values()],
  });
  const ours = measured(run);
  const fixed = fixedIntervalPolling(run.inFlight, run.t0, INTERVAL_MS);
  const scan = listScanEveryInterval(run.inFlight, run.accountTuneIds, run.t0, INTERVAL_MS);
  const s = (ms: number | null) => fixedOrDash(ms === null ? null : ms / SECOND, 1);
  const lagCells = (values: number[]) => [s(percentile(values, 0.5)), s(percentile(values, 0.99)), s(maximum(values))];
  const strategyRow = (name: string, b: Baseline) => [
    name,
    ...lagCells(b.lagsMs),
    b.callsPerModel.toFixed(3),
    b.listPagesPerModel.toFixed(3),
    b.getPerModel.toFixed(3),
    String(Math.round(b.callsPerModel * MODELS)),
  ];
  const grid = formatGrid([
    ['strategy', 'lag p50 (s)', 'lag p99 (s)', 'lag max (s)', 'calls/model', 'list/model', 'GET/model', 'total calls'],
    strategyRow(DAEMON_ROW, ours),
    strategyRow('fixed-interval GET polling (analytical)', fixed),
    strategyRow('list scan every interval (analytical, ref.)', scan),
  ]);

  const finishedEarly = run.inFlight.filter((tune) => tune.eta + ETA_GRACE_MS >= tune.finishAt);
  const finishedLate = run.inFlight.filter((tune) => tune.eta + ETA_GRACE_MS < tune.finishAt);
  const lagsOf = (group: InFlightTune[]) => group.map((tune) => run.lagByModel.get(tune.modelId)).filter((lag): lag is number => lag !== undefined);
  const breakdown = formatGrid([
    ['daemon lag by how good the eta was', 'models', 'lag p50 (s)', 'lag p99 (s)', 'lag max (s)'],
    [`finished by eta + ${ETA_GRACE_MS / SECOND} s (eta late/accurate)`, String(finishedEarly.length), ...lagCells(lagsOf(finishedEarly))],
    [`finished after eta + ${ETA_GRACE_MS / SECOND} s (eta early)`, String(finishedLate.length), ...lagCells(lagsOf(finishedLate))],
  ]);
  const etaErrorsMs = run.inFlight.map((tune) => tune.eta - tune.finishAt);
  const describeRun = (label: string, r: DaemonRun) => [
    `${label}: recovered (READY) ${r.recovered}/${MODELS}; READY events in the log ${r.readyEvents}; status events ${r.statusEvents}; progress-only updates ${r.progressOnly}; daemon wake-ups ${r.wakeUps}; clock timers fired ${r.timersFired}`,
    `  Astria calls ${r.requests}: list ${r.list} (at virtual s ${abbreviate(r.listPagesAt, 12)}), GET ${r.get} (${r.getsWhileTraining} found the tune still training); non-2xx: ${r.nonOk}`,
    `  virtual elapsed ${(r.virtualMs / SECOND).toFixed(1)} s vs real elapsed ${(r.realMs / SECOND).toFixed(1)} s (×${(r.virtualMs / Math.max(1, r.realMs)).toFixed(0)}); stopped by: ${r.stopReason}`,
  ];
  const p99 = percentile(ours.lagsMs, 0.99);
  const text = [
    `Steady state: ${MODELS} models in flight (all TRAINING, stuck-after ${STUCK_AFTER_MS / SECOND} s, no webhook) among ${run.accountTuneIds.length} account tunes; ` +
      `RECONCILER_INTERVAL ${INTERVAL_MS / SECOND} s; client ${CLIENT_MAX_RPS} rps / concurrency ${CLIENT_CONCURRENCY}; simulated Astria ${ASTRIA_LATENCY_MS} ms latency, no rate limit. Seed ${SEED}.`,
    `Tunes: started_training_at = t0 − U(0, 20 min); true finish F = t0 + U(0, 10 min); Astria's eta is an ESTIMATE: eta = F + U(−15 s, +60 s) ` +
      `(here eta − F: mean ${s(mean(etaErrorsMs))} s, min ${s(Math.min(...etaErrorsMs))} s, max ${s(Math.max(...etaErrorsMs))} s).`,
    `Fixed-interval polling model: GETs at t0 + k·${INTERVAL_MS / SECOND} s, k ≥ 1: calls = floor((F − t0)/I) + 1, lag = I − ((F − t0) mod I) (a GET at t0 too would add 1 call/model).`,
    `Lag = event log occurred_at − trained_at, both in virtual time.`,
    '',
    grid,
    '',
    breakdown,
    '',
    ...describeRun('daemon', run),
    `calls/model: daemon ${ours.callsPerModel.toFixed(3)} vs fixed polling ${fixed.callsPerModel.toFixed(3)} (ratio ${(ours.callsPerModel / fixed.callsPerModel).toFixed(3)})`,
  ].join('\n');
  const bound = INTERVAL_MS + SECOND;
  const targets = [
    target(`steady: all ${MODELS} in-flight models READY within ${MAX_VIRTUAL_MS / MINUTE} virtual min`, run.recovered === MODELS, `${run.recovered} READY`),
    target(`steady: detection lag p99 ≤ interval + 1 s (${bound / SECOND} s)`, p99 !== null && p99 <= bound && run.recovered === MODELS, `${s(p99)} s`),
    target(
      'steady: calls/model < fixed-interval polling',
      ours.callsPerModel < fixed.callsPerModel,
      `${ours.callsPerModel.toFixed(3)} vs ${fixed.callsPerModel.toFixed(3)}`,
    ),
  ];
  return { text, targets };
}
