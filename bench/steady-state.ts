/**
 * Steady state with the webhook lost (issue 8): the real daemon loop at default settings watching
 * models in flight until every one of them finished, no callback at all.
 *
 * Scenarios (seeded): 40 models finishing over 3 minutes, 200 over 10 minutes, 1,000 over 10 minutes,
 * and a density pair (12 vs 120 models inside the same id span of one page) for "cost follows pages".
 * Each model trains 20–40 minutes and truly finishes (trained_at = F) at a uniformly random moment of
 * the window. Eta quality is mixed: 65 % accurate (F = eta − 20 s … eta + 40 s), 25 % late (F = eta +
 * 1…30 min), 10 % with no eta; 3 % fail (status failed) and 2 % disappear (404) at F instead. Foreign
 * tunes of the same account (not in flight in the app) are interleaved in the id range (0 or 1 after
 * each of ours: a third of the range), 500 older finished tunes sit below and 30 newer foreign ones above.
 *
 * Everything is real except time: `runDaemon` with a real leader election, the real status service on
 * a scratch PostgreSQL database, the real Astria client and its request budget over loopback HTTP
 * against the simulated Astria. Time is a `VirtualClock`: it moves only when the process is idle, to
 * the earliest pending sleep, so the budget's spacing and the daemon's cadence are in virtual time and
 * a database write or an Astria round trip takes none (the simulated Astria answers at once; 25 ms of
 * real latency would add 25 ms per page of a round). A tune becomes trained lazily: each request
 * reaching the simulated Astria first applies every finish whose F has passed (virtual time).
 *
 * Lag = the event's occurred_at (stamped in the transaction that NOTIFYs, so it is when LISTEN hears it,
 * give or take the commit → LISTEN latency of the `latency` section) − F, both virtual. Peers are
 * computed from the same F values: one GET per model every 30 s, a list scan every 30 s (pages from the
 * newest tune down to the oldest undetected), and one GET per model every 5 s from training start
 * (vibephoto-style). Calls per model and rates are over the run (first look to last model done) for
 * every strategy, the vibephoto poller's calls before it left out (bench/lives.ts compares whole
 * lives); peak is the busiest 1-second window. The daemon's bytes (Astria's response bodies) and
 * database statements (its pool, and one per leader lock refresh) are measured; the peers' are not.
 */
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { createAstriaClient } from '../src/astria/client.js';
import { createPool } from '../src/db/pool.js';
import { seedModels, type SeedModel } from '../dev/host-schema.js';
import { startSimulatedAstria } from '../dev/simulated-astria.js';
import { createMetrics } from '../src/metrics.js';
import { DAEMON_DEFAULTS, runDaemon } from '../src/reconciler/daemon.js';
import { createLeaderElection } from '../src/reconciler/leader.js';
import { createStatusService, type StatusService } from '../src/status/service.js';
import { API_KEY, LIST_PAGE_SIZE, prng, scratchDatabase } from './scenario.js';
import { fixedOrDash, formatGrid, maximum, percentile, target, type SectionResult } from './stats.js';
import type { TargetResult } from './report.js';
import { countStatements } from './counting-pool.js';
import { VirtualClock, trackLeader, trackPool, trackUndiciRequests } from './virtual-clock.js';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
/** Default settings (SPEC.md / src/config.ts). */
const INTERVAL_MS = 30 * SECOND;
const STUCK_AFTER_MS = 2 * MINUTE;
const MAX_RPS = 5;
const CONCURRENCY = 4;
const TRAINING_TIMEOUT_MS = 24 * 60 * MINUTE;
const REAL_TIME_LIMIT_MS = 10 * MINUTE;

const LAG_TARGETS = { p50: 2 * SECOND, p99: 5 * SECOND, max: 10 * SECOND };
const DAEMON = 'reconciler daemon (measured)';

type EtaQuality = 'accurate' | 'late' | 'none';
type Ending = 'trained' | 'failed' | 'gone';

