/**
 * `astria-reconciler diagnose` (the built CLI) on a real database whose records were written by the
 * product's own paths: the callback's and the reconciler's (`applyObservedTune`, `applyObservedPrompt`),
 * the status service's outbox and the dispatcher delivering it to a loopback receiver; Astria is the
 * loopback simulation. Models first, on a database without a `generations` table; then generations
 * (image prompts) on one with the app's table.
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
import { applyObservedPrompt } from '../../src/status/apply-prompt.js';
import { applyObservedTune } from '../../src/status/apply-tune.js';
import { promptSchema } from '../../src/astria/prompt.js';
import { createStatusService } from '../../src/status/service.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { GENERATIONS_SCHEMA_SQL, seedGenerations } from '../support/generations-schema.js';
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

/** Delivers the outbox of `database` with a dispatcher until `done`, then stops it. */
async function dispatchUntil(url: string, done: () => boolean | Promise<boolean>, what: string, database: TestDatabase = db): Promise<void> {
  const transport = createHttpTransport({ url, secret: BROADCAST_SECRET, timeoutMs: 2_000 });
  const controller = new AbortController();
  const dispatcher = createDispatcher({ pool: database.pool, transports: [transport], log: createLogger('silent'), pollIntervalMs: 50, backoffBaseMs: 50, backoffCapMs: 200, deadAfterAttempts: 1 });
  const running = dispatcher.run(controller.signal);
  try {
    await eventually(done, 20_000, what);
  } finally {
    controller.abort();
    await running;
    await transport.close();
  }
}

/** The delivery of the event of a model (or of a generation: the row its event names). */
const deliveryOf = async (id: string, database: TestDatabase = db) =>
  (
    await database.pool.query<{ dead: boolean; failed: boolean }>(
      `SELECT d.dead_at IS NOT NULL AS dead, d.last_error IS NOT NULL AS failed
         FROM astria_reconciler.deliveries d JOIN astria_reconciler.events e ON e.seq = d.event_seq
        WHERE CASE e.kind WHEN 'prompt' THEN e.generation_id ELSE e.model_id END = $1`,
      [id],
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

const env = (database: TestDatabase = db) => ({ DATABASE_URL: database.url, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url });

/** `diagnose <id>` run twice, `--json` and for people: every diagnosis printed (one JSON line each), and the text. */
async function diagnoseAll(id: string, extra: string[] = [], environment: Record<string, string> = env()) {
  const [result, human] = await Promise.all([runCli(['diagnose', id, '--json', ...extra], environment), runCli(['diagnose', id, ...extra], environment)]);
  expect(human.code).toBe(result.code);
  expect(result.stderr).toBe('');
  return { code: result.code, all: result.stdout.trim().split('\n').map((line) => JSON.parse(line)), text: human.stdout };
}

/** `diagnose <id>` naming one row. */
async function diagnose(id: string, extra: string[] = [], environment: Record<string, string> = env()) {
  const { code, all, text } = await diagnoseAll(id, extra, environment);
  expect(all).toHaveLength(1);
  return { code, json: all[0], text };
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
    expect(words.json.verdict.next).toMatch(/ids close to it: model m-lost/);
    const digits = await diagnose('987654321');
    expect(digits.code).toBe(2);
    expect(digits.json.verdict.next).toMatch(/no model trains tune 987654321.*no generations table/);
    expect(digits.text).toMatch(/Verdict: unknown_id/);
  });

  it('--stuck lists the broken ones, newest first, bounded by --limit', async () => {
    const all = await runCli(['diagnose', '--stuck', '--json'], { DATABASE_URL: db.url });
    expect(all.code).toBe(3);
    const listed = JSON.parse(all.stdout) as { items: { kind: string; id: string; code: string }[]; more: boolean };
    expect(listed.items.map((item) => item.kind)).toEqual(['model', 'model', 'model', 'model']);
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

  it('a database it cannot use: exit 1, the password not printed', async () => {
    const result = await runCli(['diagnose', 'm-lost'], { DATABASE_URL: `postgresql://postgres:hunter2@127.0.0.1:${await freePort()}/nowhere` });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/check DATABASE_URL/);
    expect(result.stdout + result.stderr).not.toContain('hunter2');
  });

  it('usage errors exit 2', async () => {
    const pasted = `m-${'x'.repeat(5_000)}`;
    const usages = [['diagnose'], ['diagnose', '--stuck', '--limit', '0'], ['diagnose', 'a', 'b'], ['report', '--stuck'], ['diagnose', '123', '--kind', 'images'], ['diagnose', pasted]];
    const results = await Promise.all(usages.map((args) => runCli(args, { DATABASE_URL: db.url })));
    expect(results.map((result) => result.code)).toEqual([2, 2, 2, 2, 2, 2]);
    expect(results[0]!.stderr).toMatch(/diagnose needs a model id or tune id, a generation id or prompt id/);
    expect(results[4]!.stderr).toMatch(/--kind: "images" is not one of tunes, prompts/);
    // A pasted page is refused by its length, not echoed back.
    expect(results[5]!.stderr).toMatch(/an id is at most 200 characters; this one has 5002/);
    expect(results[5]!.stdout + results[5]!.stderr).not.toContain('x'.repeat(300));
  });
});

