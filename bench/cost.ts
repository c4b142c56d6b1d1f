/**
 * What a model costs over its whole life (issue 20), every strategy over the same lives (bench/lives.ts):
 *   quiet   one model, 20-minute training with an eta, finishing 2 min before / at / 2 min after / 10 min
 *           after it (the most common app: one model in flight at a time)
 *   busy    300 models an hour for an hour (trainings of 15–33 min: ~120 in flight), mixed eta quality
 *           (65 % accurate, 25 % late by 1–30 min, 10 % none; 3 % fail, 2 % disappear), foreign tunes
 *           of the account interleaved
 * Columns per strategy: Astria calls, bytes of Astria's responses, database statements, lag.
 */
import { prng } from './scenario.js';
import { fixedOrDash, formatGrid, maximum, percentile, target, type SectionResult } from './stats.js';
import type { TargetResult } from './report.js';
import { runLives, STRATEGIES, STRATEGY_NAMES, type EtaQuality, type LifeRun, type Strategy, type TuneLife, type Workload } from './lives.js';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const KB = 1_000;
const MB = 1_000_000;
const TRAINING_MS = 20 * MINUTE;
/** The one model is created a minute into the run: the daemon is up, with nothing in flight. */
const CREATED_AT = MINUTE;
const QUIET_FINISHES_MIN = [-2, -1, 0, 1, 2, 10];
/**
 * What the cadence promises, row by row. Lag ≤ 2 s needs a look every 2 s, and over a finish anywhere
 * in ±2 min of the eta that is 120 calls for those 4 minutes alone (above the 100): the daemon watches
 * closely from a minute before the eta (`DUE_MARGIN_MS`) and every 30 s before that. So lag ≤ 2 s holds
 * from a minute before the eta on; 100 calls for a finish up to about 40 s after it, each later minute
 * adding 30; a finish 2 min early waits for the 30 s look.
 */
const QUIET_GATES = { lagFromMin: -1, callsUpToMin: 0, oneMegabyteUpToMin: 2 };
const QUIET_SEEDS = [1, 2, 3, 4, 5];
const QUIET_TARGETS = { calls: 100, bytes: 1 * MB, lagMs: 2 * SECOND, lateBytes: 2 * MB };
const BUSY_TARGETS = { lagP99Ms: 2 * SECOND, bytesPerModel: 1 * MB };

export const seconds = (ms: number | null, digits = 1) => fixedOrDash(ms === null ? null : ms / SECOND, digits);
export const kilobytes = (bytes: number) => (bytes / KB).toFixed(bytes < 10 * KB ? 1 : 0);

/** `seed` places the finish off the pollers' grids: `finishAfterEtaMin` minutes after the eta plus 0–30 s. */
function quietWorkload(finishAfterEtaMin: number, seed: number): Workload {
  const eta = CREATED_AT + TRAINING_MS;
  const offGrid = Math.round(prng(seed)() * 30 * SECOND);
  return {
    name: `finish ${finishAfterEtaMin === 0 ? 'at' : finishAfterEtaMin < 0 ? `${-finishAfterEtaMin} min before` : `${finishAfterEtaMin} min after`} eta`,
    tunes: [{ createdAt: CREATED_AT, eta, finishAt: eta + finishAfterEtaMin * MINUTE + offGrid, quality: Math.abs(finishAfterEtaMin) <= 2 ? 'accurate' : 'late', ending: 'trained', foreignAfter: 0 }],
    packs: [],
  };
}

/**
 * Mixed eta quality as the steady section draws it: 65 % accurate (F = eta −20…+40 s), 25 % late
 * (F = eta + 1…30 min, the eta never before the creation), 10 % none; 3 % fail and 2 % disappear at F.
 */