interface ModelSpec {
  startedOffset: number;
  finishOffset: number;
  eta: EtaQuality;
  etaOffset: number | null;
  ending: Ending;
  /** Foreign tunes created right after this one. */
  foreignAfter: number;
}

export interface Scenario {
  name: string;
  models: number;
  windowMs: number;
  seed: number;
  observeEveryMs?: number;
  /** Foreign tunes after each of ours: 0..this (uniform; default 1). */
  maxForeignAfter?: number;
  /** Only accurate etas and plain trained endings (the density pair isolates the id span). */
  plain?: boolean;
  /** Most tunes Astria serves a list page, whatever `limit` asks (default 120). */
  maxPageSize?: number;
}

interface Finish {
  tuneId: number;
  modelId: string;
  startedAt: number;
  finishAt: number;
  eta: EtaQuality;
  ending: Ending;
}

export interface Run {
  scenario: Scenario;
  t0: number;
  finishes: Finish[];
  accountTuneIds: number[];
  lagByModel: Map<string, number>;
  events: number;
  terminal: number;
  requests: number[];
  list: number;
  get: number;
  /** Bytes of Astria's response bodies. */
  bytes: number;
  /** Database statements of the daemon (its pool, and one per leader lock refresh). */
  statements: number;
  nonOk: string;
  realMs: number;
  stopReason: string;
}

function specs(scenario: Scenario): ModelSpec[] {
  const random = prng(scenario.seed);
  const uniform = (low: number, high: number) => low + random() * (high - low);
  return Array.from({ length: scenario.models }, () => {
    const finishOffset = Math.round(uniform(0, scenario.windowMs));
    const startedOffset = finishOffset - Math.round(uniform(20 * MINUTE, 40 * MINUTE));
    const roll = random();
    const eta: EtaQuality = scenario.plain || roll < 0.65 ? 'accurate' : roll < 0.9 ? 'late' : 'none';
    const etaOffset =
      eta === 'none' ? null : eta === 'accurate' ? finishOffset - Math.round(uniform(-20 * SECOND, 40 * SECOND)) : finishOffset - Math.round(uniform(MINUTE, 30 * MINUTE));
    const endRoll = random();
    const ending: Ending = scenario.plain || endRoll >= 0.05 ? 'trained' : endRoll < 0.03 ? 'failed' : 'gone';
    const foreignAfter = Math.floor(random() * ((scenario.maxForeignAfter ?? 1) + 1));
    return { startedOffset, finishOffset, eta, etaOffset, ending, foreignAfter };
  });
}