/**
 * Generations (image prompts), on a database with the app's `generations` table: each one's prompt
 * belongs to the tune of its model, so Astria is asked `GET /tunes/:tune_id/prompts/:id`.
 */
describe('astria-reconciler diagnose, generations (built CLI, real database)', { timeout: 120_000 }, () => {
  let gdb: TestDatabase;
  /** The tune of model m-gen, still training; its id is also the id of prompt `prompts.colliding`. */
  let tuneId: number;
  const prompts = {} as Record<'lost' | 'applied' | 'dead' | 'colliding' | 'running' | 'overdue' | 'failed', number>;
  const promptOf = (id: number) => promptSchema.parse(astria.getPrompt(id));
  // Rows seeded fresh stay within it, the late ones are far past it, whatever the pace of the machine.
  const stuckAfter = { RECONCILER_STUCK_AFTER: '10m' };
  const genv = () => ({ ...env(gdb), ...stuckAfter });

  beforeAll(async () => {
    gdb = await createTestDatabase();
    await gdb.pool.query(GENERATIONS_SCHEMA_SQL);
    await ensureOwnSchema(gdb.pool, 'astria_reconciler');
    await gdb.pool.query(`UPDATE astria_reconciler.callback_recording SET started_at = now() - interval '1 day'`);
    const now = Date.now();
    tuneId = astria.addTune({ startedTrainingAt: new Date(now - 5 * MINUTE), eta: new Date(now + 60 * MINUTE) }).id;
    await seedModels(gdb.pool, [{ id: 'm-gen', status: 'TRAINING', trainingJobId: String(tuneId), updatedAt: new Date(now - 5 * MINUTE), estimatedTime: 60 }]);

    const finishedPrompt = (minutesAgo: number, id?: number) => {
      const prompt = astria.addPrompt(tuneId, { id, createdAt: new Date(now - (minutesAgo + 2) * MINUTE), startedAt: new Date(now - (minutesAgo + 1) * MINUTE) });
      astria.finishPrompt(prompt.id, { at: new Date(now - minutesAgo * MINUTE) });
      return prompt.id;
    };
    prompts.lost = finishedPrompt(20);
    prompts.applied = finishedPrompt(5);
    prompts.dead = finishedPrompt(5);
    // The same number as the model's tune: Astria's prompt ids and tune ids are separate sequences.
    prompts.colliding = finishedPrompt(5, tuneId);
    prompts.running = astria.addPrompt(tuneId, { startedAt: new Date(now - 30_000) }).id;
    prompts.overdue = astria.addPrompt(tuneId, { startedAt: new Date(now - 30 * MINUTE) }).id;
    prompts.failed = astria.addPrompt(tuneId, { startedAt: new Date(now - 2 * MINUTE) }).id;
    astria.failPrompt(prompts.failed, 'NSFW content detected');
    astria.getPrompt(prompts.applied)!.callback = `https://app.example/api/webhooks/astria?secret=${CALLBACK_SECRET}&generation=g-applied`;

    const waiting = (id: string, prompt: number, updatedAt = new Date(now - 60 * MINUTE)) => ({ id, modelId: 'm-gen', status: 'PROCESSING' as const, jobId: String(prompt), updatedAt });
    await seedGenerations(gdb.pool, [
      waiting('g-lost', prompts.lost),
      waiting('g-applied', prompts.applied),
      waiting('g-dead', prompts.dead),
      waiting('g-colliding', prompts.colliding),
      waiting('g-running', prompts.running, new Date(now - 30_000)),
      waiting('g-overdue', prompts.overdue, new Date(now - 30 * MINUTE)),
      waiting('g-failed', prompts.failed),
      // Astria answers 404 for it (a minute old: not overdue yet).
      waiting('g-gone', 987_654_321, new Date(now - MINUTE)),
      { id: 'g-orphan', modelId: 'm-gen', status: 'PENDING', jobId: null, updatedAt: new Date(now - 60 * MINUTE) },
      { id: 'g-sending', modelId: 'm-gen', status: 'PENDING', jobId: null, updatedAt: new Date(now - 10_000) },
      { id: 'g-replicate', modelId: 'm-gen', status: 'PROCESSING', jobId: 'r8-xyz', aiProvider: 'replicate', updatedAt: new Date(now - 60 * MINUTE) },
    ]);

    // The prompt's callback never came: the reconciler applied COMPLETED 15 minutes ago (5 after Astria finished).
    await applyObservedPrompt({ pool: gdb.pool, service: createStatusService({ pool: gdb.pool, clock: stoppedAt(now - 15 * MINUTE) }), prompt: promptOf(prompts.lost), source: 'reconciler', now: new Date(now - 15 * MINUTE) });
    await gdb.pool.query(`UPDATE astria_reconciler.events SET recorded_at = occurred_at WHERE generation_id = 'g-lost'`);
    // The callbacks came and applied COMPLETED.
    await applyObservedPrompt({ pool: gdb.pool, prompt: promptOf(prompts.applied) });
    await applyObservedPrompt({ pool: gdb.pool, prompt: promptOf(prompts.colliding) });
    // The reconciler saw the failure.
    await applyObservedPrompt({ pool: gdb.pool, prompt: promptOf(prompts.failed), source: 'reconciler' });
    // Broadcast over http to a receiver that rejects it: parked after one attempt.
    await applyObservedPrompt({ pool: gdb.pool, service: createStatusService({ pool: gdb.pool, transports: ['pg', 'http'] }), prompt: promptOf(prompts.dead) });
    const rejecting = await startReceiver({ secret: BROADCAST_SECRET, status: 400 });
    try {
      await dispatchUntil(rejecting.url, async () => (await deliveryOf('g-dead', gdb))?.dead === true, 'the rejected delivery parked', gdb);
    } finally {
      await rejecting.close();
    }
  }, 60_000);

  afterAll(async () => {
    await gdb?.drop();
  });

  const kinds = (timeline: { kind: string }[]) => timeline.map((entry) => entry.kind);

  it('prompt callback lost, recovered by the reconciler: settled; the row, Astria asked under the tune, the timeline', async () => {
    const paths: string[] = [];
    const stop = astria.onRequest((event) => paths.push(event.path));
    const { code, json, text } = await diagnose('g-lost', [], genv()).finally(stop);
    expect(code).toBe(0);
    expect(json).toMatchObject({ kind: 'generation', id: 'g-lost' });
    expect(json.verdict.code).toBe('callback_lost_recovered');
    expect(json.verdict.message).toMatch(new RegExp(`no arrival recorded for prompt ${prompts.lost} within 10m`));
    expect(json.verdict.message).toMatch(/the reconciler applied COMPLETED 5m 00s after Astria finished/);
    expect(json.verdict.next).toMatch(/callback URL the app sends when it creates the prompt/);
    expect(json.row).toMatchObject({ id: 'g-lost', status: 'COMPLETED', jobId: String(prompts.lost), modelId: 'm-gen', imageCount: 4, errorMessage: null, completedAt: astria.getPrompt(prompts.lost)!.trained_at });
    expect(json.astria).toMatchObject({ state: 'trained', id: prompts.lost, tuneId, imageCount: 4 });
    expect(paths).toEqual([`/tunes/${tuneId}/prompts/${prompts.lost}`, `/tunes/${tuneId}/prompts/${prompts.lost}`]);
    expect(kinds(json.timeline)).toEqual(['astria_created', 'astria_started', 'astria_finished', 'transition']);
    expect(json.timeline[3]).toMatchObject({ source: 'reconciler', from: 'PROCESSING', to: 'COMPLETED', lagSeconds: 300 });
    expect(text).toMatch(/^Generation g-lost \(user user-1, model m-gen\)/);
    expect(text).toMatch(new RegExp(`status COMPLETED\\s+prompt ${prompts.lost}\\s+aiProvider astria\\s+images 4`));
    expect(text).toMatch(new RegExp(`Astria's view of prompt ${prompts.lost} \\(tune ${tuneId}\\): trained`));
    expect(text).toMatch(/Verdict: callback_lost_recovered/);
  });

  it('prompt callback arrived and applied: settled, the arrival named; the callback URL without its secret', async () => {
    const { code, json, text } = await diagnose('g-applied', [], genv());
    expect(code).toBe(0);
    expect(json.verdict).toMatchObject({ code: 'callback_applied', next: expect.stringMatching(/browser's stream/) });
    const receiver = `${hostname()}/${process.pid}`;
    expect(kinds(json.timeline)).toEqual(['astria_created', 'astria_started', 'astria_finished', 'callback_arrived', 'transition']);
    expect(json.timeline[3]).toMatchObject({ applied: true, receiver, refused: 0 });
    expect(text).toContain(`callback for prompt ${prompts.applied} arrived at ${receiver}; applied PROCESSING -> COMPLETED`);
    expect(json.astria.callback).toBe('https://app.example/api/webhooks/astria?secret=…&generation=…');
    expect(JSON.stringify(json) + text).not.toContain(CALLBACK_SECRET);
    expect(JSON.stringify(json) + text).not.toContain(API_KEY);
  });

  it('delivery dead: exit 3, the generation_status_changed delivery and requeue-dead named', async () => {
    const { code, json, text } = await diagnose('g-dead', [], genv());
    expect(code).toBe(3);
    expect(json.verdict.code).toBe('delivery_dead');
    expect(json.verdict.message).toMatch(/http delivery of the COMPLETED event dead since .* after 1 attempt \(HTTP 400/);
    expect(json.verdict.next).toMatch(/requeue-dead/);
    expect(json.timeline.at(-1)).toMatchObject({ kind: 'delivery', transport: 'http', state: 'dead', attempts: 1, lastError: expect.stringMatching(/HTTP 400/) });
    expect(text).toMatch(/Verdict: delivery_dead/);
  });

  it('still generating at Astria: exit 0; without Astria, within its estimate; overdue once unchanged past RECONCILER_STUCK_AFTER', async () => {
    const asked = await diagnose('g-running', [], genv());
    expect(asked.code).toBe(0);
    expect(asked.json.verdict).toMatchObject({ code: 'generating', message: 'Astria still generating: nothing is late yet' });
    expect(asked.json.astria).toMatchObject({ state: 'training', trainedAt: null, imageCount: 0 });

    const offline = await diagnose('g-running', ['--no-astria'], genv());
    expect(offline.code).toBe(0);
    expect(offline.json).toMatchObject({ astria: null, verdict: { code: 'generating', message: expect.stringMatching(/within its estimate \(Astria not asked\)/) } });
    expect(offline.text).toMatch(/Astria: not asked \(.*not an Astria prompt\)/);

    const overdue = await diagnose('g-overdue', [], genv());
    expect(overdue.code).toBe(3);
    expect(overdue.json.verdict.code).toBe('overdue');
    expect(overdue.json.verdict.message).toMatch(/still PROCESSING 3\dm \d\ds past its last change/);
    expect(overdue.json.verdict.next).toBe(`Astria itself is still at it: ask Astria about prompt ${prompts.overdue}`);
  });

  it('failed at Astria: settled with the failure', async () => {
    const { code, json } = await diagnose('g-failed', [], genv());
    expect(code).toBe(0);
    expect(json.verdict.code).toBe('failed');
    expect(json.verdict.message).toMatch(/NSFW content detected/);
    expect(json.verdict.next).toMatch(/the user retries the generation/);
    expect(json.row).toMatchObject({ status: 'FAILED', errorMessage: expect.stringMatching(/NSFW content detected/) });
    expect(json.astria).toMatchObject({ state: 'failed', userError: 'NSFW content detected' });
  });

  it('prompt not found at Astria; no prompt id saved (an orphan, or a row still being sent); not ours', async () => {
    const gone = await diagnose('g-gone', [], genv());
    expect(gone.code).toBe(3);
    expect(gone.json.verdict).toMatchObject({ code: 'prompt_gone', message: expect.stringMatching(/Astria has no prompt 987654321 \(HTTP 404\)/) });
    expect(gone.json.astria).toMatchObject({ state: 'gone' });

    const orphan = await diagnose('g-orphan', [], genv());
    expect(orphan.code).toBe(3);
    expect(orphan.json.verdict).toMatchObject({ code: 'orphan', message: expect.stringMatching(/no prompt id saved \(an orphan\): status PENDING, jobId NULL/) });
    const sending = await diagnose('g-sending', [], genv());
    expect(sending.code).toBe(0);
    expect(sending.json.verdict.code).toBe('not_submitted');

    const replicate = await diagnose('g-replicate', [], genv());
    expect(replicate.code).toBe(0);
    expect(replicate.json.verdict).toMatchObject({ code: 'not_ours', message: expect.stringMatching(/aiProvider is replicate/) });
    expect(replicate.json.astria).toBeNull();
  });

  it('a generation found by its prompt id', async () => {
    const { code, json } = await diagnose(String(prompts.applied), [], genv());
    expect(code).toBe(0);
    expect(json).toMatchObject({ kind: 'generation', id: 'g-applied', verdict: { code: 'callback_applied' } });
  });

  it('a number that is both a tune id and a prompt id: both diagnosed, --kind picks one', async () => {
    expect(prompts.colliding).toBe(tuneId);
    const both = await diagnoseAll(String(tuneId), [], genv());
    expect(both.code).toBe(0);
    expect(both.all.map((d: { kind: string; id: string; verdict: { code: string } }) => [d.kind, d.id, d.verdict.code])).toEqual([
      ['model', 'm-gen', 'training'],
      ['generation', 'g-colliding', 'callback_applied'],
    ]);
    // Each asked Astria about its own object: the tune, and the prompt of that number.
    expect(both.all[0].astria).toMatchObject({ id: tuneId, state: 'training' });
    expect(both.all[1].astria).toMatchObject({ id: tuneId, tuneId, state: 'trained', imageCount: 4 });
    expect(both.text).toMatch(new RegExp(`^"${tuneId}" names 1 model\\(s\\) and 1 generation\\(s\\).*--kind tunes or --kind prompts`));
    expect(both.text).toMatch(/Model m-gen[\s\S]*Generation g-colliding/);

    expect((await diagnose(String(tuneId), ['--kind', 'tunes'], genv())).json).toMatchObject({ kind: 'model', id: 'm-gen' });
    const prompt = await diagnose(String(tuneId), ['--kind', 'prompts'], genv());
    expect(prompt.json).toMatchObject({ kind: 'generation', id: 'g-colliding' });
    expect(prompt.text).not.toMatch(/names 1 model/);
  });

  it('an unknown id: exit 2, generations suggested too', async () => {
    const words = await diagnose('g-overd', [], genv());
    expect(words.code).toBe(2);
    expect(words.json.verdict).toMatchObject({ code: 'unknown_id', next: expect.stringMatching(/ids close to it: generation g-overdue/) });
    expect(words.json.verdict.message).toMatch(/a generation id \(generations.id\) or a prompt id/);
    const digits = await diagnose('987654320', [], genv());
    expect(digits.code).toBe(2);
    expect(digits.json.verdict.next).toMatch(/no model trains tune 987654320; no generation waits on prompt 987654320/);
    const onlyModels = await diagnose('g-overdue', ['--kind', 'tunes'], genv());
    expect(onlyModels.code).toBe(2);
    expect(onlyModels.json.verdict.message).not.toMatch(/generation/);
  });

  it('--stuck lists the broken generations with their kind, newest first; --kind tunes leaves them out', async () => {
    const all = await runCli(['diagnose', '--stuck', '--json'], { DATABASE_URL: gdb.url, ...stuckAfter });
    expect(all.code).toBe(3);
    const listed = JSON.parse(all.stdout) as { items: { kind: string; id: string; code: string; status: string }[] };
    expect(listed.items.map((item) => [item.kind, item.id, item.code])).toEqual([
      ['generation', 'g-dead', 'delivery_dead'],
      ['generation', 'g-overdue', 'overdue'],
      ['generation', 'g-orphan', 'orphan'],
    ]);
    const human = await runCli(['diagnose', '--stuck'], { DATABASE_URL: gdb.url, ...stuckAfter });
    expect(human.code).toBe(3);
    expect(human.stdout).toMatch(new RegExp(`^overdue\\s+generation\\s+g-overdue\\s+PROCESSING\\s+prompt ${prompts.overdue}\\s+updated 30m`, 'm'));

    const models = await runCli(['diagnose', '--stuck', '--kind', 'tunes'], { DATABASE_URL: gdb.url, ...stuckAfter });
    expect(models.code).toBe(0);
    expect(models.stdout).toMatch(/^nothing stuck: no model in flight/);
  });
});
