/**
 * In flight at scale (issue 20): what one round of the daemon's watch costs the database and the CPU
 * with 5,000 and with 20,000 models in flight. The account holds three times as many tunes (two in
 * three trained long ago and not the app's), the app table as many finished models beside the
 * in-flight ones; every in-flight tune is training, its eta 40 minutes after its start.
 *
 * The real watch (discovery, the engine's round, the status service) runs on a real pool against a
 * scratch database and a simulated Astria in a child process (so CPU is the reconciler's alone).
 * Time is a clock moved forward by `RECONCILER_INTERVAL` (30 s) before each measured round and
 * standing still within it: every model is due in every round, and the in-flight rows are re-read
 * before each, the most a round ever does; progress writes come as the bars move (5 points, at most
 * once a minute per model), the same share of the models at either size. Per round: statements sent, database time (each statement's send → answer,
 * summed), CPU of this process, Astria calls. Target: 20,000 in flight cost at most 4.5× what 5,000 do.
 */
import { fork } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { pino } from 'pino';
import { countStatements } from '../dev/statement-counter.js';
import { seedModels, type SeedModel } from '../dev/host-schema.js';
import { createAstriaClient } from '../src/astria/client.js';
import { systemClock, type Clock } from '../src/clock.js';
import { createPool } from '../src/db/pool.js';
import { createMetrics } from '../src/metrics.js';
import { tunes } from '../src/reconciler/resource.js';
import { DEFAULT_HOST_SCHEMA } from '../src/db/host-names.js';
import { InFlightWatch } from '../src/reconciler/watch.js';
import { createStatusService } from '../src/status/service.js';
import type { AstriaJob, AstriaReady } from './astria-worker.js';
import { API_KEY, scratchDatabase } from './scenario.js';
import { fixedOrDash, formatGrid, target, type SectionResult } from './stats.js';

const SIZES = [5_000, 20_000] as const;
const MEASURED_ROUNDS = 8;
const INTERVAL_MS = 30_000;
const MAX_GROWTH = 4.5;
const WORKER = fileURLToPath(new URL('./astria-worker.js', import.meta.url));

interface ScaleFigures {
  inFlight: number;
  statementsPerRound: number;
  dbMsPerRound: number;
  cpuMsPerRound: number;
  wallMsPerRound: number;
  callsPerRound: number;
}

/** The simulated Astria in a child process; resolves once it serves. */
function startAstriaProcess(job: AstriaJob): Promise<AstriaReady & { stop(): void }> {
  return new Promise((resolve, reject) => {
    const child = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    child.once('error', reject);
    child.once('exit', (code) => reject(new Error(`simulated Astria exited with code ${code}`)));
    child.once('message', (message) => resolve({ ...(message as AstriaReady), stop: () => child.disconnect() }));
    child.send(job);
  });
}