export async function runScenario(adminUrl: string, scenario: Scenario): Promise<Run> {
  const t0 = Math.floor(Date.now() / SECOND) * SECOND;
  const stop = new AbortController();
  const clock = new VirtualClock({ start: t0, stopAt: t0 + scenario.windowMs + 5 * MINUTE, onStop: () => stop.abort(new Error('virtual time limit')) });
  const untrackUndici = trackUndiciRequests(clock);
  const database = await scratchDatabase(adminUrl);
  const astria = await startSimulatedAstria({ apiKey: API_KEY, now: () => new Date(clock.now()), maxPageSize: scenario.maxPageSize });
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  const rawPool = createPool(database.url, log, 10);
  const counting = countStatements(rawPool);
  const pool = trackPool(counting.pool, clock);
  let leaderRefreshes = 0;
  const client = createAstriaClient({ apiUrl: astria.url, apiKey: API_KEY, maxRps: MAX_RPS, concurrency: CONCURRENCY, timeoutMs: 30_000, log, metrics, clock });
  const leader = createLeaderElection({ databaseUrl: database.url, lockName: 'astria_reconciler:leader:bench', log, metrics });
  const guard = setTimeout(() => stop.abort(new Error('real-time limit')), REAL_TIME_LIMIT_MS);

  try {
    // --- the account, in creation (id) order: history, ours with foreign ones interleaved, newer foreign ---
    astria.addTunes(500, (index) => {
      const trainedAt = t0 - 3 * 24 * 60 * MINUTE + index * MINUTE;
      return { createdAt: new Date(trainedAt - 40 * MINUTE), startedTrainingAt: new Date(trainedAt - 30 * MINUTE), trainedAt: new Date(trainedAt) };
    });
    const ordered = specs(scenario).sort((a, b) => a.startedOffset - b.startedOffset);
    const finishes: Finish[] = [];
    const models: SeedModel[] = [];
    for (const spec of ordered) {
      const startedAt = t0 + spec.startedOffset;
      const tune = astria.addTune({
        createdAt: new Date(startedAt - MINUTE),
        startedTrainingAt: new Date(startedAt),
        eta: spec.etaOffset === null ? null : new Date(t0 + spec.etaOffset),
      });
      const modelId = `model-${tune.id}`;
      finishes.push({ tuneId: tune.id, modelId, startedAt, finishAt: t0 + spec.finishOffset, eta: spec.eta, ending: spec.ending });
      models.push({
        id: modelId,
        userId: `user-${tune.id % 50}`,
        status: 'TRAINING',
        trainingJobId: String(tune.id),
        progress: 10,
        createdAt: new Date(startedAt - MINUTE),
        updatedAt: new Date(startedAt - MINUTE),
      });
      // Foreign tunes: trained already (reference tunes, other apps of the account).
      astria.addTunes(spec.foreignAfter, () => ({ createdAt: new Date(startedAt), trainedAt: new Date(startedAt) }));
    }
    astria.addTunes(30, () => ({ createdAt: new Date(t0), trainedAt: new Date(t0) }));
    await seedModels(database.pool, models);
    const accountTuneIds: number[] = [];
    const firstId = finishes[0]!.tuneId - 500;
    const lastId = finishes.at(-1)!.tuneId + 30 + ordered.at(-1)!.foreignAfter;
    for (let id = firstId; id <= lastId; id += 1) if (astria.getTune(id)) accountTuneIds.push(id);

    // --- lazy finishing: every request first applies the finishes whose F has passed ---
    const byFinish = [...finishes].sort((a, b) => a.finishAt - b.finishAt);
    let finishedUpTo = 0;
    const requests: number[] = [];
    astria.resetStats();
    astria.onRequest(() => {
      const now = clock.now();
      while (finishedUpTo < byFinish.length && byFinish[finishedUpTo]!.finishAt <= now) {
        const finish = byFinish[finishedUpTo]!;
        if (finish.ending === 'trained') astria.train(finish.tuneId, new Date(finish.finishAt));
        else if (finish.ending === 'failed') astria.fail(finish.tuneId);
        else astria.remove(finish.tuneId);
        finishedUpTo += 1;
      }
      requests.push(now);
    });

    const inner = createStatusService({ pool, clock, metrics });
    let terminal = 0;
    const service: StatusService = {
      async apply(transition, source) {
        const result = await inner.apply(transition, source);
        if (result.applied && (transition.to === 'READY' || transition.to === 'ERROR') && ++terminal === scenario.models) stop.abort(new Error('all done'));
        return result;
      },
      applyGeneration: (transition, source) => inner.applyGeneration(transition, source),
      applyProgress: (transitions, source) => inner.applyProgress(transitions, source),
    };

    const realStart = performance.now();
    await runDaemon(
      { pool, astria: client, service, log, clock, metrics, leader: trackLeader(leader, clock, () => leaderRefreshes++) },
      {
        intervalMs: INTERVAL_MS,
        stuckAfterMs: STUCK_AFTER_MS,
        observeEveryMs: scenario.observeEveryMs ?? DAEMON_DEFAULTS.observeEveryMs,
        trainingTimeoutMs: TRAINING_TIMEOUT_MS,
        concurrency: CONCURRENCY,
        signal: stop.signal,
      },
    );
    const realMs = performance.now() - realStart;

    const finishById = new Map(finishes.map((finish) => [finish.modelId, finish.finishAt]));
    const { rows: events } = await database.pool.query<{ model_id: string; occurred_ms: string }>(
      `SELECT model_id, (extract(epoch FROM occurred_at) * 1000)::bigint::text AS occurred_ms
         FROM astria_reconciler.events WHERE to_status IN ('READY', 'ERROR') AND source = 'reconciler'`,
    );
    const { stats } = astria;
    return {
      scenario,
      t0,
      finishes,
      accountTuneIds,
      lagByModel: new Map(events.map((row) => [row.model_id, Number(row.occurred_ms) - finishById.get(row.model_id)!])),
      events: events.length,
      terminal,
      requests,
      list: stats.list,
      get: stats.get,
      bytes: stats.bytes,
      statements: counting.statements() + leaderRefreshes,
      nonOk:
        Object.entries(stats.byStatus)
          .filter(([status]) => Number(status) >= 300 && Number(status) !== 404)
          .map(([status, count]) => `${status}×${count}`)
          .join(', ') || 'none',
      realMs,
      stopReason: stop.signal.aborted ? String((stop.signal.reason as Error)?.message ?? stop.signal.reason) : 'daemon returned',
    };
  } finally {
    clearTimeout(guard);
    untrackUndici();
    await leader.release();
    await client.close();
    await rawPool.end();
    await astria.close();
    await database.drop();
  }
}

