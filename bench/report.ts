/** The benchmark's figures per scenario, the table they print as, and the targets they are held to. */
import type { PassRun } from './pass-worker.js';

export const RATE_LIMIT_RPS = 20;
const MB = 1024 * 1024;
const RSS_LIMIT_MB = 200;

export interface Measurement {
  name: string;
  stuck: number;
  accountTunes: number;
  recovered: number;
  /** Requests the simulated Astria served (its own count). */
  calls: number;
  listCalls: number;
  getCalls: number;
  rateLimited: number;
  /** ceil(account tunes with id >= oldest stuck tune ÷ 120). */
  floorCalls: number;
  /** Shortest span covering 21 consecutive arrivals: under 1000 ms means 21 in one window, a 429. */
  tightestWindowMs: number | null;
  /** Sum over arrival gaps of what exceeds the 50 ms pacing: time not spent at the full rate. */
  pacingLossMs: number;
  run: PassRun;
}

export interface TargetResult {
  label: string;
  pass: boolean;
  actual: string;
}

const perModel = (m: Measurement) => m.calls / Math.max(1, m.recovered);
const boundMs = (m: Measurement) => (m.calls / RATE_LIMIT_RPS) * 1000;
const wallRatio = (m: Measurement) => m.run.wallMs / Math.max(1, boundMs(m));
const floorRatio = (m: Measurement) => m.calls / Math.max(1, m.floorCalls);
const peakMb = (m: Measurement) => m.run.rssPeakBytes / MB;

const fixed = (value: number, digits: number) => value.toFixed(digits);
const seconds = (ms: number | null) => (ms === null ? '-' : fixed(ms / 1000, 2));
const megabytes = (bytes: number) => fixed(bytes / MB, 1);

const ROWS: [string, (m: Measurement) => string][] = [
  ['account tunes', (m) => String(m.accountTunes)],
  ['stuck models (N)', (m) => String(m.stuck)],
  ['recovered (now READY)', (m) => String(m.recovered)],
  ['failed checks (pass report)', (m) => String(m.run.report.failed)],
  ['Astria calls (served)', (m) => String(m.calls)],
  ['  list pages / single GETs', (m) => `${m.listCalls} / ${m.getCalls}`],
  ['calls per recovered model', (m) => fixed(perModel(m), 4)],
  ['list-scan floor (calls)', (m) => String(m.floorCalls)],
  ['floor per model', (m) => fixed(m.floorCalls / Math.max(1, m.stuck), 4)],
  ['calls ÷ floor', (m) => fixed(floorRatio(m), 2)],
  ['429 responses', (m) => String(m.rateLimited)],
  [`tightest ${RATE_LIMIT_RPS + 1} arrivals span (ms)`, (m) => (m.tightestWindowMs === null ? '-' : fixed(m.tightestWindowMs, 1))],
  ['wall time (s)', (m) => seconds(m.run.wallMs)],
  ['rate bound calls÷20/s (s)', (m) => seconds(boundMs(m))],
  ['wall ÷ bound', (m) => fixed(wallRatio(m), 2)],
  ['arrival gaps beyond 50 ms, sum (s)', (m) => seconds(m.pacingLossMs)],
  ['last Astria answer at (s)', (m) => seconds(m.run.astria.lastAnswerAtMs)],
  ['last DB write done at (s)', (m) => seconds(m.run.writes.lastDoneAtMs)],
  ['DB writes / mean ms each', (m) => `${m.run.writes.count} / ${fixed(m.run.writes.busyMs / Math.max(1, m.run.writes.count), 1)}`],
  ['RSS before pass (MB)', (m) => megabytes(m.run.rssBeforeBytes)],
  ['peak RSS during pass (MB)', (m) => megabytes(m.run.rssPeakBytes)],
  ['RSS growth during pass (MB)', (m) => megabytes(m.run.rssPeakBytes - m.run.rssBeforeBytes)],
];

