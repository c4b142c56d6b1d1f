/**
 * The fault matrix: the built CLI (`--once --json`) against the loopback simulated Astria while it
 * misbehaves in every way the client is meant to survive. For each fault:
 * - no crash, and the exit code of SPEC.md (0 when retries absorbed it, 3 when some models could not
 *   be checked, 1 for a rejected key);
 * - no model wrongly changed: every row is either exactly as seeded or in its one correct final state,
 *   with exactly one event per status change;
 * - one re-run without the fault exits 0 and leaves every row correct;
 * - the API key never reaches stdout or stderr, even at LOG_LEVEL=trace.
 *
 * Retries are real (backoff base 1 s, 4 attempts, 504 waits 4×), so each case injects a burst of two
 * faults at most per call path and the cases run concurrently, each on its own database and fake.
 */
import { afterAll, describe, it, type ExpectStatic } from 'vitest';
import { seedModels, type SeedModel } from '../../dev/host-schema.js';
import { startSimulatedAstria, type Fault, type SimulatedAstria, type SimulatedAstriaOptions } from '../../dev/simulated-astria.js';
import type { ModelStatus } from '../../src/status/rules.js';
import { runCli, type CliResult } from '../support/cli.js';
import { createTestDatabase, readModel, type ModelRow, type TestDatabase } from '../support/database.js';

const API_KEY = 'sd_fault_matrix_K3Y_9b1e2c77';
const HOUR = 3_600_000;
const ago = (ms: number) => new Date(Date.now() - ms);
const ahead = (ms: number) => new Date(Date.now() + ms);

interface Expected {
  status: ModelStatus;
  /** Checked on the final row when the status changed. */
  check?: (row: ModelRow, expect: ExpectStatic) => void;
}

interface Scenario {
  db: TestDatabase;
  astria: SimulatedAstria;
  env: Record<string, string>;
  seeded: Map<string, ModelRow>;
  expected: Map<string, Expected>;
  inFlight: string[];
}

const cleanups: (() => Promise<void>)[] = [];
afterAll(async () => {
  await Promise.allSettled(cleanups.map((cleanup) => cleanup()));
});

/**
 * Four in-flight models with a tune (trained, failed, training, started), one whose tune is gone
 * (404), and four rows the pass must never touch. `sparse` buries the in-flight tunes under 2,400
 * newer ones so the pass reads one list page and then one GET per model (faults hit the GETs);
 * otherwise the first list page holds them all.
 */
async function scenario(options: { sparse: boolean; astria?: Partial<SimulatedAstriaOptions>; env?: Record<string, string> }): Promise<Scenario> {
  const db = await createTestDatabase();
  const astria = await startSimulatedAstria({ apiKey: API_KEY, ...options.astria });
  cleanups.push(() => astria.close(), () => db.drop());

  const trainedAt = ago(5 * 60_000);
  const trained = astria.addTune({ trainedAt, startedTrainingAt: ago(HOUR) });
  const failed = astria.addTune({ status: 'failed', errorMessage: 'face not detected', startedTrainingAt: ago(HOUR) });
  const training = astria.addTune({ startedTrainingAt: ago(30 * 60_000), eta: ahead(30 * 60_000) });
  const started = astria.addTune({ startedTrainingAt: ago(60_000), eta: ahead(HOUR) });
  if (options.sparse) astria.addTunes(2_400);
  const goneTuneId = 999_999_999;

  const row = (id: string, tuneId: number, extra: Partial<SeedModel> = {}): SeedModel => ({
    id,
    status: 'TRAINING',
    trainingJobId: String(tuneId),
    createdAt: ago(2 * HOUR),
    updatedAt: ago(HOUR),
    progress: 10,
    estimatedTime: 30,
    ...extra,
  });
  await seedModels(db.pool, [
    row('m-trained', trained.id),
    row('m-failed', failed.id),
    row('m-training', training.id),
    row('m-started', started.id, { status: 'PROCESSING', progress: 0 }),
    row('m-gone', goneTuneId),
    // Never touched by a plain --once:
    row('x-ready', trained.id, { status: 'READY', progress: 100 }),
    row('x-error', trained.id, { status: 'ERROR', errorMessage: 'left for an operator' }),
    row('x-replicate', trained.id, { aiProvider: 'replicate' }),
    row('x-uploading', trained.id, { status: 'UPLOADING', progress: 0 }),
  ]);

  const expected = new Map<string, Expected>([
    [
      'm-trained',
      {
        status: 'READY',
        check: (r, expect) => {
          expect(r).toMatchObject({ progress: 100, modelUrl: String(trained.id), errorMessage: null, estimatedTime: null });
          expect(r.trainedAt?.toISOString()).toBe(trainedAt.toISOString());
        },
      },
    ],
    ['m-failed', { status: 'ERROR', check: (r, expect) => expect(r.errorMessage).toBe('Astria training failed: face not detected') }],
    ['m-training', { status: 'TRAINING' }],
    ['m-started', { status: 'TRAINING' }],
    ['m-gone', { status: 'ERROR', check: (r, expect) => expect(r.errorMessage).toBe(`Astria tune ${goneTuneId} not found`) }],
  ]);
  const seeded = new Map<string, ModelRow>();
  for (const { rows } of [await db.pool.query<{ id: string }>('SELECT id FROM ai_models ORDER BY id')]) {
    for (const { id } of rows) seeded.set(id, await readModel(db.pool, id));
  }
  for (const id of seeded.keys()) if (!expected.has(id)) expected.set(id, { status: seeded.get(id)!.status });

  const env = {
    DATABASE_URL: db.url,
    ASTRIA_API_KEY: API_KEY,
    ASTRIA_API_URL: astria.url,
    ASTRIA_MAX_RPS: '50',
    ASTRIA_CONCURRENCY: '4',
    ASTRIA_TIMEOUT: '5s',
    LOG_LEVEL: 'trace',
    ...options.env,
  };
  return { db, astria, env, seeded, expected, inFlight: [...expected.keys()].filter((id) => id.startsWith('m-')) };
}