/** The busiest 1-second window of these request times (ms). */
function peakPerSecond(times: readonly number[]): number {
  const sorted = [...times].sort((a, b) => a - b);
  let peak = 0;
  for (let start = 0, end = 0; end < sorted.length; end += 1) {
    while (sorted[end]! - sorted[start]! >= SECOND) start += 1;
    peak = Math.max(peak, end - start + 1);
  }
  return peak;
}

interface Strategy {
  name: string;
  lagsMs: Map<string, number>;
  requests: number[];
}

/** One GET per model at phase + k·interval from `from(model)` until a poll sees it finished. */
function perModelPolling(name: string, finishes: Finish[], intervalMs: number, from: (finish: Finish) => number): Strategy {
  const lagsMs = new Map<string, number>();
  const requests: number[] = [];
  for (const finish of finishes) {
    let at = from(finish);
    for (; at < finish.finishAt; at += intervalMs) requests.push(at);
    requests.push(at);
    lagsMs.set(finish.modelId, at - finish.finishAt);
  }
  return { name, lagsMs, requests };
}

/** A list scan every interval from t0: pages from the newest account tune to the oldest undetected one. */
function listScanPolling(run: Run, intervalMs: number): Strategy {
  const lagsMs = new Map<string, number>();
  const requests: number[] = [];
  const sortedIds = [...run.accountTuneIds].sort((a, b) => b - a);
  let undetected = [...run.finishes];
  for (let at = run.t0; undetected.length > 0; at += intervalMs) {
    const oldest = Math.min(...undetected.map((finish) => finish.tuneId));
    const pages = Math.ceil(sortedIds.filter((id) => id >= oldest).length / LIST_PAGE_SIZE);
    for (let page = 0; page < pages; page += 1) requests.push(at + (page * SECOND) / MAX_RPS);
    for (const finish of undetected) if (finish.finishAt <= at) lagsMs.set(finish.modelId, at - finish.finishAt);
    undetected = undetected.filter((finish) => finish.finishAt > at);
  }
  return { name: 'list scan every 30 s', lagsMs, requests };
}

