/**
 * Property tests (fast-check) of everything that parses what others send us:
 * 1. 10,000 generated webhook bodies POSTed over real HTTP (loopback, undici keep-alive pool) to the
 *    daemon's webhook handler: arbitrary JSON, near-valid tunes with wrong types, huge strings, nested
 *    junk, invalid timestamps, non-digit ids, raw bytes, wrong secrets, and valid tunes for unknown
 *    ids. Only the documented codes (200, 202, 400, 401, 413), the right one for each input, no write
 *    (table checksum, event log and outbox unchanged), no crash.
 * 2. Valid callbacks for a model we do train, with any timestamps and failure fields Astria's shape
 *    allows: applied (200), never a 500, the row stays within the rules.
 * 3. Generated Astria responses (status, headers, body) fed to the real client through undici's
 *    MockAgent: `getTune`/`listTunes` never throw except AstriaAuthError and always return a typed result.
 * 4. `decide()` over generated tunes and model rows: never throws, never leaves READY/DELETED, never
 *    lowers progress, progress within 0..100, every value it writes fits its column.
 * On failure fast-check prints the seed and the shrunk counterexample; replay with `{ seed, path }`.
 */
import type { AddressInfo } from 'node:net';
import fc from 'fast-check';
import { pino } from 'pino';
import { MockAgent, Pool as HttpPool, errors as undiciErrors } from 'undici';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AstriaAuthError, createAstriaClient, type ListResult, type TuneResult } from '../../src/astria/client.js';
import { parseCallbackBody } from '../../src/astria/callback-body.js';
import { isTuneId, tuneSchema, type Observation, type Tune } from '../../src/astria/tune.js';
import type { Clock } from '../../src/clock.js';
import { systemClock } from '../../src/clock.js';
import { seedModels } from '../../dev/host-schema.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { createHttpServer, type HttpServer } from '../../src/http/server.js';
import { MAX_CALLBACK_BODY_BYTES as MAX_WEBHOOK_BODY_BYTES } from '../../src/http/callback.js';
import { createWebhookHandler } from '../../src/http/webhook.js';
import { createMetrics } from '../../src/metrics.js';
import { decide, MODEL_STATUSES, type ModelRow } from '../../src/status/rules.js';
import { createStatusService } from '../../src/status/service.js';
import { operatorFilter } from '../../src/db/inflight.js';
import { reconcileOnce } from '../../src/reconciler/once.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';

/** No lone surrogate (what jsonb refuses): with the u flag a paired one is a single code point, not Cs. */
const isWellFormed = (text: string) => !/\p{Cs}/u.test(text);

const SECRET = 'fuzz-webhook-secret';
const HOUR = 3_600_000;
const TRAINING_TIMEOUT_MS = 24 * HOUR;
const log = pino({ level: 'silent' });
const INT4_MAX = 2_147_483_647;

/** Tune ids of the seeded models; generated "unknown" ids never hit them. */
const KNOWN_TUNE_IDS = Array.from({ length: 5 }, (_, i) => 987_654_321_000_001 + i);
const KNOWN = new Set(KNOWN_TUNE_IDS);
/** The tune of the model the "known id" property writes to. */
const TARGET_TUNE_ID = 987_654_321_000_100;

let db: TestDatabase;
let server: HttpServer;
let http: HttpPool;

beforeAll(async () => {
  db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
  await seedModels(db.pool, [
    ...KNOWN_TUNE_IDS.map((tuneId, i) => ({
      id: `fuzz-${i}`,
      status: i % 2 ? ('TRAINING' as const) : ('PROCESSING' as const),
      trainingJobId: String(tuneId),
      progress: 20,
    })),
    { id: 'fuzz-ready', status: 'READY', trainingJobId: '12345', progress: 100 },
    { id: 'fuzz-error', status: 'ERROR', trainingJobId: '23456', errorMessage: 'x' },
    { id: 'fuzz-target', status: 'TRAINING', trainingJobId: String(TARGET_TUNE_ID), createdAt: new Date(Date.now() - HOUR) },
  ]);
  const service = createStatusService({ pool: db.pool });
  server = createHttpServer({
    pool: db.pool,
    metrics: createMetrics(),
    log,
    webhook: createWebhookHandler({ secret: SECRET, pool: db.pool, service, log, clock: systemClock, trainingTimeoutMs: TRAINING_TIMEOUT_MS }),
  });
  const address: AddressInfo = await server.listen(0, '127.0.0.1');
  http = new HttpPool(`http://127.0.0.1:${address.port}`, { connections: 4 });
}, 60_000);

afterAll(async () => {
  await http?.close();
  await server?.close();
  await db?.drop();
});

/** Everything a webhook may write: the host table (minus the target model), our event log and outbox. */
async function checksum(): Promise<string> {
  const { rows } = await db.pool.query<{ models: string; events: string; deliveries: string }>(
    `SELECT (SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM ai_models t WHERE id <> 'fuzz-target') AS models,
            (SELECT count(*) FROM astria_reconciler.events WHERE model_id <> 'fuzz-target')::text AS events,
            (SELECT count(*) FROM astria_reconciler.deliveries)::text AS deliveries`,
  );
  return JSON.stringify(rows[0]);
}

