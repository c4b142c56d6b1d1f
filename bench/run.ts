/**
 * `npm run bench`: how a backfill pass scales. N models are stuck in TRAINING (their tunes trained a
 * minute ago, callbacks lost), spread uniformly at random (seeded) over an account of 3×N tunes, against
 * a simulated Astria with 25 ms latency that answers 429 above 20 requests/s.
 *
 * Scenarios, each in a fresh scratch database and a fresh simulated Astria:
 *   backfill-3k      N = 3,000, auto plan (list scan)
 *   single-gets-3k   N = 3,000, one GET per model, for comparison (~150 s; BENCH_QUICK=1 skips it)
 *   backfill-30k     N = 30,000, auto plan
 *
 * Per scenario: models recovered, Astria calls (as the simulated Astria counted them) per model and
 * against the list-scan floor, 429s, wall time against the rate-limit bound, and the RSS of the process
 * running the pass. The pass runs in a child process (bench/pass-worker.ts) so that RSS is the
 * reconciler's alone. Exits 1 when a target of issues #2, #5 and #8 is missed, listing which.
 *
 * Then (bench/steady-state.ts and bench/broadcast-latency.ts):
 *   steady           the daemon loop at default settings, webhook lost, in virtual time (issue 8): 40
 *                    models over 3 min, 200 and 1,000 over 10 min, a 12-vs-120 density pair and a
 *                    RECONCILER_OBSERVE_EVERY sweep; lag by eta quality, calls/model, avg and peak
 *                    req/s against three polling peers
 *   latency          1,000 events: commit → LISTEN receipt and commit → HTTP receipt
 * Then (issue 11, bench/nextjs-browser.ts):
 *   browser          examples/nextjs in headless Chromium: webhook POST → DOM text, and a lost callback's
 *                    trained_at → DOM text with the sidecar at its default settings
 * Then (bench/cost.ts, bench/generations.ts; whole lives, like for like, bench/lives.ts):
 *   quiet            one model over its life, finishing 2 min before / at / 2 min after / 10 min after
 *                    its eta: the daemon beside a GET every 5 s and a list scan every 30 s, each
 *                    measured (calls, bytes from Astria, DB statements, lag)
 *   busy             300 models an hour for an hour (~120 in flight, mixed eta quality), the same three
 *   generations      120 models and 1,200 prompts (packs of 20–40) finishing over 10 minutes, the same
 *                    three: lag per kind, calls per object, req/s
 * and (bench/history.ts):
 *   history          an idle leader with 30 days of history (216k models, their events and callbacks)
 *                    beside an empty one: lost-callback judging's database time a minute, and a
 *                    callback finding its model through the tune lookup table or the app's table
 *   inflight         (bench/inflight-scale.ts) one round of the daemon's watch with 5,000 and with 20,000
 *                    models in flight: statements, database time and CPU per round, and how they grow
 * BENCH_ONLY=backfill,steady,quiet,history,busy,generations,latency,browser,inflight (any subset, comma
 * separated) picks the sections; default all.
 *
 * Database: a scratch database on BENCH_DATABASE_URL's server if set, else an embedded PostgreSQL.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startEmbeddedPostgres } from '../dev/embedded-postgres.js';
import type { PassJob, PassRun } from './pass-worker.js';
import {
  correctnessTargets,
  formatTable,
  formatTargets,
  issue2Targets,
  issue5Targets,
  pacingLoss,
  tightestWindow,
  type Measurement,
  type TargetResult,
} from './report.js';
import { runBroadcastLatency } from './broadcast-latency.js';
import { runBusy, runQuiet } from './cost.js';
import { runGenerations } from './generations.js';
import { runHistory } from './history.js';
import { runInFlightScale } from './inflight-scale.js';
import { runNextjsBrowser } from './nextjs-browser.js';
import { API_KEY, LIST_PAGE_SIZE, countRecovered, createWorld } from './scenario.js';
import type { SectionResult } from './stats.js';
import { runSteadyState } from './steady-state.js';

interface Scenario {
  name: string;
  stuck: number;
  plan: PassJob['plan'];
}

const SEED = 20_240_601;
const WORKER = fileURLToPath(new URL('./pass-worker.js', import.meta.url));

const BACKFILL_3K: Scenario = { name: 'backfill-3k', stuck: 3_000, plan: 'auto' };
const SINGLE_GETS_3K: Scenario = { name: 'single-gets-3k', stuck: 3_000, plan: 'single-gets' };
const BACKFILL_30K: Scenario = { name: 'backfill-30k', stuck: 30_000, plan: 'auto' };

function scenarios(quick: boolean): Scenario[] {
  return quick ? [BACKFILL_3K, BACKFILL_30K] : [BACKFILL_3K, SINGLE_GETS_3K, BACKFILL_30K];
}

async function adminDatabase(): Promise<{ url: string; describe: string; stop(): Promise<void> }> {
  const external = process.env.BENCH_DATABASE_URL;
  if (external) return { url: external, describe: "scratch databases on BENCH_DATABASE_URL's server", stop: async () => undefined };
  const server = await startEmbeddedPostgres();
  return { url: server.url, describe: 'embedded PostgreSQL', stop: () => server.stop() };
}

/** Runs one pass in a child process and returns what it measured. */
function runPassInWorker(job: PassJob): Promise<PassRun> {
  return new Promise((resolve, reject) => {
    const child = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    let result: PassRun | undefined;
    child.once('message', (message) => (result = message as PassRun));
    child.once('error', reject);
    child.once('exit', (code) => (result ? resolve(result) : reject(new Error(`pass worker exited with code ${code} and no result`))));
    child.send(job);
  });
}

