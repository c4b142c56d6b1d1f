import { createHash, timingSafeEqual } from 'node:crypto';
import { parseCallbackBody } from '../astria/callback-body.js';
import type { Database } from '../db/executor.js';
import type { Logger } from '../log.js';
import type { Prompt } from '../astria/prompt.js';
import { executorFor } from '../db/drivers.js';
import { generationsTablePresent } from '../db/generations.js';
import { DEFAULT_HOST_SCHEMA, type HostSchema } from '../db/host-names.js';
import { applyObservedPrompt } from '../status/apply-prompt.js';
import { applyObservedTune } from '../status/apply-tune.js';
import type { StatusService } from '../status/service.js';

export const MAX_CALLBACK_BODY_BYTES = 1024 * 1024;

/** One Astria callback as any HTTP framework sees it: Node's request stream and a Web `Request` body both fit. */
export interface CallbackRequest {
  /** The `secret` query parameter, null when absent. */
  givenSecret: string | null;
  /**
   * The `model` query parameter (the app's model id, put in the callback URL at tune creation): the
   * callback then applies to that model only. Absent: every model training the tune.
   */
  modelId?: string | null;
  /** The `Content-Length` header when sent: an oversized body is refused before it is read. */
  contentLength?: number | null;
  body: AsyncIterable<Uint8Array> | ReadableStream<Uint8Array> | null;
}

export interface CallbackDeps extends Database {
  /** The expected secret; when unset every callback is refused (401). */
  secret: string | undefined;
  /**
   * The status service, or a function giving it, called only for a valid callback (so rejections never
   * reach the database). Default: one on the same database and schema, NOTIFY only.
   */
  service?: StatusService | (() => Promise<StatusService>);
  /** Default 24 h, as `RECONCILER_TRAINING_TIMEOUT`. */
  trainingTimeoutMs?: number;
  /** Our own schema (default `astria_reconciler`): callback arrivals are recorded there, and its event log tells our ERRORs from the app's. */
  schema?: string;
  /** The app's table, column and status names (`loadHostMapping`); default vibephoto's. Give a `service` the same. */
  host?: HostSchema;
  now?: () => Date;
  log?: Pick<Logger, 'info' | 'warn'>;
  maxBodyBytes?: number;
  /**
   * Why a valid callback cannot be applied yet (the sidecar before its database is usable), or null.
   * Asked only once the secret and body passed: a wrong secret is a 401 whatever the database does.
   */
  notReady?: () => string | null;
}

export interface CallbackResponse {
  /** 200 applied, 202 unknown tune or prompt (or prompts with no `generations` table), 400 malformed, 401 bad secret, 413 too large, 503 not ready, or every matched model's write refused (Astria does not retry: the reconciler applies it later). */
  status: 200 | 202 | 400 | 401 | 413 | 503;
  body: Record<string, unknown>;
}

/**
 * The callback URL's `secret` and `model` parameters as `acceptAstriaCallback` takes them. A repeated
 * `secret` is no secret (null), whichever value comes first.
 */
export function callbackUrlParams(params: URLSearchParams): Pick<CallbackRequest, 'givenSecret' | 'modelId'> {
  const secrets = params.getAll('secret');
  return { givenSecret: secrets.length === 1 ? secrets[0]! : null, modelId: params.get('model') };
}

