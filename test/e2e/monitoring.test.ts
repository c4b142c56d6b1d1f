import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startDaemon, type RunningDaemon } from '../support/daemon.js';

const API_KEY = 'sd_monitoring_test';
const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');

interface Panel {
  title: string;
  targets?: { expr: string }[];
}

/** The metric names a PromQL expression reads (the exporter's; Prometheus' own `up` aside). */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\b(?:astria_reconciler|process|nodejs)_[a-z0-9_]+\b/g)].map((match) => match[0]);
}

let db: TestDatabase;
let astria: SimulatedAstria;
let daemon: RunningDaemon;
let exposed: Set<string>;
/** The label blocks (`a="x",b="y"`) of every exposed sample, by sample name. */
let exposedLabels: Map<string, string[]>;

beforeAll(async () => {
  db = await createTestDatabase();
  astria = await startSimulatedAstria({ apiKey: API_KEY });
  daemon = await startDaemon({ DATABASE_URL: db.url, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url, LOG_LEVEL: 'warn' });
  const text = await (await fetch(`${daemon.url}/metrics`)).text();
  // Sample names as exposed, histogram series (_bucket, _sum, _count) included.
  const samples = text.split('\n').filter((line) => line && !line.startsWith('#'));
  exposed = new Set(samples.map((line) => /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)![0]));
  exposedLabels = new Map();
  for (const [, name, labels] of samples.map((line) => /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?/.exec(line)!)) {
    exposedLabels.set(name!, [...(exposedLabels.get(name!) ?? []), labels ?? '']);
  }
}, 60_000);

afterAll(async () => {
  daemon?.kill('SIGTERM');
  await daemon?.done;
  await astria?.close();
  await db?.drop();
});

describe('shipped monitoring against a live /metrics of the built daemon', () => {
  it('every metric the Grafana dashboard queries exists', () => {
    const dashboard = JSON.parse(read('deploy/grafana/dashboard.json')) as { panels: Panel[] };
    const queried = dashboard.panels.flatMap((panel) => (panel.targets ?? []).map((target) => ({ panel: panel.title, expr: target.expr })));
    expect(queried.length).toBeGreaterThan(15);
    const missing = queried.flatMap(({ panel, expr }) => metricNames(expr).filter((name) => !exposed.has(name)).map((name) => `${panel}: ${name}`));
    expect(missing).toEqual([]);
    // A matcher on a label (or value) the metric does not have selects nothing: the panel reads 0, not an error.
    const unmatched = queried.flatMap(({ panel, expr }) =>
      [...expr.matchAll(/\b([a-z_:][a-z0-9_:]*)\{([^}]*)\}/g)].flatMap(([, name, matchers]) =>
        [...matchers!.matchAll(/([a-z_]+)="([^"]*)"/g)]
          .filter(([, label]) => label !== 'job')
          .filter(([pair]) => !(exposedLabels.get(name!) ?? []).some((labels) => labels.split(',').includes(pair!)))
          .map(([pair]) => `${panel}: ${name}{${pair}}`),
      ),
    );
    expect(unmatched).toEqual([]);
    expect(queried.find(({ panel }) => panel === 'Recovered (24h)')?.expr).toMatch(/source="reconciler".*to="READY"/);
    // The panels the issue asks for.
    for (const name of [
      'astria_reconciler_transitions_total',
      'astria_reconciler_lost_callbacks_total',
      'astria_reconciler_detection_lag_seconds_bucket',
      'astria_reconciler_astria_requests_total',
      'astria_reconciler_inflight_models',
      'astria_reconciler_is_leader',
      'astria_reconciler_outbox_pending',
    ]) {
      expect(queried.some(({ expr }) => metricNames(expr).includes(name)), name).toBe(true);
    }
  });

  it('every metric the alert rules use exists', () => {
    const rules = read('deploy/prometheus/alerts.yml');
    const exprs = [...rules.matchAll(/^\s+expr: (.+)$/gm)].map((match) => match[1]!);
    expect(exprs).toHaveLength(10);
    const missing = exprs.flatMap((expr) => metricNames(expr)).filter((name) => !exposed.has(name));
    expect(missing).toEqual([]);
  });
});
