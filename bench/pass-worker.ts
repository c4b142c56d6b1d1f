/**
 * One `--once` round in a process of its own, so the RSS measured is the reconciler's alone (the
 * simulated Astria and its tunes live in the parent, PostgreSQL in its own server). Forked by
 * `bench/run.ts`: it receives a `PassJob` over IPC, runs `reconcileOnce` (the `--once` round) with production-like settings while
 * sampling RSS every 50 ms, sends back a `PassRun` and exits.
 */
import { performance } from 'node:perf_hooks';
import { pino } from 'pino';
import { createAstriaClient, type AstriaClient } from '../src/astria/client.js';
import { systemClock } from '../src/clock.js';
import { operatorFilter } from '../src/db/inflight.js';
import { createPool } from '../src/db/pool.js';
import { createMetrics } from '../src/metrics.js';
import { reconcileOnce } from '../src/reconciler/once.js';
import type { StatusService } from '../src/status/service.js';
import { createStatusService } from '../src/status/service.js';

export interface PassJob {
  databaseUrl: string;
  astriaUrl: string;
  apiKey: string;
  plan: 'auto' | 'single-gets';
}

/** Offsets are milliseconds from the start of the pass; null when nothing of the kind happened. */
export interface PassRun {
  wallMs: number;
  rssBeforeBytes: number;
  rssPeakBytes: number;
  report: {
    checked: number;
    transitioned: number;
    failed: number;
    apiCalls: number;
    listPages: number;
    singleGets: number;
    firstFailures: string[];
  };
  astria: { calls: number; busyMs: number; lastAnswerAtMs: number | null };
  writes: { count: number; busyMs: number; lastDoneAtMs: number | null };
}

const MAX_RPS = 20;
const CONCURRENCY = 4;
const TIMEOUT_MS = 30_000;
const POOL_SIZE = 10;
const RSS_SAMPLE_MS = 50;
const TRAINING_TIMEOUT_MS = 24 * 3_600_000;

/** Time spent in (and the end of) a kind of awaited work, summed over every call. */
interface Span {
  count: number;
  busyMs: number;
  lastEnd: number | null;
}

function newSpan(): Span {
  return { count: 0, busyMs: 0, lastEnd: null };
}

async function timed<T>(span: Span, work: () => Promise<T>): Promise<T> {
  const started = performance.now();
  try {
    return await work();
  } finally {
    const ended = performance.now();
    span.count += 1;
    span.busyMs += ended - started;
    span.lastEnd = ended;
  }
}

function timedAstria(client: AstriaClient, span: Span): AstriaClient {
  return {
    getTune: (tuneId, signal) => timed(span, () => client.getTune(tuneId, signal)),
    listTunes: (options, signal) => timed(span, () => client.listTunes(options, signal)),
    getPrompt: (tuneId, promptId, signal) => timed(span, () => client.getPrompt(tuneId, promptId, signal)),
    listPrompts: (options, signal) => timed(span, () => client.listPrompts(options, signal)),
    get calls() {
      return client.calls;
    },
    close: () => client.close(),
  };
}

function timedService(service: StatusService, span: Span): StatusService {
  return {
    apply: (transition, source) => timed(span, () => service.apply(transition, source)),
    applyGeneration: (transition, source) => timed(span, () => service.applyGeneration(transition, source)),
    applyProgress: (transitions, source) => timed(span, () => service.applyProgress(transitions, source)),
  };
}

/** Samples RSS until stopped; `peak` includes the samples taken at start and stop. */
function sampleRss(): { stop(): number } {
  let peak = process.memoryUsage.rss();
  const timer = setInterval(() => {
    peak = Math.max(peak, process.memoryUsage.rss());
  }, RSS_SAMPLE_MS);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, process.memoryUsage.rss());
    },
  };
}

async function run(job: PassJob): Promise<PassRun> {
  const log = pino({ level: 'silent' });
  const metrics = createMetrics();
  const pool = createPool(job.databaseUrl, log, POOL_SIZE);
  const client = createAstriaClient({
    apiUrl: job.astriaUrl,
    apiKey: job.apiKey,
    maxRps: MAX_RPS,
    concurrency: CONCURRENCY,
    timeoutMs: TIMEOUT_MS,
    log,
    metrics,
    clock: systemClock,
  });
  const astriaSpan = newSpan();
  const writeSpan = newSpan();
  const deps = {
    pool,
    astria: timedAstria(client, astriaSpan),
    service: timedService(createStatusService({ pool, metrics }), writeSpan),
    log,
    clock: systemClock,
    metrics,
  };
  const options = {
    filter: operatorFilter(Date.now(), 0, []),
    trainingTimeoutMs: TRAINING_TIMEOUT_MS,
    concurrency: CONCURRENCY,
    plan: job.plan,
  };
  try {
    const rssBeforeBytes = process.memoryUsage.rss();
    const rss = sampleRss();
    const started = performance.now();
    const report = await reconcileOnce(deps, options);
    const wallMs = performance.now() - started;
    const rssPeakBytes = rss.stop();
    const since = (at: number | null) => (at === null ? null : at - started);
    return {
      wallMs,
      rssBeforeBytes,
      rssPeakBytes,
      report: {
        checked: report.checked,
        transitioned: report.transitioned,
        failed: report.failed,
        apiCalls: report.apiCalls,
        listPages: report.plan.listPages,
        singleGets: report.plan.singleGets,
        firstFailures: report.failures.slice(0, 3).map((failure) => `${failure.modelId}: ${failure.reason}`),
      },
      astria: { calls: astriaSpan.count, busyMs: astriaSpan.busyMs, lastAnswerAtMs: since(astriaSpan.lastEnd) },
      writes: { count: writeSpan.count, busyMs: writeSpan.busyMs, lastDoneAtMs: since(writeSpan.lastEnd) },
    };
  } finally {
    await client.close();
    await pool.end();
  }
}

process.once('message', (job: PassJob) => {
  run(job).then(
    (result) => process.send!(result, () => process.exit(0)),
    (error: unknown) => {
      console.error(error);
      process.exit(1);
    },
  );
});
