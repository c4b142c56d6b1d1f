/**
 * Generations (issue 16): 120 models and 1,200 prompts finishing over the same 10 minutes, webhook
 * lost, every strategy over the same whole lives (bench/lives.ts). The models train 20–40 min with
 * mixed eta quality (as `busy` draws them) and finish over the window; the prompts come in packs,
 * bursts of 20–40 on one tune (a READY model's), a pack about every 15 s, each prompt done 15–45 s
 * after its pack was made (Astria's docs: 15 s for 8 images at 30 steps, before queueing and
 * upscaling; 3 % flagged: `user_error`, no images), finishing over the window. Before the window only
 * the models' trainings are in flight; in it, up to 120 of each (the printed peaks). The account holds
 * no other tunes among the app's, so each kind's in-flight objects fit a list page, as the target
 * assumes; a second daemon run with other tunes interleaved (half again as many ids) shows what one
 * page more costs, without a target. Rates are over the window; lag, calls and bytes per object over
 * whole lives.
 */
import { prng } from './scenario.js';
import { formatGrid, maximum, percentile, target, type SectionResult } from './stats.js';
import type { TargetResult } from './report.js';
import { allApplied, kilobytes, mixedTune, seconds } from './cost.js';
import { DAEMON_DEFAULTS, PROMPTS_EVERY_PER_TUNES_EVERY } from '../src/reconciler/daemon.js';
import { PACK_TUNES, runLives, STRATEGIES, STRATEGY_NAMES, type LifeRun, type PackLife, type Workload } from './lives.js';

const SECOND = 1_000;
const MINUTE = 60 * SECOND;
const MODELS = 120;
const PROMPTS = 1_200;
/** The finishing window: [WINDOW_START, WINDOW_START + WINDOW_MS]; every training starts after 0. */
const WINDOW_START = 40 * MINUTE;
const WINDOW_MS = 10 * MINUTE;
const LAG_TARGETS = { p50: 2 * SECOND, p99: 5 * SECOND, max: 10 * SECOND };
const MAX_AVG_RPS = 1;
const PACK_EVERY_MS = 15 * SECOND;
const PROMPT_TIME_MS = { shortest: 15 * SECOND, longest: 45 * SECOND };

/** `foreignAfter`: at most this many tunes of the account that are not the app's follow each of its tunes. */
function workload(foreignAfter: 0 | 1): Workload {
  const random = prng(16_120);
  const uniform = (low: number, high: number) => low + random() * (high - low);
  const tunes = Array.from({ length: MODELS }, () => {
    const finishAt = WINDOW_START + Math.round(uniform(0, WINDOW_MS));
    return mixedTune(random, finishAt - Math.round(uniform(20 * MINUTE, 40 * MINUTE)), finishAt, foreignAfter);
  });
  const packs: PackLife[] = [];
  for (let made = 0; made < PROMPTS; ) {
    const size = Math.min(PROMPTS - made, 20 + Math.floor(random() * 21));
    const createdAt = WINDOW_START - 30 * SECOND + Math.round((packs.length + random()) * PACK_EVERY_MS);
    packs.push({
      createdAt,
      tuneIndex: Math.floor(random() * PACK_TUNES),
      prompts: Array.from({ length: size }, () => ({ finishAt: createdAt + Math.round(uniform(PROMPT_TIME_MS.shortest, PROMPT_TIME_MS.longest)), failed: random() < 0.03 })),
    });
    made += size;
  }
  return { name: `${MODELS} models and ${PROMPTS} prompts over ${WINDOW_MS / MINUTE} min`, tunes, packs };
}

/** The most objects of each kind in flight at once (created, not yet finished). */
function peakInFlight(load: Workload): { tune: number; prompt: number } {
  const peak = (spans: { from: number; to: number }[]) => {
    const steps = spans.flatMap(({ from, to }) => [{ at: from, by: 1 }, { at: to, by: -1 }]).sort((a, b) => a.at - b.at || a.by - b.by);
    let now = 0;
    let most = 0;
    for (const step of steps) most = Math.max(most, (now += step.by));
    return most;
  };
  return {
    tune: peak(load.tunes.map((life) => ({ from: life.createdAt, to: life.finishAt }))),
    prompt: peak(load.packs.flatMap((pack) => pack.prompts.map((prompt) => ({ from: pack.createdAt, to: prompt.finishAt })))),
  };
}

const inWindow = (run: LifeRun) => run.requests.filter((at) => at >= WINDOW_START && at <= WINDOW_START + WINDOW_MS).length;

