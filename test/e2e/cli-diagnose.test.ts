/**
 * `astria-reconciler diagnose` (the built CLI) on a real database whose records were written by the
 * product's own paths: the callback's and the reconciler's (`applyObservedTune`), the status service's
 * outbox and the dispatcher delivering it to a loopback receiver; Astria is the loopback simulation.
 */
import { hostname } from 'node:os';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tuneSchema } from '../../src/astria/tune.js';
import { createDispatcher } from '../../src/broadcast/dispatcher.js';
import { createHttpTransport } from '../../src/broadcast/http.js';
import type { Clock } from '../../src/clock.js';
import { seedModels } from '../../dev/host-schema.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { createLogger } from '../../src/log.js';
import { applyObservedTune } from '../../src/status/apply-tune.js';
import { createStatusService } from '../../src/status/service.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { eventually, freePort, startReceiver } from '../support/receiver.js';

const API_KEY = 'sd_diagnose_key';
const CALLBACK_SECRET = 'callback-secret-never-printed';
const BROADCAST_SECRET = 'diagnose-broadcast-secret';
const MINUTE = 60_000;

let db: TestDatabase;
let astria: SimulatedAstria;
const tunes: Record<string, number> = {};

/** A clock standing still at `instant`: the write lands exactly there. */
const stoppedAt = (instant: number): Clock => ({ now: () => instant, sleep: async () => undefined });
const tuneOf = (id: number) => tuneSchema.parse(astria.getTune(id));

/** Delivers the outbox with a dispatcher until `done`, then stops it. */
async function dispatchUntil(url: string, done: () => boolean | Promise<boolean>, what: string): Promise<void> {
  const transport = createHttpTransport({ url, secret: BROADCAST_SECRET, timeoutMs: 2_000 });
  const controller = new AbortController();
  const dispatcher = createDispatcher({ pool: db.pool, transports: [transport], log: createLogger('silent'), pollIntervalMs: 50, backoffBaseMs: 50, backoffCapMs: 200, deadAfterAttempts: 1 });
  const running = dispatcher.run(controller.signal);
  try {
    await eventually(done, 20_000, what);
  } finally {
    controller.abort();
    await running;
    await transport.close();
  }
}

const deliveryOf = async (modelId: string) =>
  (
    await db.pool.query<{ dead: boolean; failed: boolean }>(
      `SELECT d.dead_at IS NOT NULL AS dead, d.last_error IS NOT NULL AS failed
         FROM astria_reconciler.deliveries d JOIN astria_reconciler.events e ON e.seq = d.event_seq WHERE e.model_id = $1`,
      [modelId],
    )
  ).rows[0];