function strategies(run: Run): Strategy[] {
  const ours: Strategy = { name: DAEMON, lagsMs: run.lagByModel, requests: run.requests };
  // The 30 s pollers look from t0 (when the daemon starts too), each model at its own phase.
  const phase = (finish: Finish) => run.t0 + (finish.tuneId * 7_919) % (30 * SECOND);
  return [
    ours,
    perModelPolling('GET per model every 30 s', run.finishes, 30 * SECOND, phase),
    listScanPolling(run, 30 * SECOND),
    perModelPolling('vibephoto: GET per model every 5 s from training start', run.finishes, 5 * SECOND, (finish) => finish.startedAt),
  ];
}

const seconds = (ms: number | null, digits = 1) => fixedOrDash(ms === null ? null : ms / SECOND, digits);

function lagCells(lags: number[]): string[] {
  return [seconds(percentile(lags, 0.5)), seconds(percentile(lags, 0.99)), seconds(maximum(lags))];
}

function durationOf(run: Run, requests: number[]): number {
  const last = Math.max(...run.finishes.map((finish) => finish.finishAt), ...requests);
  return Math.max(SECOND, last - run.t0);
}

export function describeRun(run: Run): { text: string; targets: TargetResult[] } {
  const { scenario } = run;
  const models = scenario.models;
  const rows = strategies(run).map((strategy) => {
    const inWindow = strategy.requests.filter((at) => at >= run.t0);
    const durationMs = durationOf(run, inWindow);
    const ours = strategy.name === DAEMON;
    return [
      strategy.name,
      ...lagCells([...strategy.lagsMs.values()]),
      // The same window for every strategy (the daemon's: from t0, when the models are already training).
      (inWindow.length / models).toFixed(2),
      ours ? (run.bytes / models / 1_000).toFixed(1) : '-',
      ours ? (run.statements / models).toFixed(1) : '-',
      (inWindow.length / (durationMs / SECOND)).toFixed(2),
      String(peakPerSecond(strategy.requests)),
    ];
  });
  const groups: [string, (finish: Finish) => boolean][] = [
    ['eta accurate (F = eta −20…+40 s)', (finish) => finish.eta === 'accurate' && finish.ending === 'trained'],
    ['eta late (F = eta + 1…30 min)', (finish) => finish.eta === 'late' && finish.ending === 'trained'],
    ['no eta', (finish) => finish.eta === 'none' && finish.ending === 'trained'],
    ['failed (status failed)', (finish) => finish.ending === 'failed'],
    ['gone (404)', (finish) => finish.ending === 'gone'],
  ];
  const lagsOf = (filter: (finish: Finish) => boolean) =>
    run.finishes.filter(filter).map((finish) => run.lagByModel.get(finish.modelId)).filter((lag): lag is number => lag !== undefined);
  const byQuality = groups
    .map(([label, filter]) => [label, String(run.finishes.filter(filter).length), ...lagCells(lagsOf(filter))])
    .filter((row) => row[1] !== '0');
  const all = [...run.lagByModel.values()];
  const durationMs = durationOf(run, run.requests);
  const avgRps = run.requests.length / (durationMs / SECOND);
  const peak = peakPerSecond(run.requests);
  const text = [
    `-- ${scenario.name}: ${models} models finishing over ${scenario.windowMs / MINUTE} min, ${run.accountTuneIds.length} account tunes, ` +
      `RECONCILER_OBSERVE_EVERY ${(scenario.observeEveryMs ?? DAEMON_DEFAULTS.observeEveryMs) / SECOND} s (seed ${scenario.seed})`,
    formatGrid([['strategy', 'lag p50 (s)', 'lag p99 (s)', 'lag max (s)', 'calls/model', 'KB/model', 'DB stmts/model', 'avg req/s', 'peak req/s'], ...rows]),
    formatGrid([['daemon lag by eta quality / ending', 'models', 'lag p50 (s)', 'lag p99 (s)', 'lag max (s)'], ...byQuality]),
    `daemon: ${run.terminal}/${models} applied (READY or ERROR), ${run.events} terminal events; Astria calls ${run.requests.length} ` +
      `(list ${run.list}, GET ${run.get}); non-2xx except 404: ${run.nonOk}; virtual ${(durationMs / SECOND).toFixed(0)} s in real ${(run.realMs / SECOND).toFixed(1)} s; stopped by: ${run.stopReason}`,
  ].join('\n');
  const p = (q: number) => percentile(all, q);
  const label = (what: string) => `steady ${scenario.name}: ${what}`;
  const targets = [
    target(label(`all ${models} models applied, one event each`), run.terminal === models && run.events === models, `${run.terminal} applied, ${run.events} events`),
    target(label('lag p50 ≤ 2 s'), all.length === models && p(0.5)! <= LAG_TARGETS.p50, `${seconds(p(0.5))} s`),
    target(label('lag p99 ≤ 5 s'), all.length === models && p(0.99)! <= LAG_TARGETS.p99, `${seconds(p(0.99))} s`),
    target(label('lag max ≤ 10 s (every eta quality, failures and 404s)'), all.length === models && maximum(all)! <= LAG_TARGETS.max, `${seconds(maximum(all))} s`),
    target(label(`peak ≤ ASTRIA_MAX_RPS (${MAX_RPS}) and no 429`), peak <= MAX_RPS && run.nonOk === 'none', `peak ${peak}/s, non-2xx ${run.nonOk}`),
  ];
  if (models <= LIST_PAGE_SIZE) targets.push(target(label('≤ 1 req/s average (≤ 120 models in flight)'), avgRps <= 1, `${avgRps.toFixed(2)} req/s`));
  return { text, targets };
}