interface Report {
  checked: number;
  transitioned: number;
  unchanged: number;
  failed: number;
  apiCalls: number;
  transitions: { modelId: string; from: string; to: string }[];
  failures: { modelId: string; reason: string }[];
}

function parseReport(result: CliResult, expect: ExpectStatic): Report {
  expect(result.signal, result.stderr).toBeNull();
  expect(result.stderr, 'a crash prints a stack').not.toMatch(/fatal:|Unhandled|TypeError|ReferenceError/);
  const lines = result.stdout.trim().split('\n');
  expect(lines, `stdout: ${result.stdout}\nstderr tail: ${result.stderr.slice(-2_000)}`).toHaveLength(1);
  return JSON.parse(lines[0]!) as Report;
}

function expectNoKey(result: CliResult, expect: ExpectStatic): void {
  expect(result.stdout.includes(API_KEY), 'API key in stdout').toBe(false);
  expect(result.stderr.includes(API_KEY), 'API key in stderr').toBe(false);
}

/**
 * Every row is either as seeded or in its correct final state; status changes carry exactly one event
 * each (to the right status), unchanged statuses none. With `final`, every row must be in its final state.
 */
async function expectConsistent(s: Scenario, expect: ExpectStatic, final: boolean): Promise<Set<string>> {
  const { rows: events } = await s.db.pool.query<{ model_id: string; from_status: string; to_status: string }>(
    `SELECT model_id, from_status, to_status FROM astria_reconciler.events ORDER BY seq`,
  );
  const done = new Set<string>();
  for (const [id, want] of s.expected) {
    const seed = s.seeded.get(id)!;
    const row = await readModel(s.db.pool, id);
    const mine = events.filter((event) => event.model_id === id);
    if (!id.startsWith('m-')) {
      expect(row, `${id} must never change`).toEqual(seed);
      expect(mine).toEqual([]);
      continue;
    }
    if (final) expect(row.status, id).toBe(want.status);
    else expect([seed.status, want.status], `${id} is ${row.status}`).toContain(row.status);
    if (row.status !== seed.status) {
      want.check?.(row, expect);
      expect(mine, `${id}: one event per status change`).toEqual([{ model_id: id, from_status: seed.status, to_status: row.status }]);
      expect(row.updatedAt.getTime()).toBeGreaterThan(seed.updatedAt.getTime());
    } else {
      expect(mine, `${id}: no event without a status change`).toEqual([]);
      // A progress-only update leaves updatedAt and never lowers progress.
      expect(row.updatedAt).toEqual(seed.updatedAt);
      expect(row.progress).toBeGreaterThanOrEqual(seed.progress);
      expect(row.progress).toBeLessThanOrEqual(99);
    }
    if (row.status === want.status) done.add(id);
  }
  return done;
}