// ---------------------------------------------------------------------------------------------------
// Generators
// ---------------------------------------------------------------------------------------------------

const unknownTuneId = fc.oneof(fc.integer({ min: 1, max: 2 ** 31 - 1 }), fc.maxSafeInteger().filter((n) => n > 0)).filter((n) => !KNOWN.has(n));

/** Ids that are not tune ids, or not in the form the schema takes. */
const badId = fc.oneof(
  fc.constantFrom(0, -1, 1.5, Number.MAX_SAFE_INTEGER + 2, 1e21, '', '0', '012', '1e3', ' 12', '12 ', '-5', '1_000', '0x1f', 'NaN', '١٢٣'),
  fc.string().filter((s) => !/^[1-9][0-9]{0,14}$/.test(s)),
  fc.stringMatching(/^[1-9][0-9]{15,30}$/),
  fc.boolean(),
  fc.constant(null),
  fc.array(fc.integer()),
  fc.dictionary(fc.string(), fc.integer()),
  fc.double().filter((n) => !Number.isInteger(n) || n <= 0),
);

const isoTimestamp = fc
  .date({ min: new Date('0000-01-01T00:00:00Z'), max: new Date('9999-12-31T23:59:59Z'), noInvalidDate: true })
  .map((date) => date.toISOString());

const badTimestamp = fc.oneof(
  fc.constantFrom(
    'not a date',
    '2026-13-01T00:00:00Z',
    '2026-00-10T00:00:00Z',
    '2026-01-01',
    '2026-01-01 10:00:00',
    '2026-01-01T25:00:00Z',
    '2026-01-01T10:61:00Z',
    '+012026-01-01T00:00:00Z',
    '-000001-01-01T00:00:00Z',
    '2026-01-01T00:00:00+2500',
    'Thu, 01 Jan 2026 00:00:00 GMT',
    '1767225600',
    'ISODate("2026-01-01")',
    '２０２６-01-01T00:00:00Z',
  ),
  fc.string(),
  fc.integer(),
  fc.double(),
  fc.boolean(),
  fc.array(fc.string(), { maxLength: 3 }),
  fc.dictionary(fc.string(), fc.string(), { maxKeys: 3 }),
);

const anyTimestamp = fc.oneof({ weight: 3, arbitrary: isoTimestamp }, { weight: 3, arbitrary: badTimestamp }, { weight: 1, arbitrary: fc.constantFrom(null, undefined, '') });

/** Keys that have broken JavaScript parsers before. */
const nastyKey = fc.constantFrom('__proto__', 'constructor', 'prototype', 'toString', 'hasOwnProperty', 'valueOf', '', ' ', '\u0000');
const junkValue = fc.jsonValue({ maxDepth: 3 });

/** A tune as Astria's docs show it, with any field replaced by something of the wrong type. */
const nearValidTune = fc
  .record(
    {
      id: fc.oneof({ weight: 2, arbitrary: unknownTuneId }, { weight: 1, arbitrary: unknownTuneId.map(String) }, { weight: 3, arbitrary: badId }),
      title: fc.oneof(fc.string(), fc.integer(), fc.constant(null), junkValue),
      trained_at: anyTimestamp,
      started_training_at: anyTimestamp,
      eta: anyTimestamp,
      created_at: anyTimestamp,
      status: fc.oneof(fc.constantFrom('failed', 'cancelled', 'canceled', 'FAILED', 'trained', 'training', 'queued', ''), fc.string(), junkValue),
      error: fc.oneof(fc.string(), junkValue, fc.constant(undefined)),
      error_message: fc.oneof(fc.string(), junkValue, fc.constant(undefined)),
      branch: fc.constantFrom('flux1', 'sd15', 'sdxl1', 'fast', 'unknown'),
      callback: fc.oneof(fc.webUrl(), fc.constant(null)),
    },
    { requiredKeys: [] },
  )
  .chain((tune) =>
    fc.dictionary(fc.oneof(nastyKey, fc.string({ maxLength: 8 })), junkValue, { maxKeys: 4 }).map((extra) => {
      // Extra keys as raw own properties (a JSON body can carry `__proto__` as a plain key).
      const out: Record<string, unknown> = JSON.parse(JSON.stringify(tune));
      for (const [key, value] of Object.entries(extra)) Object.defineProperty(out, key, { value, enumerable: true, configurable: true, writable: true });
      return out;
    }),
  );

/** The envelopes Astria is seen to use, and some it is not. */
const envelope = (tune: fc.Arbitrary<unknown>) =>
  fc.oneof(
    tune,
    tune.map((t) => ({ tune: t })),
    tune.map((t) => ({ tune: t, extra: 1 })),
    tune.map((t) => [t]),
    tune.map((t) => ({ tune: [t] })),
    tune.map((t) => ({ data: { tune: t } })),
  );