export async function runGenerations(adminUrl: string): Promise<SectionResult> {
  const load = workload(0);
  const runs: { label: string; run: LifeRun }[] = [];
  for (const strategy of STRATEGIES) {
    console.error(`  generations: ${strategy}...`);
    runs.push({ label: STRATEGY_NAMES[strategy], run: await runLives(adminUrl, load, strategy) });
  }
  console.error('  generations: daemon, other tunes interleaved...');
  const interleaved = { label: `${STRATEGY_NAMES.daemon}, other tunes interleaved`, run: await runLives(adminUrl, workload(1), 'daemon') };
  const shown = [...runs, interleaved];
  const objects = { tune: MODELS, prompt: PROMPTS };
  const lagRows = shown.flatMap(({ label, run }) =>
    (['tune', 'prompt'] as const).map((kind) => {
      const lags = run.lags[kind];
      const calls = kind === 'tune' ? run.endpoints.get + run.endpoints.list : run.endpoints.promptGet + run.endpoints.promptList;
      return [label, kind, `${lags.length}/${objects[kind]}`, seconds(percentile(lags, 0.5)), seconds(percentile(lags, 0.99)), seconds(maximum(lags)), (calls / objects[kind]).toFixed(2)];
    }),
  );
  const totalObjects = MODELS + PROMPTS;
  const costRows = shown.map(({ label, run }) => [
    label,
    String(run.calls),
    `${run.endpoints.list} / ${run.endpoints.get} / ${run.endpoints.promptList} / ${run.endpoints.promptGet}`,
    (inWindow(run) / (WINDOW_MS / SECOND)).toFixed(2),
    (run.calls / totalObjects).toFixed(2),
    kilobytes(run.bytes / totalObjects),
    (run.statements / totalObjects).toFixed(1),
    seconds(run.realMs),
  ]);
  const peak = peakInFlight(load);
  const text = [
    `${load.name}: models train 20–40 min (mixed eta quality, 3 % failed, 2 % gone), prompts in ${load.packs.length} packs of 20–40, one about every ${PACK_EVERY_MS / SECOND} s (done ${PROMPT_TIME_MS.shortest / SECOND}–${PROMPT_TIME_MS.longest / SECOND} s after the pack, 3 % flagged); at most ${peak.tune} tunes and ${peak.prompt} prompts in flight at once; default settings (tunes observed every ${DAEMON_DEFAULTS.observeEveryMs / SECOND} s, prompts every ${(PROMPTS_EVERY_PER_TUNES_EVERY * DAEMON_DEFAULTS.observeEveryMs) / SECOND} s), no callback; whole lives, rates over the 10-minute window. The last row: the same with up to one tune of the account that is not the app's after each of the app's (its ${peak.tune} in-flight tunes span two list pages), no target.`,
    formatGrid([['strategy', 'kind', 'applied', 'lag p50 (s)', 'lag p99 (s)', 'lag max (s)', 'calls/object'], ...lagRows]),
    formatGrid([['strategy', 'Astria calls', 'tune list / GET / prompt list / GET', 'req/s in window', 'calls/object', 'KB/object', 'DB stmts/object', 'real (s)'], ...costRows]),
  ].join('\n');

  const daemon = runs.find(({ run }) => run.strategy === 'daemon')!.run;
  const targets: TargetResult[] = [...runs.map(({ run }) => allApplied(run, 'generations')), allApplied(interleaved.run, 'generations, other tunes interleaved')];
  for (const kind of ['tune', 'prompt'] as const) {
    const lags = daemon.lags[kind];
    const complete = lags.length === objects[kind];
    targets.push(
      target(`generations: daemon ${kind} lag p50 ≤ 2 s`, complete && percentile(lags, 0.5)! <= LAG_TARGETS.p50, `${seconds(percentile(lags, 0.5))} s`),
      target(`generations: daemon ${kind} lag p99 ≤ 5 s`, complete && percentile(lags, 0.99)! <= LAG_TARGETS.p99, `${seconds(percentile(lags, 0.99))} s`),
      target(`generations: daemon ${kind} lag max ≤ 10 s`, complete && maximum(lags)! <= LAG_TARGETS.max, `${seconds(maximum(lags))} s`),
    );
  }
  const rps = inWindow(daemon) / (WINDOW_MS / SECOND);
  targets.push(target(`generations: daemon ≤ 1 req/s average, tunes and prompts together (up to ${peak.tune} tunes and ${peak.prompt} prompts in flight)`, rps <= MAX_AVG_RPS, `${rps.toFixed(2)} req/s`));
  return { text, targets };
}