beforeAll(async () => {
  db = await createTestDatabase();
  astria = await startSimulatedAstria({ apiKey: API_KEY });
  await ensureOwnSchema(db.pool, 'astria_reconciler');
  // Callbacks have been recorded for a day: a recovery 15 minutes ago is judged, not "from before".
  await db.pool.query(`UPDATE astria_reconciler.callback_recording SET started_at = now() - interval '1 day'`);
  const now = Date.now();
  const trainedTune = (minutesAgo: number) => astria.addTune({ createdAt: new Date(now - (minutesAgo + 30) * MINUTE), startedTrainingAt: new Date(now - (minutesAgo + 25) * MINUTE), trainedAt: new Date(now - minutesAgo * MINUTE) }).id;
  tunes.lost = trainedTune(20);
  tunes.applied = trainedTune(5);
  tunes.dead = trainedTune(5);
  tunes.pending = trainedTune(5);
  tunes.delivered = trainedTune(5);
  tunes.behind = trainedTune(8);
  tunes.training = astria.addTune({ startedTrainingAt: new Date(now - 5 * MINUTE), eta: new Date(now + 60 * MINUTE) }).id;
  tunes.failed = astria.addTune({ startedTrainingAt: new Date(now - 5 * MINUTE) }).id;
  astria.fail(tunes.failed, 'GPU exploded');
  astria.getTune(tunes.behind)!.callback = `https://app.example/api/webhooks/astria?secret=${CALLBACK_SECRET}&model=m-behind`;

  const hourAgo = new Date(now - 60 * MINUTE);
  await seedModels(db.pool, [
    ...['lost', 'applied', 'dead', 'pending', 'delivered', 'behind', 'failed'].map((name) => ({ id: `m-${name}`, status: 'TRAINING' as const, trainingJobId: String(tunes[name]), updatedAt: hourAgo })),
    { id: 'm-training', status: 'TRAINING', trainingJobId: String(tunes.training), updatedAt: new Date(now - 5 * MINUTE), estimatedTime: 60 },
    { id: 'm-orphan', status: 'TRAINING', trainingJobId: null, updatedAt: hourAgo },
    { id: 'm-replicate', status: 'TRAINING', trainingJobId: 'r8-abc', aiProvider: 'replicate', updatedAt: hourAgo },
  ]);

  // The callback never came: the reconciler applied READY 15 minutes ago (5 after Astria finished).
  await applyObservedTune({ pool: db.pool, service: createStatusService({ pool: db.pool, clock: stoppedAt(now - 15 * MINUTE) }), tune: tuneOf(tunes.lost), source: 'reconciler', now: new Date(now - 15 * MINUTE) });
  // The database stamped that write now: it happened 15 minutes ago, as its writer's clock says.
  await db.pool.query(`UPDATE astria_reconciler.events SET recorded_at = occurred_at WHERE model_id = 'm-lost'`);
  // The callback came and applied READY.
  await applyObservedTune({ pool: db.pool, tune: tuneOf(tunes.applied), source: 'webhook' });
  // The reconciler's failure.
  await applyObservedTune({ pool: db.pool, tune: tuneOf(tunes.failed), source: 'reconciler' });

  // Broadcast over http: one delivery the receiver rejects (parked after one attempt), one it takes, one to a receiver that is away.
  const broadcasting = createStatusService({ pool: db.pool, transports: ['pg', 'http'] });
  await applyObservedTune({ pool: db.pool, service: broadcasting, tune: tuneOf(tunes.dead), source: 'webhook' });
  const rejecting = await startReceiver({ secret: BROADCAST_SECRET, status: 400 });
  try {
    await dispatchUntil(rejecting.url, async () => (await deliveryOf('m-dead'))?.dead === true, 'the rejected delivery parked');
  } finally {
    await rejecting.close();
  }
  await applyObservedTune({ pool: db.pool, service: broadcasting, tune: tuneOf(tunes.delivered), source: 'webhook' });
  const accepting = await startReceiver({ secret: BROADCAST_SECRET });
  try {
    await dispatchUntil(accepting.url, () => accepting.state.accepted.length === 1, 'the delivery taken');
  } finally {
    await accepting.close();
  }
  await applyObservedTune({ pool: db.pool, service: broadcasting, tune: tuneOf(tunes.pending), source: 'webhook' });
  await dispatchUntil(`http://127.0.0.1:${await freePort()}/broadcast`, async () => (await deliveryOf('m-pending'))?.failed === true, 'a failed try to the absent receiver');
}, 60_000);

afterAll(async () => {
  await astria?.close();
  await db?.drop();
});

const env = () => ({ DATABASE_URL: db.url, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url });

async function diagnose(id: string, extra: string[] = [], environment: Record<string, string> = env()) {
  const [result, human] = await Promise.all([runCli(['diagnose', id, '--json', ...extra], environment), runCli(['diagnose', id, ...extra], environment)]);
  expect(human.code).toBe(result.code);
  expect(result.stderr).toBe('');
  return { code: result.code, json: JSON.parse(result.stdout), text: human.stdout };
}