/** Valid per the schema, for an id no model trains: 202. */
const validUnknownTune = fc.record({
  id: fc.oneof(unknownTuneId, unknownTuneId.map(String)),
  trained_at: fc.oneof(isoTimestamp, fc.constant(null)),
  started_training_at: fc.oneof(isoTimestamp, fc.constant(null)),
  eta: fc.oneof(isoTimestamp, fc.constant(null)),
  status: fc.constantFrom('trained', 'failed', 'training', undefined),
  title: fc.string(),
});

const deepNesting = fc.record({ depth: fc.integer({ min: 1, max: 30_000 }), kind: fc.constantFrom('[', '{"a":') }).map(({ depth, kind }) => {
  const close = kind === '[' ? ']' : '}';
  return `${kind.repeat(depth)}1${close.repeat(depth)}`;
});

const hugeString = fc
  .oneof(
    fc.integer({ min: 0, max: 64 * 1024 }),
    fc.integer({ min: MAX_WEBHOOK_BODY_BYTES - 200, max: MAX_WEBHOOK_BODY_BYTES + 200 }),
    fc.integer({ min: MAX_WEBHOOK_BODY_BYTES, max: 3 * MAX_WEBHOOK_BODY_BYTES }),
  )
  .chain((length) => fc.record({ length: fc.constant(length), char: fc.constantFrom('a', 'é', '"', '\\', '😀'), where: fc.constantFrom('title', 'id', 'trained_at', 'error', 'key') }))
  .map(({ length, char, where }) => {
    const big = char.repeat(Math.ceil(length / Buffer.byteLength(char)));
    const tune: Record<string, unknown> = { id: 4242, title: 't' };
    if (where === 'key') tune[big] = 1;
    else tune[where] = big;
    return JSON.stringify({ tune });
  });

const secret = fc.oneof(
  { weight: 9, arbitrary: fc.constant<string | null>(SECRET) },
  { weight: 1, arbitrary: fc.oneof(fc.constant(null), fc.constantFrom('', SECRET.toUpperCase(), `${SECRET} `, SECRET.slice(0, -1), `${SECRET}x`), fc.string()) },
);

interface Hook {
  secret: string | null;
  body: Buffer;
}

const hook = (body: fc.Arbitrary<string | Buffer>): fc.Arbitrary<Hook> =>
  fc.record({ secret, body: body.map((b) => (typeof b === 'string' ? Buffer.from(b, 'utf8') : b)) });

// ---------------------------------------------------------------------------------------------------
// 1. Webhook bodies
// ---------------------------------------------------------------------------------------------------

/** What SPEC.md says the webhook answers, when no model trains the tune. */
function expectedStatus({ secret, body }: Hook): 401 | 413 | 400 | 202 | 'known' {
  if (secret !== SECRET) return 401;
  if (body.length > MAX_WEBHOOK_BODY_BYTES) return 413;
  let json: unknown;
  try {
    json = JSON.parse(body.toString('utf8'));
  } catch {
    return 400;
  }
  const parsed = parseCallbackBody(json);
  if (parsed.kind === 'invalid') return 400;
  if (parsed.kind === 'prompts') return 202;
  return KNOWN.has(parsed.tune.id) || parsed.tune.id === TARGET_TUNE_ID ? 'known' : 202;
}

async function post({ secret, body }: Hook): Promise<{ status: number; body: string } | { error: Error }> {
  const query = secret === null ? '' : `?secret=${encodeURIComponent(secret)}`;
  try {
    const response = await http.request({
      path: `/webhooks/astria${query}`,
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body,
    });
    return { status: response.statusCode, body: await response.body.text() };
  } catch (error) {
    return { error: error as Error };
  }
}

const DOCUMENTED = [200, 202, 400, 401, 413];
const counts: Record<string, number> = {};

async function webhookProperty(name: string, arbitrary: fc.Arbitrary<Hook>, numRuns: number): Promise<void> {
  const before = await checksum();
  await fc.assert(
    fc.asyncProperty(arbitrary, async (input) => {
      const want = expectedStatus(input);
      fc.pre(want !== 'known');
      const got = await post(input);
      if ('error' in got) {
        // A rejection closes the connection without reading the rest of a big body: the client may see
        // the reset before the status. Acceptable only for a rejection of a body too big to have been read.
        const reset = got.error instanceof undiciErrors.SocketError || /ECONNRESET|EPIPE|other side closed/.test(got.error.message);
        if (!(reset && (want === 413 || want === 401) && input.body.length > 64 * 1024)) throw got.error;
        counts[`${name}:${want}:reset`] = (counts[`${name}:${want}:reset`] ?? 0) + 1;
        return;
      }
      counts[`${name}:${got.status}`] = (counts[`${name}:${got.status}`] ?? 0) + 1;
      expect(DOCUMENTED, `undocumented status ${got.status}: ${got.body}`).toContain(got.status);
      expect(got.status, got.body).toBe(want);
      expect(() => JSON.parse(got.body)).not.toThrow();
    }),
    { numRuns },
  );
  expect(await checksum(), `${name}: rejected or unknown callbacks wrote something`).toBe(before);
}

