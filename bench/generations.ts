/**
 * Generations (issue 16): 120 models and 1,200 prompts finishing over the same 10 minutes, webhook
 * lost, every strategy over the same whole lives (bench/lives.ts). The models train 20–40 min with
 * mixed eta quality (as `busy` draws them) and finish over the window; the prompts come in packs,
 * bursts of 20–40 on one tune (a READY model's), each prompt done 30–90 s after its pack was made (3 %
 * flagged: `user_error`, no images), finishing over the window. Before the window only the models'
 * trainings are in flight; in it, up to 120 of each. Rates are over the window; lag, calls and bytes
 * per object over whole lives.
 */
import { prng } from './scenario.js';
import { formatGrid, maximum, percentile, target, type SectionResult } from './stats.js';
import type { TargetResult } from './report.js';
import { allApplied, kilobytes, mixedTune, seconds } from './cost.js';
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

function workload(): Workload {
  const random = prng(16_120);
  const uniform = (low: number, high: number) => low + random() * (high - low);
  const tunes = Array.from({ length: MODELS }, () => {
    const finishAt = WINDOW_START + Math.round(uniform(0, WINDOW_MS));
    return mixedTune(random, finishAt - Math.round(uniform(20 * MINUTE, 40 * MINUTE)), finishAt);
  });
  const packs: PackLife[] = [];
  for (let made = 0; made < PROMPTS; ) {
    const size = Math.min(PROMPTS - made, 20 + Math.floor(random() * 21));
    const createdAt = WINDOW_START + Math.round(uniform(-30 * SECOND, WINDOW_MS - 90 * SECOND));
    packs.push({
      createdAt,
      tuneIndex: Math.floor(random() * PACK_TUNES),
      prompts: Array.from({ length: size }, () => ({ finishAt: createdAt + Math.round(uniform(30 * SECOND, 90 * SECOND)), failed: random() < 0.03 })),
    });
    made += size;
  }
  return { name: `${MODELS} models and ${PROMPTS} prompts over ${WINDOW_MS / MINUTE} min`, tunes, packs };
}

const inWindow = (run: LifeRun) => run.requests.filter((at) => at >= WINDOW_START && at <= WINDOW_START + WINDOW_MS).length;

export async function runGenerations(adminUrl: string): Promise<SectionResult> {
  const load = workload();
  const runs: LifeRun[] = [];
  for (const strategy of STRATEGIES) {
    console.error(`  generations: ${strategy}...`);
    runs.push(await runLives(adminUrl, load, strategy));
  }
  const objects = { tune: MODELS, prompt: PROMPTS };
  const lagRows = runs.flatMap((run) =>
    (['tune', 'prompt'] as const).map((kind) => {
      const lags = run.lags[kind];
      const calls = kind === 'tune' ? run.endpoints.get + run.endpoints.list : run.endpoints.promptGet + run.endpoints.promptList;
      return [STRATEGY_NAMES[run.strategy], kind, `${lags.length}/${objects[kind]}`, seconds(percentile(lags, 0.5)), seconds(percentile(lags, 0.99)), seconds(maximum(lags)), (calls / objects[kind]).toFixed(2)];
    }),
  );
  const totalObjects = MODELS + PROMPTS;
  const costRows = runs.map((run) => [
    STRATEGY_NAMES[run.strategy],
    String(run.calls),
    `${run.endpoints.list} / ${run.endpoints.get} / ${run.endpoints.promptList} / ${run.endpoints.promptGet}`,
    (inWindow(run) / (WINDOW_MS / SECOND)).toFixed(2),
    (run.calls / totalObjects).toFixed(2),
    kilobytes(run.bytes / totalObjects),
    (run.statements / totalObjects).toFixed(1),
    seconds(run.realMs),
  ]);
  const text = [
    `${load.name}: models train 20–40 min (mixed eta quality, 3 % failed, 2 % gone), prompts in ${load.packs.length} packs of 20–40 (done 30–90 s after the pack, 3 % flagged); default settings, no callback; whole lives, rates over the 10-minute window.`,
    formatGrid([['strategy', 'kind', 'applied', 'lag p50 (s)', 'lag p99 (s)', 'lag max (s)', 'calls/object'], ...lagRows]),
    formatGrid([['strategy', 'Astria calls', 'tune list / GET / prompt list / GET', 'req/s in window', 'calls/object', 'KB/object', 'DB stmts/object', 'real (s)'], ...costRows]),
  ].join('\n');

  const daemon = runs.find((run) => run.strategy === 'daemon')!;
  const targets: TargetResult[] = runs.map((run) => allApplied(run, 'generations'));
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
  targets.push(target('generations: daemon ≤ 1 req/s average, tunes and prompts together', rps <= MAX_AVG_RPS, `${rps.toFixed(2)} req/s`));
  return { text, targets };
}