async function measureScale(adminUrl: string, inFlight: number): Promise<ScaleFigures> {
  const start = Date.now();
  const database = await scratchDatabase(adminUrl);
  const astria = await startAstriaProcess({ apiKey: API_KEY, tunes: 3 * inFlight, trainingEvery: 3, start });
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  let shiftMs = 0;
  // Time stands still within a round (a round is measured, not timed), so both sizes see the same progress.
  const clock: Clock = { now: () => start + shiftMs, sleep: systemClock.sleep };
  const pool = createPool(database.url, log, 10);
  const counter = countStatements(pool);
  const client = createAstriaClient({ apiUrl: astria.url, apiKey: API_KEY, maxRps: 100_000, concurrency: 4, timeoutMs: 30_000, log, metrics, clock });
  try {
    const training = new Set(astria.training);
    const models: SeedModel[] = [];
    for (let tuneId = Math.min(...training); tuneId < Math.min(...training) + 3 * inFlight; tuneId += 1) {
      const inFlightModel = training.has(tuneId);
      // Half the finished tunes are the app's own history: the app table holds finished models too.
      if (!inFlightModel && tuneId % 2 === 0) continue;
      models.push({
        id: `model-${tuneId}`,
        userId: `user-${tuneId % 500}`,
        status: inFlightModel ? 'TRAINING' : 'READY',
        trainingJobId: String(tuneId),
        progress: inFlightModel ? 0 : 100,
        createdAt: new Date(start - 20 * 60_000),
        updatedAt: new Date(start - 20 * 60_000),
      });
    }
    await seedModels(database.pool, models);
    await database.pool.query('VACUUM ANALYZE ai_models');

    const service = createStatusService({ pool, metrics, clock });
    const watch = new InFlightWatch(
      tunes(DEFAULT_HOST_SCHEMA),
      { pool, astria: client, writer: service, log, clock, metrics },
      { intervalMs: INTERVAL_MS, stuckAfterMs: 2 * 60_000, observeEveryMs: 2_000, trainingTimeoutMs: 24 * 3_600_000, concurrency: 4, maxNotFoundShare: 0.5 },
    );
    const signal = new AbortController().signal;
    const round = async () => {
      const now = clock.now();
      await watch.discover(now);
      await watch.round(now, signal, () => undefined);
    };
    // The first look at every model (its first progress write) is not the steady round measured.
    await round();
    counter.reset();
    const callsBefore = client.calls;
    const cpuBefore = process.cpuUsage();
    let wallMs = 0;
    for (let index = 0; index < MEASURED_ROUNDS; index += 1) {
      shiftMs += INTERVAL_MS;
      const started = performance.now();
      await round();
      wallMs += performance.now() - started;
    }
    const cpu = process.cpuUsage(cpuBefore);
    return {
      inFlight,
      statementsPerRound: counter.statements / MEASURED_ROUNDS,
      dbMsPerRound: counter.busyMs / MEASURED_ROUNDS,
      cpuMsPerRound: (cpu.user + cpu.system) / 1000 / MEASURED_ROUNDS,
      wallMsPerRound: wallMs / MEASURED_ROUNDS,
      callsPerRound: (client.calls - callsBefore) / MEASURED_ROUNDS,
    };
  } finally {
    await client.close();
    await pool.end();
    astria.stop();
    await database.drop();
  }
}

export async function runInFlightScale(adminUrl: string): Promise<SectionResult> {
  const figures: ScaleFigures[] = [];
  for (const size of SIZES) {
    console.error(`  in flight ${size}...`);
    figures.push(await measureScale(adminUrl, size));
  }
  const [small, large] = figures as [ScaleFigures, ScaleFigures];
  const growth = (pick: (f: ScaleFigures) => number) => pick(large) / pick(small);
  const row = (f: ScaleFigures) => [
    String(f.inFlight),
    fixedOrDash(f.statementsPerRound, 1),
    fixedOrDash(f.dbMsPerRound, 1),
    fixedOrDash(f.cpuMsPerRound, 1),
    fixedOrDash(f.wallMsPerRound, 0),
    fixedOrDash(f.callsPerRound, 1),
  ];
  const text = [
    `Every in-flight model due each round, the in-flight rows re-read before it; mean of ${MEASURED_ROUNDS} rounds after the first look.`,
    formatGrid([
      ['in flight', 'statements/round', 'DB ms/round', 'CPU ms/round', 'wall ms/round', 'Astria calls/round'],
      row(small),
      row(large),
      ['growth', `${growth((f) => f.statementsPerRound).toFixed(2)}×`, `${growth((f) => f.dbMsPerRound).toFixed(2)}×`, `${growth((f) => f.cpuMsPerRound).toFixed(2)}×`, `${growth((f) => f.wallMsPerRound).toFixed(2)}×`, `${growth((f) => f.callsPerRound).toFixed(2)}×`],
    ]),
  ].join('\n');
  const label = (what: string) => `in flight ${small.inFlight} → ${large.inFlight}: ${what} per round ≤ ${MAX_GROWTH}×`;
  return {
    text,
    targets: [
      target(label('DB time'), growth((f) => f.dbMsPerRound) <= MAX_GROWTH, `${growth((f) => f.dbMsPerRound).toFixed(2)}×`),
      target(label('CPU'), growth((f) => f.cpuMsPerRound) <= MAX_GROWTH, `${growth((f) => f.cpuMsPerRound).toFixed(2)}×`),
      target(label('statements'), growth((f) => f.statementsPerRound) <= MAX_GROWTH, `${growth((f) => f.statementsPerRound).toFixed(2)}×`),
    ],
  };
}