describe('webhook: 10,000 generated bodies over real HTTP', () => {
  it('arbitrary JSON values (2,500)', () => webhookProperty('json', hook(fc.jsonValue().map((v) => JSON.stringify(v) ?? 'null')), 2_500), 60_000);

  it('near-valid tunes with wrong types, invalid timestamps, non-digit ids, nasty keys (3,500)', () =>
    webhookProperty('near-valid', hook(envelope(nearValidTune).map((v) => JSON.stringify(v))), 3_500), 60_000);

  it('valid tunes for ids no model trains: 202, nothing written (1,500)', () =>
    webhookProperty('unknown', hook(envelope(validUnknownTune).map((v) => JSON.stringify(v))), 1_500), 60_000);

  it('raw bytes and broken JSON text (1,800)', () =>
    webhookProperty(
      'raw',
      hook(
        fc.oneof(
          fc.uint8Array({ maxLength: 512 }).map((bytes) => Buffer.from(bytes)),
          fc.string({ unit: 'binary' }),
          fc.json().chain((text) => fc.nat({ max: Math.max(0, text.length - 1) }).map((cut) => text.slice(0, cut))),
          fc.constantFrom('', ' ', 'null', 'true', '0', '"tune"', '{"tune":null}', '{"tune":{}}', '[]', '{}', '\ufeff{"id":5}', '{"id":5}garbage'),
        ),
      ),
      1_800,
    ), 60_000);

  it('huge strings around and past the 1 MiB limit (400)', () => webhookProperty('huge', hook(hugeString), 400), 60_000);

  it('deeply nested junk (300)', () => webhookProperty('nested', hook(deepNesting), 300), 60_000);

  afterAll(() => {
    console.log(`[fuzz] webhook answers: ${JSON.stringify(counts)}`);
  });
});

// ---------------------------------------------------------------------------------------------------
// 2. Valid callbacks for a model we train: applied, never a 500
// ---------------------------------------------------------------------------------------------------

/** Marks a value nested too deep for JSON.stringify; `toJsonText` writes it from its depth instead. */
const DEEP = Symbol('deep');
const deepText = (depth: number) => `${'['.repeat(depth)}"deep"${']'.repeat(depth)}`;

/** A JSON value nested `depth` levels deep (JSON.parse takes any depth; recursive code may not). */
const deepValue = fc.integer({ min: 1, max: 20_000 }).map((depth) => {
  const value = JSON.parse(deepText(depth)) as unknown[];
  Object.defineProperty(value, DEEP, { value: depth });
  // fast-check prints counterexamples recursively: describe this one in a few characters instead.
  Object.defineProperty(value, fc.toStringMethod, { value: () => `<array nested ${depth} deep>` });
  return value as unknown;
});

/** JSON.stringify, except that values from `deepValue` are written as text. */
function toJsonText(value: unknown): string {
  const deep: number[] = [];
  const text = JSON.stringify(value, (_key, v: unknown) => {
    const depth = (v as { [DEEP]?: number } | null)?.[DEEP];
    if (depth === undefined) return v;
    deep.push(depth);
    return `@@DEEP${deep.length - 1}@@`;
  });
  return text.replace(/"@@DEEP(\d+)@@"/g, (_match, index: string) => deepText(deep[Number(index)]!));
}

const validKnownTune = fc.record(
  {
    id: fc.constantFrom(TARGET_TUNE_ID, String(TARGET_TUNE_ID)),
    trained_at: fc.oneof(isoTimestamp, fc.constant(null)),
    started_training_at: fc.oneof(isoTimestamp, fc.constant(null)),
    eta: fc.oneof(isoTimestamp, fc.constant(null)),
    status: fc.oneof(fc.constantFrom('failed', 'cancelled', 'trained', 'training'), fc.string({ maxLength: 10 })),
    error: fc.oneof(fc.string(), fc.jsonValue({ maxDepth: 2 }), deepValue),
    error_message: fc.oneof(fc.string({ maxLength: 2_000 }), fc.jsonValue({ maxDepth: 2 })),
  },
  { requiredKeys: ['id'] },
);