const SCENARIOS: Scenario[] = [
  { name: '40/3min', models: 40, windowMs: 3 * MINUTE, seed: 80_040 },
  { name: '200/10min', models: 200, windowMs: 10 * MINUTE, seed: 80_200 },
  { name: '1000/10min', models: 1_000, windowMs: 10 * MINUTE, seed: 81_000 },
];
/** Same id span (one page of the account), 10× the models: 12 of ours among 108 foreign vs 120 of ours. */
const DENSITY: [Scenario, Scenario] = [
  { name: 'span-12', models: 12, windowMs: 3 * MINUTE, seed: 80_012, maxForeignAfter: 17, plain: true },
  { name: 'span-120', models: 120, windowMs: 3 * MINUTE, seed: 80_012, maxForeignAfter: 0, plain: true },
];
const CADENCES_MS = [1_000, 2_000, 5_000, 10_000];
/** Astria serving short list pages (100, or 20 when it ignores `limit`) beside its documented 120. */
const PAGE_CAPS = [20, 100, 120];

/** Account tunes from the oldest to the newest tune in flight. */
function spanTunes(run: Run): number {
  const ids = run.finishes.map((finish) => finish.tuneId);
  const [low, high] = [Math.min(...ids), Math.max(...ids)];
  return run.accountTuneIds.filter((id) => id >= low && id <= high).length;
}