/** Compares secrets in constant time: digests first, so unequal lengths leak nothing either. */
function secretMatches(given: string | null, expected: string | undefined): boolean {
  if (given === null || !expected) return false;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** The body's bytes, or null as soon as it grows past `limit`. */
async function readLimited(body: CallbackRequest['body'], limit: number): Promise<Buffer | null> {
  if (body === null) return Buffer.alloc(0);
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of 'getReader' in body ? streamChunks(body) : body) {
    size += chunk.byteLength;
    if (size > limit) return null;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

async function* streamChunks(stream: ReadableStream<Uint8Array>): AsyncIterable<Uint8Array> {
  const reader = stream.getReader();
  try {
    for (let next = await reader.read(); !next.done; next = await reader.read()) yield next.value;
  } finally {
    await reader.cancel().catch(() => undefined);
  }
}

/**
 * Astria's tune and prompt callbacks, on one route, whatever serves it (the sidecar's own port or the
 * app's route). Astria signs nothing, so the secret travels in the URL given to Astria. The body is
 * only a hint: it goes through the same rules and status service as the poller's observations. A tune
 * applies to models, a prompt (`{"prompt": …}`, bare, or a pack's array) to generations only: the two
 * id sequences collide. Every rejection and an unknown tune or prompt leave the database unwritten.
 */
export async function acceptAstriaCallback(request: CallbackRequest, deps: CallbackDeps): Promise<CallbackResponse> {
  if (!secretMatches(request.givenSecret, deps.secret)) return { status: 401, body: { error: 'invalid or missing secret' } };
  const limit = deps.maxBodyBytes ?? MAX_CALLBACK_BODY_BYTES;
  const raw = (request.contentLength ?? 0) > limit ? null : await readLimited(request.body, limit);
  if (raw === null) return { status: 413, body: { error: `body larger than ${limit} bytes` } };

  let json: unknown;
  try {
    json = JSON.parse(raw.toString('utf8'));
  } catch {
    return { status: 400, body: { error: 'body is not JSON' } };
  }
  const parsed = parseCallbackBody(json);
  if (parsed.kind === 'invalid') {
    deps.log?.warn({ issues: parsed.issues.slice(0, 3) }, 'rejected malformed Astria callback');
    return { status: 400, body: { error: parsed.reason } };
  }
  const notReady = deps.notReady?.() ?? null;
  if (notReady !== null) return { status: 503, body: { error: `not ready: ${notReady}` } };
  if (parsed.kind === 'prompts') return acceptPrompts(parsed.prompts, parsed.invalid, deps);
  const tune = parsed.tune;

  const receivedAt = deps.now?.() ?? new Date();
  const result = await applyObservedTune({
    pool: deps.pool,
    prisma: deps.prisma,
    service: typeof deps.service === 'function' ? await deps.service() : deps.service,
    tune,
    source: 'webhook',
    now: receivedAt,
    trainingTimeoutMs: deps.trainingTimeoutMs,
    schema: deps.schema,
    host: deps.host,
    modelId: request.modelId,
    log: deps.log,
  });
  if (result.matched === 0) {
    deps.log?.info({ tuneId: tune.id }, 'callback for a tune no model trains; ignored');
    return { status: 202, body: { status: 'ignored', reason: 'unknown tune' } };
  }
  const failed = result.failed.length;
  if (failed > 0) deps.log?.warn({ tuneId: tune.id, failed: result.failed }, 'Astria callback: some models could not be written; the reconciler applies them');
  deps.log?.info({ tuneId: tune.id, matched: result.matched, applied: result.applied.length }, 'Astria callback applied');
  // Every matched model refused: nothing of it is in the database yet (Astria does not retry; the reconciler will).
  if (failed === result.matched) return { status: 503, body: { error: 'the database refused every write; the reconciler applies it later', matched: result.matched, failed } };
  return { status: 200, body: { status: 'ok', matched: result.matched, applied: result.applied.length, failed } };
}

/**
 * The prompts of one callback applied to their generations, one after another. 200 when any
 * generation matched; every matched generation's write refused is a 503 (Astria does not retry: the
 * reconciler applies them later). An app without a `generations` table answers 202.
 */
async function acceptPrompts(prompts: Prompt[], invalid: number, deps: CallbackDeps): Promise<CallbackResponse> {
  if (invalid > 0) deps.log?.warn({ invalid }, 'Astria prompt callback: some prompts did not validate; skipped');
  if (!(await generationsTablePresent(executorFor(deps), deps.host ?? DEFAULT_HOST_SCHEMA))) {
    deps.log?.info({ prompts: prompts.length }, 'Astria prompt callback, but the app has no generations table; ignored');
    return { status: 202, body: { status: 'ignored', reason: 'no generations table', prompts: prompts.length } };
  }
  const service = typeof deps.service === 'function' ? await deps.service() : deps.service;
  const receivedAt = deps.now?.() ?? new Date();
  let matched = 0;
  let applied = 0;
  const failed: { generationId: string; reason: string }[] = [];
  for (const prompt of prompts) {
    const result = await applyObservedPrompt({
      pool: deps.pool,
      prisma: deps.prisma,
      service,
      prompt,
      source: 'webhook',
      now: receivedAt,
      generationTimeoutMs: deps.trainingTimeoutMs,
      schema: deps.schema,
      host: deps.host,
      log: deps.log,
    });
    matched += result.matched;
    applied += result.applied.length;
    failed.push(...result.failed);
  }
  if (matched === 0) {
    deps.log?.info({ promptIds: prompts.slice(0, 10).map((prompt) => prompt.id) }, 'callback for prompts no generation waits on; ignored');
    return { status: 202, body: { status: 'ignored', reason: 'unknown prompt', prompts: prompts.length } };
  }
  if (failed.length > 0) deps.log?.warn({ failed }, 'Astria prompt callback: some generations could not be written; the reconciler applies them');
  deps.log?.info({ prompts: prompts.length, matched, applied }, 'Astria prompt callback applied');
  if (failed.length === matched) return { status: 503, body: { error: 'the database refused every write; the reconciler applies it later', matched, failed: failed.length } };
  return { status: 200, body: { status: 'ok', kind: 'prompt', matched, applied, failed: failed.length } };
}