/** Runs the faulted pass, checks it, then a clean re-run that must finish everything. */
async function runMatrixCase(
  s: Scenario,
  expect: ExpectStatic,
  expectation: { code: 0 | 1 | 3 | 'consistent'; failed?: number; afterFirst?: () => Promise<void> },
): Promise<{ first: CliResult; report: Report | null; firstMs: number }> {
  const started = Date.now();
  const first = await runCli(['--once', '--json'], s.env);
  const firstMs = Date.now() - started;
  expectNoKey(first, expect);
  // The faulted run logged (retries and failures at trace level): the key had its chance to leak.
  expect(first.stderr).not.toBe('');
  let report: Report | null = null;
  if (expectation.code === 1) {
    expect(first.code, first.stderr.slice(-2_000)).toBe(1);
    expect(first.stderr).toMatch(/Astria rejected the API key \(HTTP 401\); check ASTRIA_API_KEY/);
    expect(first.stdout).toBe('');
  } else {
    report = parseReport(first, expect);
    const code = expectation.code === 'consistent' ? (report.failed > 0 ? 3 : 0) : expectation.code;
    expect(first.code, JSON.stringify(report)).toBe(code);
    expect(report.failed > 0 ? 3 : 0).toBe(first.code);
    if (expectation.failed !== undefined) expect(report.failed).toBe(expectation.failed);
    expect(report.checked).toBe(s.inFlight.length);
    expect(report.transitioned + report.unchanged + report.failed).toBe(report.checked);
    for (const failure of report.failures) expect(s.inFlight).toContain(failure.modelId);
    expect(report.apiCalls).toBe(s.astria.stats.requests);
  }
  const done = await expectConsistent(s, expect, false);
  if (report) {
    // What the report says was applied is what the database holds.
    for (const transition of report.transitions) {
      expect(done.has(transition.modelId) || transition.to === 'TRAINING', transition.modelId).toBe(true);
    }
    for (const failure of report.failures) {
      const row = await readModel(s.db.pool, failure.modelId);
      expect(row.status, `${failure.modelId} could not be checked, so it is untouched`).toBe(s.seeded.get(failure.modelId)!.status);
    }
  }

  await expectation.afterFirst?.();
  s.astria.clearFaults();
  const second = await runCli(['--once', '--json'], s.env);
  expectNoKey(second, expect);
  const again = parseReport(second, expect);
  expect(second.code, JSON.stringify(again)).toBe(0);
  expect(again.failed).toBe(0);
  await expectConsistent(s, expect, true);
  return { first, report, firstMs };
}

const getFault = (fault: Fault): Fault => ({ endpoint: 'get', ...fault });