// Each case starts the CLI a few times: generous on a loaded machine.
describe('astria-reconciler diagnose (built CLI, real database)', { timeout: 120_000 }, () => {
  it('callback lost, recovered by the reconciler: settled, names the callback as the broken link', async () => {
    const { code, json, text } = await diagnose('m-lost');
    expect(code).toBe(0);
    expect(json.verdict.code).toBe('callback_lost_recovered');
    expect(json.verdict.message).toMatch(new RegExp(`no arrival recorded for tune ${tunes.lost} within 10m`));
    expect(json.verdict.message).toMatch(/the reconciler applied READY 5m 00s after Astria finished/);
    expect(json.verdict.next).toMatch(/callback URL/);
    expect(json.row).toMatchObject({ id: 'm-lost', status: 'READY', progress: 100, trainingJobId: String(tunes.lost) });
    expect(json.astria).toMatchObject({ state: 'trained', id: tunes.lost });
    expect(json.timeline.map((entry: { kind: string }) => entry.kind)).toEqual(['astria_created', 'astria_started', 'astria_finished', 'transition']);
    expect(json.timeline[3]).toMatchObject({ source: 'reconciler', from: 'TRAINING', to: 'READY', lagSeconds: 300 });
    expect(text).toMatch(/Verdict: callback_lost_recovered/);
    expect(text).toMatch(/status READY\s+progress 100%/);
  });

  it('callback arrived and applied: settled, points at the browser', async () => {
    const { code, json, text } = await diagnose('m-applied');
    expect(code).toBe(0);
    expect(json.verdict).toMatchObject({ code: 'callback_applied', next: expect.stringMatching(/browser's stream/) });
    const arrival = json.timeline.find((entry: { kind: string }) => entry.kind === 'callback_arrived');
    // This test's process applied it: the arrival names it.
    const receiver = `${hostname()}/${process.pid}`;
    expect(arrival).toMatchObject({ applied: true, receiver, refused: 0 });
    expect(json.timeline.findIndex((entry: { kind: string }) => entry.kind === 'transition')).toBeGreaterThan(json.timeline.indexOf(arrival));
    expect(text).toContain(`arrived at ${receiver}; applied TRAINING -> READY`);
  });

  it('applied and delivered to every transport: settled, the delivery named', async () => {
    const { code, json } = await diagnose('m-delivered');
    expect(code).toBe(0);
    expect(json.verdict.code).toBe('callback_applied');
    expect(json.verdict.message).toMatch(/every delivery of its events done by \d{4}-/);
    const delivery = json.timeline.at(-1);
    expect(delivery).toMatchObject({ kind: 'delivery', transport: 'http', state: 'delivered', attempts: 1, lastError: null });
    // One attempt: first and last try are the same recorded instant, at or after the event was queued.
    expect(delivery.firstTry).toBe(delivery.lastTry);
    expect(Date.parse(delivery.firstTry)).toBeGreaterThanOrEqual(Date.parse(delivery.at));
  });

  it('the same model found by its tune id', async () => {
    const { code, json } = await diagnose(String(tunes.applied));
    expect(code).toBe(0);
    expect(json).toMatchObject({ id: 'm-applied', verdict: { code: 'callback_applied' } });
  });

  it('delivery dead: exit 3, the receiver answer and requeue-dead named', async () => {
    const { code, json, text } = await diagnose('m-dead');
    expect(code).toBe(3);
    expect(json.verdict.code).toBe('delivery_dead');
    expect(json.verdict.message).toMatch(/http delivery of the READY event dead since .* after 1 attempt \(HTTP 400/);
    expect(json.verdict.next).toMatch(/requeue-dead/);
    expect(json.timeline.find((entry: { kind: string }) => entry.kind === 'delivery')).toMatchObject({ transport: 'http', state: 'dead', attempts: 1, lastError: expect.stringMatching(/HTTP 400/) });
    expect(text).toMatch(/Verdict: delivery_dead/);
  });

  it('delivery pending with the receiver away: exit 3', async () => {
    const { code, json } = await diagnose('m-pending');
    expect(code).toBe(3);
    expect(json.verdict.code).toBe('delivery_pending');
    expect(json.verdict.next).toMatch(/receiver is away/);
    const delivery = json.timeline.find((entry: { kind: string }) => entry.kind === 'delivery');
    expect(delivery).toMatchObject({ state: 'pending', lastError: expect.any(String), firstTry: expect.any(String), lastTry: expect.any(String) });
    // Still pending, yet its last try is known: the dispatcher recorded it.
    expect(Date.parse(delivery.lastTry)).toBeGreaterThanOrEqual(Date.parse(delivery.firstTry));
  });

  it('still training: exit 0 with Astria eta; without Astria, judged by the app estimate', async () => {
    const asked = await diagnose('m-training');
    expect(asked.code).toBe(0);
    expect(asked.json.verdict.code).toBe('training');
    expect(asked.json.verdict.message).toMatch(/Astria still training \(eta in \d+m \d+s\)/);
    expect(asked.json.astria).toMatchObject({ state: 'training', eta: expect.any(String) });

    const offline = await diagnose('m-training', ['--no-astria']);
    expect(offline.code).toBe(0);
    expect(offline.json).toMatchObject({ astria: null, verdict: { code: 'training' } });
    expect(offline.text).toMatch(/Astria: not asked/);
  });

  it('finished at Astria, applied by nobody: exit 3; the callback URL shown without its secret', async () => {
    const { code, json, text } = await diagnose('m-behind');
    expect(code).toBe(3);
    expect(json.verdict.code).toBe('not_applied');
    expect(json.verdict.message).toMatch(new RegExp(`no callback arrived for tune ${tunes.behind}`));
    expect(json.astria.callback).toBe('https://app.example/api/webhooks/astria?secret=…&model=…');
    expect(JSON.stringify(json) + text).not.toContain(CALLBACK_SECRET);
    expect(JSON.stringify(json) + text).not.toContain(API_KEY);
  });

  it('failed: settled with the failure', async () => {
    const { code, json } = await diagnose('m-failed');
    expect(code).toBe(0);
    expect(json.verdict.code).toBe('failed');
    expect(json.verdict.message).toMatch(/GPU exploded/);
    expect(json.astria).toMatchObject({ state: 'failed', status: 'failed', errorMessage: 'GPU exploded' });
  });

  it('orphan (no tune id) and not ours (replicate)', async () => {
    const orphan = await diagnose('m-orphan');
    expect(orphan.code).toBe(3);
    expect(orphan.json.verdict.code).toBe('orphan');
    const replicate = await diagnose('m-replicate');
    expect(replicate.code).toBe(0);
    expect(replicate.json.verdict).toMatchObject({ code: 'not_ours', message: expect.stringMatching(/aiProvider is replicate/) });
    expect(replicate.json.astria).toBeNull();
  });

  it('an unknown id says so and suggests what it could be (exit 2)', async () => {
    const words = await diagnose('m-lo');
    expect(words.code).toBe(2);
    expect(words.json.verdict.code).toBe('unknown_id');
    expect(words.json.verdict.next).toMatch(/model ids close to it: m-lost/);
    const digits = await diagnose('987654321');
    expect(digits.code).toBe(2);
    expect(digits.json.verdict.next).toMatch(/no model trains tune 987654321.*no generations table/);
    expect(digits.text).toMatch(/Verdict: unknown_id/);
  });

  it('--stuck lists the broken ones, newest first, bounded by --limit', async () => {
    const all = await runCli(['diagnose', '--stuck', '--json'], { DATABASE_URL: db.url });
    expect(all.code).toBe(3);
    const listed = JSON.parse(all.stdout) as { items: { id: string; code: string }[]; more: boolean };
    expect(Object.fromEntries(listed.items.map((item) => [item.id, item.code]))).toEqual({
      'm-dead': 'delivery_dead',
      'm-pending': 'delivery_pending',
      'm-orphan': 'orphan',
      'm-behind': 'overdue',
    });
    expect(listed.items.slice(0, 2).map((item) => item.id).sort()).toEqual(['m-dead', 'm-pending']);
    expect(listed.more).toBe(false);

    const one = await runCli(['diagnose', '--stuck', '--limit', '1'], { DATABASE_URL: db.url });
    expect(one.code).toBe(3);
    expect(one.stdout.trim().split('\n')).toHaveLength(2);
    expect(one.stdout).toMatch(/more not shown/);
  });

  it('needs nothing but reading: a role that may only SELECT diagnoses, and --stuck too', async () => {
    const role = `diag_reader_${Date.now()}`;
    await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
    try {
      await db.pool.query(`GRANT USAGE ON SCHEMA astria_reconciler TO ${role}`);
      await db.pool.query(`GRANT SELECT ON ALL TABLES IN SCHEMA astria_reconciler TO ${role}`);
      await db.pool.query(`GRANT SELECT ON ai_models TO ${role}`);
      const url = new URL(db.url);
      url.username = role;
      url.password = 'pw';
      const environment = { ...env(), DATABASE_URL: url.toString() };
      const { code, json } = await diagnose('m-dead', [], environment);
      expect(code).toBe(3);
      expect(json.verdict.code).toBe('delivery_dead');
      expect((await runCli(['diagnose', '--stuck'], { DATABASE_URL: url.toString() })).code).toBe(3);
    } finally {
      // Roles outlive the test database: leave none behind on a shared server.
      await db.pool.query(`DROP OWNED BY ${role}`);
      await db.pool.query(`DROP ROLE ${role}`);
    }
  });

  // After the unknown-id case, which expects no generations table.
  it('a generation, by its id or its Astria prompt id, once the app has a generations table', async () => {
    await db.pool.query(`CREATE TABLE generations (id text PRIMARY KEY, "userId" text NOT NULL, "jobId" text, status text NOT NULL)`);
    await db.pool.query(`INSERT INTO generations VALUES ('g-done', 'user-1', '555001', 'COMPLETED'), ('g-running', 'user-1', '555002', 'PROCESSING')`);
    const done = await diagnose('g-done');
    expect(done.code).toBe(0);
    expect(done.json).toMatchObject({ kind: 'generation', id: 'g-done', verdict: { code: 'generation_completed' } });
    const byPrompt = await diagnose('555002');
    expect(byPrompt.code).toBe(0);
    expect(byPrompt.json).toMatchObject({ kind: 'generation', id: 'g-running', row: { jobId: '555002', status: 'PROCESSING' }, verdict: { code: 'generation_in_flight' } });
    // A model id still comes first.
    expect((await diagnose('m-applied')).json.kind).toBe('model');
  });

  it('a database it cannot use: exit 1, the password not printed', async () => {
    const result = await runCli(['diagnose', 'm-lost'], { DATABASE_URL: `postgresql://postgres:hunter2@127.0.0.1:${await freePort()}/nowhere` });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/check DATABASE_URL/);
    expect(result.stdout + result.stderr).not.toContain('hunter2');
  });

  it('usage errors exit 2', async () => {
    const usages = [['diagnose'], ['diagnose', '--stuck', '--limit', '0'], ['diagnose', 'a', 'b'], ['report', '--stuck']];
    const results = await Promise.all(usages.map((args) => runCli(args, { DATABASE_URL: db.url })));
    expect(results.map((result) => result.code)).toEqual([2, 2, 2, 2]);
    expect(results[0]!.stderr).toMatch(/diagnose needs a model id or tune id/);
  });
});