async function measure(adminUrl: string, scenario: Scenario): Promise<Measurement> {
  const accountTunes = 3 * scenario.stuck;
  const world = await createWorld(adminUrl, accountTunes, scenario.stuck, SEED);
  try {
    const run = await runPassInWorker({ databaseUrl: world.databaseUrl, astriaUrl: world.astria.url, apiKey: API_KEY, plan: scenario.plan });
    const { stats } = world.astria;
    return {
      name: scenario.name,
      stuck: scenario.stuck,
      accountTunes,
      recovered: await countRecovered(world),
      calls: stats.requests,
      listCalls: stats.list,
      getCalls: stats.get,
      rateLimited: stats.byStatus[429] ?? 0,
      floorCalls: Math.ceil(world.tunesToScan / LIST_PAGE_SIZE),
      tightestWindowMs: tightestWindow(world.arrivals),
      pacingLossMs: pacingLoss(world.arrivals),
      run,
    };
  } finally {
    await world.dispose();
  }
}

function targets(measurements: Measurement[]): TargetResult[] {
  const byName = (name: string) => measurements.find((m) => m.name === name);
  const small = byName(BACKFILL_3K.name);
  const large = byName(BACKFILL_30K.name);
  return [
    ...correctnessTargets(measurements),
    ...(small ? issue2Targets(small) : []),
    ...(small && large ? issue5Targets(small, large) : []),
  ];
}

const SECTIONS = ['backfill', 'steady', 'quiet', 'history', 'busy', 'generations', 'latency', 'browser', 'inflight'] as const;
type Section = (typeof SECTIONS)[number];

/** BENCH_ONLY=steady,latency → those sections, in the fixed order above; unset → all of them. */
function selectedSections(): Section[] {
  const only = process.env.BENCH_ONLY?.trim();
  if (!only) return [...SECTIONS];
  const names = only.split(',').map((name) => name.trim()).filter(Boolean);
  const unknown = names.filter((name) => !SECTIONS.includes(name as Section));
  if (unknown.length > 0) throw new Error(`BENCH_ONLY: unknown section(s) ${unknown.join(', ')}; choose from ${SECTIONS.join(', ')}`);
  return SECTIONS.filter((section) => names.includes(section));
}

/** The backfill scenarios: the table and targets of issues #2 and #5, printed as before. */
async function runBackfill(adminUrl: string, quick: boolean): Promise<SectionResult> {
  const measurements: Measurement[] = [];
  console.log(`Simulated Astria: 25 ms latency, 429 above 20 req/s. Seed ${SEED}.`);
  if (quick) console.log(`BENCH_QUICK=1: skipping ${SINGLE_GETS_3K.name}.`);
  for (const scenario of scenarios(quick)) {
    console.error(`running ${scenario.name} (${scenario.stuck} stuck among ${3 * scenario.stuck} tunes, plan ${scenario.plan})...`);
    measurements.push(await measure(adminUrl, scenario));
  }
  const failures = measurements.flatMap((m) => m.run.report.firstFailures.map((failure) => `  ${m.name} failure: ${failure}`));
  return { text: [formatTable(measurements), ...failures].join('\n'), targets: targets(measurements) };
}

const RUNNERS: Record<Section, (adminUrl: string, quick: boolean) => Promise<SectionResult>> = {
  backfill: runBackfill,
  steady: runSteadyState,
  quiet: runQuiet,
  busy: runBusy,
  generations: runGenerations,
  latency: runBroadcastLatency,
  browser: runNextjsBrowser,
  history: runHistory,
  inflight: runInFlightScale,
};

async function main(): Promise<number> {
  const quick = process.env.BENCH_QUICK === '1';
  const sections = selectedSections();
  const database = await adminDatabase();
  const results: TargetResult[] = [];
  try {
    console.log(`Database: ${database.describe}. Sections: ${sections.join(', ')}.`);
    for (const section of sections) {
      console.error(`running ${section}...`);
      const result = await RUNNERS[section](database.url, quick);
      console.log(`\n== ${section} ==\n${result.text}\n`);
      console.log(formatTargets(result.targets));
      results.push(...result.targets);
    }
  } finally {
    await database.stop();
  }

  const missed = results.filter((result) => !result.pass);
  console.log(missed.length === 0 ? '\nAll targets met.' : `\n${missed.length} target(s) missed:\n${missed.map((r) => `  - ${r.label} (${r.actual})`).join('\n')}`);
  return missed.length === 0 ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    console.error(error);
    process.exit(1);
  },
);