// The cases run at once, each starting the CLI twice with real backoffs: a generous bound for a
// loaded 2-core machine (a case that hangs still fails).
describe.concurrent('--once against a misbehaving Astria (built CLI, loopback fake)', { timeout: 120_000 }, () => {
  it('429 burst with Retry-After: the pause is honoured and the pass completes (exit 0)', async ({ expect }) => {
    const s = await scenario({ sparse: true });
    s.astria.injectFaults(getFault({ status: 429, headers: { 'retry-after': '1' } }), 2);
    const { firstMs } = await runMatrixCase(s, expect, { code: 0, failed: 0 });
    expect(s.astria.stats.byStatus[429]).toBe(2);
    expect(firstMs, 'Retry-After: 1 holds every request for a second').toBeGreaterThanOrEqual(1_000);
  });

  it('429 burst without Retry-After: exponential backoff absorbs it (exit 0)', async ({ expect }) => {
    const s = await scenario({ sparse: true });
    s.astria.injectFaults(getFault({ status: 429 }), 2);
    await runMatrixCase(s, expect, { code: 0, failed: 0 });
  });

  it('a real rate limit (maxRps 3, Retry-After 1) below the client ceiling: slows down, nothing lost', async ({ expect }) => {
    const s = await scenario({ sparse: true, astria: { maxRps: 3, retryAfterSeconds: 1 }, env: { ASTRIA_MAX_RPS: '20' } });
    const { report } = await runMatrixCase(s, expect, { code: 'consistent' });
    expect(s.astria.stats.byStatus[429] ?? 0).toBeGreaterThan(0);
    // The adaptive budget is meant to absorb this; record it if it did not.
    expect(report?.failed, 'the budget should adapt to a steady 3 rps limit').toBe(0);
  });

  for (const status of [500, 502, 503]) {
    it(`${status} burst: retried with backoff (exit 0)`, async ({ expect }) => {
      const s = await scenario({ sparse: true });
      s.astria.injectFaults(getFault({ status }), 2);
      await runMatrixCase(s, expect, { code: 0, failed: 0 });
      expect(s.astria.stats.byStatus[status]).toBe(2);
    });
  }

  it('504: waits longer before the retry, then completes (exit 0)', async ({ expect }) => {
    const s = await scenario({ sparse: true });
    s.astria.injectFaults(getFault({ status: 504 }), 1);
    const { firstMs } = await runMatrixCase(s, expect, { code: 0, failed: 0 });
    // 4 × the 0.5–1 s first backoff.
    expect(firstMs).toBeGreaterThanOrEqual(2_000);
  });

  it('hangs past ASTRIA_TIMEOUT: the request is abandoned and retried (exit 0)', async ({ expect }) => {
    const s = await scenario({ sparse: true, env: { ASTRIA_TIMEOUT: '500ms' } });
    s.astria.injectFaults(getFault({ hang: true }), 2);
    await runMatrixCase(s, expect, { code: 0, failed: 0 });
  });

  it('200 with a body that is not JSON: those models are reported, not guessed at (exit 3)', async ({ expect }) => {
    const s = await scenario({ sparse: true });
    s.astria.injectFaults(getFault({ status: 200, body: '{"id": 12, "trained_at": "2026-' }), 2);
    const { report } = await runMatrixCase(s, expect, { code: 3, failed: 2 });
    for (const failure of report!.failures) expect(failure.reason).toMatch(/malformed JSON/);
  });

  it('200 with JSON that is not a tune: reported as invalid (exit 3)', async ({ expect }) => {
    const s = await scenario({ sparse: true });
    s.astria.injectFaults(getFault({ status: 200, body: '{"tune": {"id": "twelve"}, "trained_at": 5}' }), 1);
    const { report } = await runMatrixCase(s, expect, { code: 3, failed: 1 });
    expect(report!.failures[0]!.reason).toMatch(/invalid tune body/);
  });

  it('truncated bodies (connection cut mid-body): retried (exit 0)', async ({ expect }) => {
    const s = await scenario({ sparse: true });
    s.astria.injectFaults(getFault({ truncate: true }), 2);
    await runMatrixCase(s, expect, { code: 0, failed: 0 });
  });

  it('the tune list answers garbage or is cut: falls back to single GETs (exit 0)', async ({ expect }) => {
    const s = await scenario({ sparse: false });
    s.astria.injectFaults({ endpoint: 'list', status: 200, body: '[{"id": 1000, "trai' }, 1);
    const { report } = await runMatrixCase(s, expect, { code: 0, failed: 0 });
    expect(s.astria.stats.get).toBeGreaterThanOrEqual(s.inFlight.length);
    expect(report!.failed).toBe(0);
  });

  it('503 then a truncated page on the tune list: retried, then the list scan completes (exit 0)', async ({ expect }) => {
    const s = await scenario({ sparse: false });
    s.astria.injectFaults({ endpoint: 'list', status: 503 }, 1);
    s.astria.injectFaults({ endpoint: 'list', truncate: true }, 1);
    await runMatrixCase(s, expect, { code: 0, failed: 0 });
  });

  it('401 mid-run: exits 1 naming ASTRIA_API_KEY, what was applied is correct, a re-run finishes', async ({ expect }) => {
    const s = await scenario({ sparse: true, env: { ASTRIA_CONCURRENCY: '1' } });
    let gets = 0;
    s.astria.onRequest((request) => {
      // From the third GET on, the key is "revoked".
      if (request.endpoint === 'get' && ++gets === 3) s.astria.injectFaults({ status: 401 }, 1_000);
    });
    await runMatrixCase(s, expect, {
      code: 1,
      afterFirst: async () => {
        const { rows } = await s.db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM astria_reconciler.events`);
        // Of the two models checked before the key was refused, m-failed was applied; m-gone's 404 waits for
        // the not-found guard, which only a pass that finishes applies. The rest were left alone.
        expect(rows[0]!.n).toBe(1);
      },
    });
  });
});