export async function runSteadyState(adminUrl: string): Promise<SectionResult> {
  const texts: string[] = [
    `Defaults: RECONCILER_INTERVAL ${INTERVAL_MS / SECOND} s, RECONCILER_STUCK_AFTER ${STUCK_AFTER_MS / MINUTE} min, RECONCILER_OBSERVE_EVERY ${DAEMON_DEFAULTS.observeEveryMs / SECOND} s, ` +
      `ASTRIA_MAX_RPS ${MAX_RPS}, ASTRIA_CONCURRENCY ${CONCURRENCY}; no callback. Lag = event occurred_at − trained_at (virtual time).`,
  ];
  const targets: TargetResult[] = [];
  for (const scenario of SCENARIOS) {
    console.error(`  steady ${scenario.name}...`);
    const described = describeRun(await runScenario(adminUrl, scenario));
    texts.push('', described.text);
    targets.push(...described.targets);
  }

  console.error('  steady density pair...');
  const [few, many] = [await runScenario(adminUrl, DENSITY[0]), await runScenario(adminUrl, DENSITY[1])];
  const ratio = many.requests.length / Math.max(1, few.requests.length);
  texts.push(
    '',
    `-- cost follows pages: ${few.scenario.models} vs ${many.scenario.models} models inside the same id span (${spanTunes(few)} vs ${spanTunes(many)} account tunes from the oldest to the newest in flight), 3 min`,
    formatGrid([
      ['models in the span', 'Astria calls', 'lag p99 (s)', 'lag max (s)'],
      ...[few, many].map((run) => [String(run.scenario.models), String(run.requests.length), seconds(percentile([...run.lagByModel.values()], 0.99)), seconds(maximum([...run.lagByModel.values()]))]),
    ]),
  );
  for (const run of [few, many]) targets.push(...describeRun(run).targets);
  targets.push(target('steady density: 10× the models in the same id span cost ≤ 1.5× the calls', ratio <= 1.5, `${ratio.toFixed(2)}×`));

  console.error('  steady page caps...');
  const caps: string[][] = [];
  for (const maxPageSize of PAGE_CAPS) {
    const run = await runScenario(adminUrl, { ...SCENARIOS[1]!, name: `200/10min, pages of ${maxPageSize}`, maxPageSize });
    caps.push([String(maxPageSize), ...lagCells([...run.lagByModel.values()]), (run.requests.length / run.scenario.models).toFixed(2), String(run.list), String(run.get)]);
    targets.push(...describeRun(run).targets);
  }
  texts.push(
    '',
    '-- Astria serving short list pages (200 models over 10 min): paging ends on an empty page or below the oldest in-flight tune, never on a short page',
    formatGrid([['tunes a page', 'lag p50 (s)', 'lag p99 (s)', 'lag max (s)', 'calls/model', 'list calls', 'single GETs'], ...caps]),
  );

  console.error('  steady one model...');
  const quiet: string[][] = [];
  for (const seed of [1, 2, 3]) {
    // One model with an accurate eta (a quiet app): the run covers its life from t0 to its finish.
    const run = await runScenario(adminUrl, { name: `one model (seed ${seed})`, models: 1, windowMs: 30 * MINUTE, seed, plain: true });
    const finish = run.finishes[0]!;
    quiet.push([String(seed), seconds(finish.finishAt - run.t0, 0), String(run.requests.length), `${run.list} / ${run.get}`, ...lagCells([...run.lagByModel.values()]).slice(2)]);
  }
  texts.push(
    '',
    '-- one model in flight, eta accurate: a look every RECONCILER_INTERVAL until a minute before the eta, every round after; each a one-tune page',
    formatGrid([['seed', 'watched (s)', 'Astria calls', 'list / GET', 'lag (s)'], ...quiet]),
  );

  console.error('  steady cadence sweep...');
  const sweep: string[][] = [];
  for (const observeEveryMs of CADENCES_MS) {
    const run = await runScenario(adminUrl, { ...SCENARIOS[1]!, name: `200/10min @${observeEveryMs / SECOND}s`, observeEveryMs });
    const lags = [...run.lagByModel.values()];
    const durationMs = durationOf(run, run.requests);
    sweep.push([
      `${observeEveryMs / SECOND} s${observeEveryMs === DAEMON_DEFAULTS.observeEveryMs ? ' (default)' : ''}`,
      ...lagCells(lags),
      (run.requests.length / run.scenario.models).toFixed(2),
      (run.requests.length / (durationMs / SECOND)).toFixed(2),
    ]);
  }
  texts.push('', '-- RECONCILER_OBSERVE_EVERY: lag against calls (200 models over 10 min)', formatGrid([['RECONCILER_OBSERVE_EVERY', 'lag p50 (s)', 'lag p99 (s)', 'lag max (s)', 'calls/model', 'avg req/s'], ...sweep]));
  return { text: texts.join('\n'), targets };
}