describe('webhook: valid callbacks for a model we train', () => {
  it('are applied through the rules (200), whatever timestamps and failure fields they carry (300)', async () => {
    await fc.assert(
      fc.asyncProperty(validKnownTune, fc.constantFrom<'PROCESSING' | 'TRAINING' | 'ERROR'>('PROCESSING', 'TRAINING', 'ERROR'), async (tune, status) => {
        await db.pool.query(
          `UPDATE ai_models SET status = $1, progress = 20, "trainedAt" = NULL, "modelUrl" = NULL, "errorMessage" = NULL,
                  "estimatedTime" = NULL WHERE id = 'fuzz-target'`,
          [status],
        );
        await db.pool.query(`DELETE FROM astria_reconciler.events WHERE model_id = 'fuzz-target'`);
        const text = toJsonText({ tune });
        const got = await post({ secret: SECRET, body: Buffer.from(text) });
        if ('error' in got) throw got.error;
        // Applied (200), or refused as malformed (400) if the tune schema refuses it: never a 500.
        expect(got.status, got.body).toBe(parseCallbackBody(JSON.parse(text)).kind === 'tune' ? 200 : 400);
        const row = await readModel(db.pool, 'fuzz-target');
        const { rows } = await db.pool.query<{ n: number }>(`SELECT count(*)::int AS n FROM astria_reconciler.events WHERE model_id = 'fuzz-target'`);
        expect(rows[0]!.n).toBe(row.status === status ? 0 : 1);
        expect(row.progress).toBeGreaterThanOrEqual(20);
        expect(row.progress).toBeLessThanOrEqual(100);
      }),
      { numRuns: 300 },
    );
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------------
// 3. Generated Astria responses through the real client
// ---------------------------------------------------------------------------------------------------

const API_URL = 'https://api.astria.fuzz';
const API_KEY = 'sd_fuzz_key_never_in_a_reason';

/** Never waits: every sleep moves time forward at once. */
function instantClock(): Clock {
  let t = Date.parse('2026-11-25T10:00:00Z');
  return {
    now: () => t,
    sleep: async (ms) => {
      t += Math.max(0, ms);
    },
  };
}

type Reply = { kind: 'reply'; status: number; body: string; headers: Record<string, string> } | { kind: 'error'; message: string };

const replyBody = (tuneId: number) =>
  fc.oneof(
    fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v) ?? ''),
    fc.string(),
    nearValidTune.map((t) => JSON.stringify(t)),
    nearValidTune.map((t) => JSON.stringify({ ...t, id: tuneId })),
    validUnknownTune.map((t) => JSON.stringify({ ...t, id: tuneId })),
    fc.array(fc.oneof(nearValidTune, validUnknownTune), { maxLength: 6 }).map((ts) => JSON.stringify(ts)),
    fc.constantFrom('', '{', '[', 'null', '[]', '[null]', '[{"id":0}]', '{"error":"x"}', '{"errors":[1,2]}', '{"message":null}'),
  );

const reply = (tuneId: number): fc.Arbitrary<Reply> =>
  fc.oneof(
    {
      weight: 9,
      arbitrary: fc.record({
        kind: fc.constant('reply' as const),
        status: fc.oneof(
          { weight: 4, arbitrary: fc.constant(200) },
          { weight: 4, arbitrary: fc.constantFrom(201, 204, 301, 400, 401, 403, 404, 408, 409, 422, 429, 500, 502, 503, 504) },
          { weight: 1, arbitrary: fc.integer({ min: 200, max: 599 }) },
        ),
        body: replyBody(tuneId),
        headers: fc.oneof(
          fc.constant({}),
          fc.record({
            'retry-after': fc.oneof(fc.constantFrom('0', '1', '1.5', '-1', '99999999999', 'soon', ''), fc.date({ noInvalidDate: true }).map((d) => d.toUTCString()), fc.string()),
          }),
        ),
      }),
    },
    { weight: 1, arbitrary: fc.record({ kind: fc.constant('error' as const), message: fc.constantFrom('ECONNRESET', 'socket hang up', 'other side closed') }) },
  );

function parseJsonOrNull(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

function mockClient(replies: Reply[]) {
  const agent = new MockAgent();
  agent.disableNetConnect();
  const origin = agent.get(API_URL);
  for (const r of replies) {
    const scope = origin.intercept({ path: () => true, method: 'GET' });
    if (r.kind === 'error') scope.replyWithError(new Error(r.message));
    else scope.reply(r.status, r.body, { headers: { 'content-type': 'application/json', ...r.headers } });
  }
  const client = createAstriaClient({
    apiUrl: API_URL,
    apiKey: API_KEY,
    maxRps: 1_000,
    concurrency: 2,
    timeoutMs: 5_000,
    log,
    metrics: createMetrics(),
    clock: instantClock(),
    dispatcher: agent,
  });
  return { agent, client };
}

function authRefusedFirst(replies: Reply[]): boolean {
  // The client stops at the first answer that is not retried; a 401/403 before it ends the call.
  for (const r of replies.slice(0, 4)) {
    if (r.kind === 'error') continue;
    if (r.status === 401 || r.status === 403) return true;
    if (r.status === 429 || r.status >= 500) continue;
    return false;
  }
  return false;
}

function expectTypedTune(tune: Tune): void {
  expect(Number.isSafeInteger(tune.id) && tune.id > 0).toBe(true);
  // Only what the rules read is typed; everything else (created_at, title, status) passes as sent.
  for (const field of ['trained_at', 'started_training_at', 'eta'] as const) {
    const value = tune[field];
    expect(value === null || (value instanceof Date && !Number.isNaN(value.getTime())), `${field}: ${String(value)}`).toBe(true);
  }
}

describe('Astria client: generated responses', () => {
  it('getTune never throws except AstriaAuthError and always returns a typed result (2,000)', async () => {
    const tuneIdArb = fc.oneof({ weight: 5, arbitrary: fc.integer({ min: 1, max: 2 ** 31 - 1 }).map(String) }, { weight: 1, arbitrary: fc.string() });
    await fc.assert(
      fc.asyncProperty(
        tuneIdArb.chain((tuneId) => fc.record({ tuneId: fc.constant(tuneId), replies: fc.array(reply(Number(tuneId) || 1), { minLength: 4, maxLength: 4 }) })),
        async ({ tuneId, replies }) => {
          const { agent, client } = mockClient(replies);
          try {
            let result: TuneResult;
            try {
              result = await client.getTune(tuneId);
            } catch (error) {
              expect(error).toBeInstanceOf(AstriaAuthError);
              expect(isTuneId(tuneId) && authRefusedFirst(replies)).toBe(true);
              return;
            }
            expect(['tune', 'gone', 'failed']).toContain(result.kind);
            expect(client.calls).toBeLessThanOrEqual(4);
            if (!isTuneId(tuneId)) expect(result.kind).toBe('failed');
            if (result.kind === 'tune') {
              expectTypedTune(result.tune);
              expect(String(result.tune.id)).toBe(tuneId);
            } else if (result.kind === 'gone') {
              expect(result.tuneId).toBe(tuneId);
            } else {
              expect(typeof result.reason).toBe('string');
              expect(result.reason.length).toBeGreaterThan(0);
              expect(result.reason).not.toContain(API_KEY);
            }
          } finally {
            await client.close();
            await agent.close();
          }
        },
      ),
      { numRuns: 2_000 },
    );
  }, 60_000);

  it('listTunes never throws except AstriaAuthError and returns only valid tunes (1,500)', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(reply(1), { minLength: 4, maxLength: 4 }),
        fc.oneof(fc.constant(null), fc.integer({ min: 1, max: 2 ** 31 - 1 })),
        fc.oneof(fc.integer({ min: -5, max: 500 }), fc.double()),
        async (replies, beforeId, limit) => {
          const { agent, client } = mockClient(replies);
          try {
            let result: ListResult;
            try {
              result = await client.listTunes({ beforeId, limit });
            } catch (error) {
              expect(error).toBeInstanceOf(AstriaAuthError);
              expect(authRefusedFirst(replies)).toBe(true);
              return;
            }
            expect(['page', 'failed']).toContain(result.kind);
            if (result.kind === 'page') {
              for (const tune of result.tunes) expectTypedTune(tune);
              // Every element of the array that answered is a tune on the page or counted as skipped.
              const arrays = replies.flatMap((r) => (r.kind === 'reply' ? [parseJsonOrNull(r.body)] : [])).filter(Array.isArray);
              expect(arrays.map((array: unknown[]) => array.length)).toContain(result.tunes.length + result.skipped);
              if (result.nextBeforeId !== null) expect(Number.isSafeInteger(result.nextBeforeId) && result.nextBeforeId > 0).toBe(true);
              // A page with tunes always moves the cursor (an empty page ends the list).
              if (result.tunes.length > 0) expect(result.nextBeforeId).not.toBeNull();
            } else {
              expect(result.reason.length).toBeGreaterThan(0);
            }
          } finally {
            await client.close();
            await agent.close();
          }
        },
      ),
      { numRuns: 1_500 },
    );
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------------
// 4. The status rules
// ---------------------------------------------------------------------------------------------------

const parsedTune: fc.Arbitrary<Tune> = fc
  .record(
    {
      id: fc.integer({ min: 1, max: 2 ** 31 - 1 }),
      trained_at: fc.oneof(isoTimestamp, fc.constant(null)),
      started_training_at: fc.oneof(isoTimestamp, fc.constant(null)),
      eta: fc.oneof(isoTimestamp, fc.constant(null)),
      created_at: fc.oneof(isoTimestamp, fc.constant(null)),
      status: fc.oneof(fc.constantFrom('failed', 'cancelled', 'canceled', 'FAILED', 'Cancelled', 'trained', 'training', 'queued'), fc.string(), fc.constant(null)),
      error: fc.oneof({ weight: 4, arbitrary: fc.string() }, { weight: 4, arbitrary: fc.jsonValue({ maxDepth: 2 }) }, { weight: 1, arbitrary: deepValue }),
      error_message: fc.oneof(fc.string({ maxLength: 1_000 }), fc.jsonValue({ maxDepth: 2 })),
    },
    { requiredKeys: ['id'] },
  )
  // Whatever the schema lets through is what decide() can be handed.
  .map((raw) => tuneSchema.safeParse(raw))
  .filter((parsed) => parsed.success)
  .map((parsed) => parsed.data!);

const modelRow: fc.Arbitrary<ModelRow> = fc.record({
  id: fc.string({ minLength: 1, maxLength: 12 }),
  userId: fc.string({ minLength: 1, maxLength: 12 }),
  status: fc.constantFrom(...MODEL_STATUSES),
  progress: fc.integer({ min: 0, max: 100 }),
  trainingJobId: fc.oneof(fc.integer({ min: 1 }).map(String), fc.constant(null)),
  errorMessage: fc.oneof(fc.string(), fc.constant(null)),
  estimatedTime: fc.oneof(fc.integer({ min: 0, max: 10_000 }), fc.constant(null)),
  createdAt: fc.date({ min: new Date('2020-01-01T00:00:00Z'), max: new Date('2030-01-01T00:00:00Z'), noInvalidDate: true }),
});

const observation: fc.Arbitrary<Observation> = fc.oneof(
  { weight: 5, arbitrary: parsedTune.map((tune) => ({ kind: 'tune' as const, tune })) },
  { weight: 1, arbitrary: fc.integer({ min: 1 }).map((id) => ({ kind: 'gone' as const, tuneId: String(id) })) },
);

describe('decide(): generated tunes and model rows (20,000)', () => {
  it('never throws, never leaves READY/DELETED, never lowers progress, writes only what the columns hold', () => {
    fc.assert(
      fc.property(
        modelRow,
        observation,
        fc.date({ min: new Date('2020-01-01T00:00:00Z'), max: new Date('2030-01-01T00:00:00Z'), noInvalidDate: true }),
        fc.constantFrom(HOUR, TRAINING_TIMEOUT_MS, 7 * 24 * HOUR),
        (model, obs, now, trainingTimeoutMs) => {
          let transition: ReturnType<typeof decide>;
          try {
            transition = decide(model, obs, now, { trainingTimeoutMs });
          } catch (error) {
            throw new Error(`decide() threw: ${(error as Error).message}`);
          }
          if (transition === null) return;
          expect(transition.modelId).toBe(model.id);
          expect(transition.userId).toBe(model.userId);
          expect(transition.from).toBe(model.status);
          expect(MODEL_STATUSES).toContain(transition.to);
          // Never leaves READY or DELETED; UPLOADING is not ours to move either.
          expect(['READY', 'DELETED', 'UPLOADING']).not.toContain(model.status);
          // ERROR may only heal to READY.
          if (model.status === 'ERROR') expect(transition.to).toBe('READY');
          const { changes } = transition;
          if (changes.progress !== undefined) {
            expect(Number.isInteger(changes.progress)).toBe(true);
            expect(changes.progress).toBeGreaterThanOrEqual(model.progress);
            expect(changes.progress).toBeLessThanOrEqual(transition.to === 'READY' ? 100 : 99);
          }
          if (transition.to === 'READY') {
            expect(changes).toMatchObject({ progress: 100, errorMessage: null, estimatedTime: null });
            expect(changes.trainedAt).toBeInstanceOf(Date);
          }
          if (transition.to === 'ERROR') {
            expect(typeof changes.errorMessage).toBe('string');
            expect(changes.errorMessage!.length).toBeGreaterThan(0);
            // Bounded in bytes (it travels in every event) and safe for a text column: no NUL, no lone surrogate.
            expect(Buffer.byteLength(changes.errorMessage!)).toBeLessThanOrEqual(1_000);
            expect(changes.errorMessage!.includes('\u0000') || !isWellFormed(changes.errorMessage!)).toBe(false);
          }
          if (transition.to === transition.from) expect(Object.keys(changes).length).toBeGreaterThan(0);
          // `estimatedTime` is an int4 column: a value past it fails the whole write.
          if (changes.estimatedTime !== undefined && changes.estimatedTime !== null) {
            expect(Number.isInteger(changes.estimatedTime)).toBe(true);
            expect(changes.estimatedTime).toBeGreaterThanOrEqual(0);
            expect(changes.estimatedTime, 'estimatedTime fits the int4 column').toBeLessThanOrEqual(INT4_MAX);
          }
        },
      ),
      { numRuns: 20_000 },
    );
  });
});

// ---------------------------------------------------------------------------------------------------
// 5. What the properties above found, pinned as plain examples
// ---------------------------------------------------------------------------------------------------

describe('regressions found by fuzzing', () => {
  const DEEP_ERROR_JSON = `${'['.repeat(20_000)}"GPU on fire"${']'.repeat(20_000)}`;
  const deepError = () => JSON.parse(DEEP_ERROR_JSON) as unknown;
  /** JSON.stringify cannot write such a value either: splice the deep part in as text. */
  const withDeepError = (value: Record<string, unknown>) => JSON.stringify({ ...value, error: '@DEEP@' }).replace('"@DEEP@"', DEEP_ERROR_JSON);
  const poison = {
    /** Year 0 passes the ISO timestamp check but PostgreSQL has no year 0: the write fails. */
    yearZero: { trained_at: '0000-06-01T00:00:00Z' },
    /** `estimatedTime` = minutes until eta overflows the int4 column. */
    farEta: { started_training_at: '2026-01-01T00:00:00Z', eta: '9999-01-01T00:00:00Z' },
    /** describe() JSON.stringify()s the error object: deep nesting overflows the stack. */
    deepError: { status: 'failed', error: null as unknown },
  };

  it.each(Object.keys(poison) as (keyof typeof poison)[])(
    'a callback for a model we train with %s is answered with a documented code, never 500',
    async (kind) => {
      const tuneId = 555_000_001 + Object.keys(poison).indexOf(kind);
      await seedModels(db.pool, [{ id: `poison-hook-${kind}`, status: 'PROCESSING', trainingJobId: String(tuneId) }]);
      const tune = { ...poison[kind], id: tuneId };
      const text = kind === 'deepError' ? `{"tune":${withDeepError(tune)}}` : JSON.stringify({ tune });
      const got = await post({ secret: SECRET, body: Buffer.from(text) });
      if ('error' in got) throw got.error;
      expect([200, 400], got.body).toContain(got.status);
    },
  );

  it('decide() does not throw on a failure whose error is deeply nested', () => {
    const tune = tuneSchema.parse({ id: 1, status: 'failed', error: deepError() });
    const model: ModelRow = { id: 'm', userId: 'u', status: 'TRAINING', progress: 0, trainingJobId: '1', errorMessage: null, estimatedTime: null, createdAt: new Date() };
    const transition = decide(model, { kind: 'tune', tune }, new Date(), { trainingTimeoutMs: TRAINING_TIMEOUT_MS });
    expect(transition?.to).toBe('ERROR');
    expect(Buffer.byteLength(transition!.changes.errorMessage!)).toBeLessThanOrEqual(1_000);
  });

  it('estimatedTime from a far-future eta fits the int4 column', () => {
    const tune = tuneSchema.parse({ id: 1, ...poison.farEta });
    const model: ModelRow = { id: 'm', userId: 'u', status: 'TRAINING', progress: 0, trainingJobId: '1', errorMessage: null, estimatedTime: null, createdAt: new Date() };
    const transition = decide(model, { kind: 'tune', tune }, new Date(), { trainingTimeoutMs: TRAINING_TIMEOUT_MS });
    expect(transition?.changes.estimatedTime ?? 0).toBeLessThanOrEqual(INT4_MAX);
  });

  it('one tune Astria answers with such values does not abort the pass: the other models are still reconciled', async () => {
    const tunes: Record<number, Record<string, unknown>> = {
      556_000_001: { ...poison.yearZero },
      556_000_002: { ...poison.farEta },
      556_000_003: { status: 'failed', error: 'deep' },
      556_000_004: { trained_at: '2026-11-25T09:00:00Z', started_training_at: '2026-11-25T08:00:00Z' },
      556_000_005: { trained_at: '2026-11-25T09:30:00Z', started_training_at: '2026-11-25T08:00:00Z' },
    };
    await seedModels(
      db.pool,
      Object.keys(tunes).map((tuneId) => ({ id: `poison-pass-${tuneId}`, status: 'TRAINING' as const, trainingJobId: tuneId, updatedAt: new Date(Date.now() - HOUR) })),
    );
    const agent = new MockAgent();
    agent.disableNetConnect();
    for (const [tuneId, tune] of Object.entries(tunes)) {
      agent.get(API_URL).intercept({ path: `/tunes/${tuneId}`, method: 'GET' }).reply(200, tune.error === 'deep' ? withDeepError({ ...tune, id: Number(tuneId) }) : JSON.stringify({ ...tune, id: Number(tuneId) }))
        .persist();
    }
    const metrics = createMetrics();
    const client = createAstriaClient({ apiUrl: API_URL, apiKey: API_KEY, maxRps: 1_000, concurrency: 1, timeoutMs: 5_000, log, metrics, clock: systemClock, dispatcher: agent });
    const ids = Object.keys(tunes).map((tuneId) => `poison-pass-${tuneId}`);
    try {
      const report = await reconcileOnce(
        { pool: db.pool, astria: client, service: createStatusService({ pool: db.pool }), log, clock: systemClock, metrics },
        { filter: operatorFilter(Date.now(), 0, ids), trainingTimeoutMs: 10 * 365 * 24 * HOUR, concurrency: 1, plan: 'single-gets' },
      );
      expect(report.checked).toBe(5);
      // A model whose tune cannot be written is a per-model failure (exit 3), not a fatal error.
      expect(report.transitioned + report.unchanged + report.failed).toBe(5);
    } finally {
      await client.close();
      await agent.close();
    }
    expect((await readModel(db.pool, 'poison-pass-556000004')).status).toBe('READY');
    expect((await readModel(db.pool, 'poison-pass-556000005')).status).toBe('READY');
  });
});