export function mixedTune(random: () => number, createdAt: number, finishAt: number, maxForeignAfter = 1): TuneLife {
  const uniform = (low: number, high: number) => low + random() * (high - low);
  const roll = random();
  const quality: EtaQuality = roll < 0.65 ? 'accurate' : roll < 0.9 ? 'late' : 'none';
  const eta =
    quality === 'none' ? null : quality === 'accurate' ? finishAt - Math.round(uniform(-20 * SECOND, 40 * SECOND)) : Math.max(createdAt + MINUTE, finishAt - Math.round(uniform(MINUTE, 30 * MINUTE)));
  const endRoll = random();
  const ending = endRoll >= 0.05 ? 'trained' : endRoll < 0.03 ? 'failed' : 'gone';
  return { createdAt, finishAt, eta, quality, ending, foreignAfter: Math.floor(random() * (maxForeignAfter + 1)) };
}

function busyWorkload(): Workload {
  const random = prng(20_300);
  const models = 300;
  const tunes = Array.from({ length: models }, () => {
    const createdAt = Math.round(random() * 60 * MINUTE);
    return mixedTune(random, createdAt, createdAt + Math.round((15 + random() * 18) * MINUTE));
  });
  return { name: '300 models/h for 1 h', tunes, packs: [] };
}

const lagsOf = (run: LifeRun) => [...run.lags.tune, ...run.lags.prompt];

async function runAll(adminUrl: string, workload: Workload): Promise<LifeRun[]> {
  const runs: LifeRun[] = [];
  for (const strategy of STRATEGIES) {
    console.error(`  ${workload.name}: ${strategy}...`);
    runs.push(await runLives(adminUrl, workload, strategy));
  }
  return runs;
}

export function allApplied(run: LifeRun, label: string): TargetResult {
  const expected = run.workload.tunes.length + run.workload.packs.reduce((sum, pack) => sum + pack.prompts.length, 0);
  const applied = run.lags.tune.length + run.lags.prompt.length;
  return target(`${label}: ${STRATEGY_NAMES[run.strategy]} applied all ${expected}`, applied === expected, `${applied} applied, stopped by ${run.stopReason}`);
}

export async function runQuiet(adminUrl: string): Promise<SectionResult> {
  const rows: string[][] = [];
  const targets: TargetResult[] = [];
  for (const finishAfterEtaMin of QUIET_FINISHES_MIN) {
    const runs = new Map<Strategy, LifeRun[]>(STRATEGIES.map((strategy) => [strategy, []]));
    let name = '';
    for (const seed of QUIET_SEEDS) {
      const workload = quietWorkload(finishAfterEtaMin, seed);
      name = workload.name;
      for (const run of await runAll(adminUrl, workload)) runs.get(run.strategy)!.push(run);
    }
    for (const [strategy, each] of runs) {
      const lags = each.flatMap(lagsOf);
      const calls = each.map((run) => run.calls);
      const bytes = each.map((run) => run.bytes);
      rows.push([
        name,
        STRATEGY_NAMES[strategy],
        spread(calls, String),
        spread(bytes, kilobytes),
        spread(each.map((run) => run.statements), String),
        seconds(percentile(lags, 0.5)),
        seconds(maximum(lags)),
      ]);
      const applied = each.filter((run) => lagsOf(run).length === 1).length;
      targets.push(target(`quiet ${name}: ${STRATEGY_NAMES[strategy]} applied the model in every run`, applied === each.length, `${applied} of ${each.length} runs`));
      if (strategy !== 'daemon') continue;
      const label = (what: string) => `quiet ${name}: daemon ${what}`;
      const lagMax = maximum(lags);
      if (finishAfterEtaMin >= QUIET_GATES.lagFromMin) targets.push(target(label('lag ≤ 2 s'), lagMax !== null && lagMax <= QUIET_TARGETS.lagMs, `${seconds(lagMax)} s at most`));
      if (finishAfterEtaMin >= QUIET_GATES.lagFromMin && finishAfterEtaMin <= QUIET_GATES.callsUpToMin) {
        targets.push(target(label(`≤ ${QUIET_TARGETS.calls} calls`), Math.max(...calls) <= QUIET_TARGETS.calls, `${Math.max(...calls)} calls at most`));
      }
      if (Math.abs(finishAfterEtaMin) <= QUIET_GATES.oneMegabyteUpToMin) {
        targets.push(target(label('≤ 1 MB'), Math.max(...bytes) <= QUIET_TARGETS.bytes, `${kilobytes(Math.max(...bytes))} KB at most`));
      } else {
        targets.push(target(label('≤ 2 MB'), Math.max(...bytes) <= QUIET_TARGETS.lateBytes, `${kilobytes(Math.max(...bytes))} KB at most`));
      }
    }
  }
  const text = [
    `One model over its whole life (created ${CREATED_AT / MINUTE} min into the run with a ${TRAINING_MS / MINUTE}-minute eta; the account holds 500 older tunes), default settings, no callback;`,
    `every strategy in virtual time from an empty app to the model done. ${QUIET_SEEDS.length} runs per row (the finish 0–30 s after the minute named): min–max of each figure, lag p50 and max over them.`,
    formatGrid([['finish', 'strategy', 'Astria calls', 'KB from Astria', 'DB statements', 'lag p50 (s)', 'lag max (s)'], ...rows]),
  ].join('\n');
  return { text, targets };
}