/** Metrics down, scenarios across. */
export function formatTable(measurements: Measurement[]): string {
  const header = ['', ...measurements.map((m) => m.name)];
  const body = ROWS.map(([label, value]) => [label, ...measurements.map(value)]);
  const rows = [header, ...body];
  const widths = header.map((_, column) => Math.max(...rows.map((row) => row[column]!.length)));
  const line = (row: string[]) => row.map((cell, column) => (column === 0 ? cell.padEnd(widths[column]!) : cell.padStart(widths[column]!))).join('  ');
  const rule = widths.map((width) => '-'.repeat(width)).join('  ');
  return [line(header), rule, ...body.map(line)].join('\n');
}

/** See `Measurement.tightestWindowMs`. */
export function tightestWindow(arrivals: number[]): number | null {
  let tightest: number | null = null;
  for (let index = RATE_LIMIT_RPS; index < arrivals.length; index += 1) {
    const span = arrivals[index]! - arrivals[index - RATE_LIMIT_RPS]!;
    tightest = tightest === null ? span : Math.min(tightest, span);
  }
  return tightest;
}

/** See `Measurement.pacingLossMs`. */
export function pacingLoss(arrivals: number[]): number {
  const spacing = 1000 / RATE_LIMIT_RPS;
  let loss = 0;
  for (let index = 1; index < arrivals.length; index += 1) loss += Math.max(0, arrivals[index]! - arrivals[index - 1]! - spacing);
  return loss;
}

function target(label: string, pass: boolean, actual: string): TargetResult {
  return { label, pass, actual };
}

/** Every scenario must have recovered all of its stuck models, whatever the plan. */
export function correctnessTargets(measurements: Measurement[]): TargetResult[] {
  return measurements.map((m) => target(`${m.name}: all ${m.stuck} stuck models READY`, m.recovered === m.stuck, `${m.recovered} READY`));
}

/** Issue 2: a 3,000-model backfill among 9,000 tunes. */
export function issue2Targets(m: Measurement): TargetResult[] {
  return [
    target(`#2 ${m.name}: ≤ 0.1 calls per recovered model`, perModel(m) <= 0.1, fixed(perModel(m), 4)),
    target(`#2 ${m.name}: zero 429s`, m.rateLimited === 0, String(m.rateLimited)),
    target(`#2 ${m.name}: wall ≤ 1.5 × calls÷20/s`, wallRatio(m) <= 1.5, `${fixed(wallRatio(m), 2)}×`),
    target(`#2 ${m.name}: peak RSS < ${RSS_LIMIT_MB} MB`, peakMb(m) < RSS_LIMIT_MB, `${fixed(peakMb(m), 1)} MB`),
  ];
}

/** Issue 5: list-scan efficiency at each size, and memory that does not scale with the backfill. */
export function issue5Targets(small: Measurement, large: Measurement): TargetResult[] {
  const perSize = (m: Measurement) => [
    target(`#5 ${m.name}: calls/model ≤ 1.2 × floor/model`, floorRatio(m) <= 1.2, `${fixed(floorRatio(m), 2)}×`),
    target(`#5 ${m.name}: zero 429s`, m.rateLimited === 0, String(m.rateLimited)),
    target(`#5 ${m.name}: wall ≤ 1.2 × calls÷20/s`, wallRatio(m) <= 1.2, `${fixed(wallRatio(m), 2)}×`),
  ];
  const growth = peakMb(large) / peakMb(small);
  return [
    ...perSize(small),
    ...perSize(large),
    target(`#5 ${large.name}: peak RSS < ${RSS_LIMIT_MB} MB`, peakMb(large) < RSS_LIMIT_MB, `${fixed(peakMb(large), 1)} MB`),
    target(`#5 peak RSS ${small.name} → ${large.name} grows < 1.5×`, growth < 1.5, `${fixed(growth, 2)}×`),
  ];
}

export function formatTargets(results: TargetResult[]): string {
  const width = Math.max(...results.map((result) => result.label.length));
  return results.map((result) => `${result.pass ? 'PASS' : 'FAIL'}  ${result.label.padEnd(width)}  (${result.actual})`).join('\n');
}