/** `min–max` of the figures (one figure when they agree). */
function spread(values: number[], format: (value: number) => string): string {
  const [low, high] = [format(Math.min(...values)), format(Math.max(...values))];
  return low === high ? low : `${low}–${high}`;
}

export async function runBusy(adminUrl: string): Promise<SectionResult> {
  const workload = busyWorkload();
  const models = workload.tunes.length;
  const runs = await runAll(adminUrl, workload);
  const rows = runs.map((run) => {
    const lags = lagsOf(run);
    return [
      STRATEGY_NAMES[run.strategy],
      seconds(percentile(lags, 0.5)),
      seconds(percentile(lags, 0.99)),
      seconds(maximum(lags)),
      (run.calls / models).toFixed(1),
      kilobytes(run.bytes / models),
      (run.statements / models).toFixed(1),
      String(run.calls),
      (run.bytes / MB).toFixed(1),
      seconds(run.realMs),
    ];
  });
  const daemon = runs.find((run) => run.strategy === 'daemon')!;
  const daemonLags = lagsOf(daemon);
  const byQuality = (['accurate', 'late', 'none'] as const).map((quality) => `${quality} ${workload.tunes.filter((tune) => tune.quality === quality).length}`);
  const inFlightPeak = peakInFlight(workload.tunes);
  const text = [
    `${models} models created over an hour (trainings 15–33 min, peak ${inFlightPeak} in flight; eta quality: ${byQuality.join(', ')}), mixed endings, foreign tunes interleaved; whole lives for every strategy.`,
    formatGrid([['strategy', 'lag p50 (s)', 'lag p99 (s)', 'lag max (s)', 'calls/model', 'KB/model', 'DB stmts/model', 'calls', 'MB', 'real (s)'], ...rows]),
  ].join('\n');
  const p99 = percentile(daemonLags, 0.99);
  return {
    text,
    targets: [
      ...runs.map((run) => allApplied(run, 'busy')),
      target('busy: daemon lag p99 ≤ 2 s', p99 !== null && p99 <= BUSY_TARGETS.lagP99Ms, `${seconds(p99)} s`),
      target('busy: daemon ≤ 1 MB per model', daemon.bytes / models <= BUSY_TARGETS.bytesPerModel, `${kilobytes(daemon.bytes / models)} KB/model`),
    ],
  };
}

/** Most tunes in flight at once. */
export function peakInFlight(tunes: readonly TuneLife[]): number {
  const changes = tunes.flatMap((tune) => [
    [tune.createdAt, 1],
    [tune.finishAt, -1],
  ]) as [number, number][];
  changes.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let current = 0;
  let peak = 0;
  for (const [, delta] of changes) peak = Math.max(peak, (current += delta));
  return peak;
}
