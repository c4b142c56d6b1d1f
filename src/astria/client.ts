import pLimit from 'p-limit';
import { Agent, errors as undiciErrors, request, type Dispatcher } from 'undici';
import type { z } from 'zod';
import type { Clock } from '../clock.js';
import type { Logger } from '../log.js';
import { ASTRIA_ENDPOINTS, type Metrics } from '../metrics.js';
import { fileApiKey, fixedApiKey } from './api-key.js';
import { RequestBudget } from './budget.js';
import { isPromptId, promptSchema, type Prompt } from './prompt.js';
import { isTuneId, tuneSchema, type Tune } from './tune.js';

export type TuneResult = { kind: 'tune'; tune: Tune } | { kind: 'gone'; tuneId: string } | { kind: 'failed'; reason: string };
export type PromptResult = { kind: 'prompt'; prompt: Prompt } | { kind: 'gone'; promptId: string } | { kind: 'failed'; reason: string };

/** One page of `GET /tunes`. `nextBeforeId` is the cursor for the next page, null at the end of the list. */
export type ListResult =
  | { kind: 'page'; tunes: Tune[]; nextBeforeId: number | null; skipped: number }
  /** `endpointMissing`: the list itself answered 404, so the base URL is wrong and no 404 of a tune can be trusted. */
  | { kind: 'failed'; reason: string; endpointMissing?: boolean };

/** One page of `GET /prompts`, paged exactly as the tune list. */
export type PromptListResult =
  | { kind: 'page'; prompts: Prompt[]; nextBeforeId: number | null; skipped: number }
  | Extract<ListResult, { kind: 'failed' }>;

export interface ListOptions {
  beforeId?: number | null;
  limit?: number;
}

export interface AstriaClient {
  getTune(tuneId: string, signal?: AbortSignal): Promise<TuneResult>;
  listTunes(options: ListOptions, signal?: AbortSignal): Promise<ListResult>;
  /**
   * `GET /tunes/:tune_id/prompts/:id`, or `GET /prompts/:id` when the tune id is unknown (null or not a
   * tune id): Astria serves a prompt at both.
   */
  getPrompt(tuneId: string | null, promptId: string, signal?: AbortSignal): Promise<PromptResult>;
  listPrompts(options: ListOptions, signal?: AbortSignal): Promise<PromptListResult>;
  /** Requests sent so far (retries included). */
  readonly calls: number;
  close(): Promise<void>;
}

/** Astria refused our key (HTTP 401). Nothing else can work: `--once` exits 1; the daemon pauses polling and tries the key again. */
export class AstriaAuthError extends Error {
  override name = 'AstriaAuthError';
}

export interface RetryPolicy {
  /** Attempts per call, the first included. */
  attempts: number;
  baseDelayMs: number;
  maxDelayMs: number;
}

export interface AstriaClientOptions {
  apiUrl: string;
  apiKey: string;
  /** `ASTRIA_API_KEY_FILE`: the key is re-read from it whenever the file changes (`apiKey` is its first value). */
  apiKeyFile?: string;
  /** `ASTRIA_WORKSPACE_ID`: sent as `X-Workspace-Id` on every request, so tunes made in that workspace (or in any, `all`) are seen. */
  workspaceId?: string;
  maxRps: number;
  concurrency: number;
  timeoutMs: number;
  log: Logger;
  metrics: Metrics;
  clock: Clock;
  retry?: Partial<RetryPolicy>;
  /** For tests: an undici MockAgent. Otherwise a keep-alive Agent of our own. */
  dispatcher?: Dispatcher;
}

const DEFAULT_RETRY: RetryPolicy = { attempts: 4, baseDelayMs: 1_000, maxDelayMs: 30_000 };
/** A 504 is Astria's own 30 s gateway timeout: the next try waits this many times the usual backoff. */
const GATEWAY_TIMEOUT_BACKOFF_FACTOR = 4;
const MAX_RETRY_AFTER_MS = 5 * 60_000;
/**
 * Caps on one answer, counted while it arrives. A tune or a prompt is a few KB and a page of 120 well under a MB;
 * with `ASTRIA_CONCURRENCY` GETs at once plus their parsed JSON, 2 MiB a tune keeps a hostile answer
 * far inside the manifests' 256 Mi.
 */
const MAX_GET_BYTES = 2 * 1024 * 1024;
const MAX_LIST_BYTES = 16 * 1024 * 1024;
const MAX_BODY_BYTES: Record<Endpoint, number> = {
  get_tune: MAX_GET_BYTES,
  list_tunes: MAX_LIST_BYTES,
  get_prompt: MAX_GET_BYTES,
  list_prompts: MAX_LIST_BYTES,
};
export const MAX_LIST_LIMIT = 120;

type Endpoint = (typeof ASTRIA_ENDPOINTS)[number];

/** What differs between reading tunes and reading prompts: their schema, name and endpoints. */
interface ResourceKind<T extends { id: number }> {
  /** In messages and log fields: `tune` or `prompt`. */
  noun: string;
  schema: z.ZodType<T>;
  get: Endpoint;
  list: Endpoint;
  listPath: string;
}

const TUNES: ResourceKind<Tune> = { noun: 'tune', schema: tuneSchema, get: 'get_tune', list: 'list_tunes', listPath: '/tunes' };
const PROMPTS: ResourceKind<Prompt> = {
  noun: 'prompt',
  schema: promptSchema,
  get: 'get_prompt',
  list: 'list_prompts',
  listPath: '/prompts',
};

type GetResult<T> = { kind: 'found'; value: T } | { kind: 'gone' } | { kind: 'failed'; reason: string };
type PageResult<T> = { kind: 'page'; items: T[]; nextBeforeId: number | null; skipped: number } | Extract<ListResult, { kind: 'failed' }>;
type Attempt =
  | { outcome: 'ok'; body: unknown }
  | { outcome: 'not_found' }
  /** A 404 without Astria's JSON body: whatever answered is not Astria. */
  | { outcome: 'not_astria'; reason: string }
  | { outcome: 'retry'; label: string; reason: string; delayMs: number }
  | { outcome: 'give_up'; label: string; reason: string };

export function createAstriaClient(options: AstriaClientOptions): AstriaClient {
  const retry = { ...DEFAULT_RETRY, ...options.retry };
  const budget = new RequestBudget(options.maxRps, options.clock);
  const limit = pLimit(options.concurrency);
  const ownAgent = options.dispatcher
    ? undefined
    : new Agent({
        keepAliveTimeout: 30_000,
        connect: { timeout: Math.min(options.timeoutMs, 10_000) },
        headersTimeout: options.timeoutMs,
        bodyTimeout: options.timeoutMs,
        connections: options.concurrency,
      });
  const dispatcher = options.dispatcher ?? ownAgent!;
  const apiKey = options.apiKeyFile ? fileApiKey(options.apiKeyFile, options.apiKey, options.log) : fixedApiKey(options.apiKey);
  // Astria scopes every object by workspace: without the header only the key's personal scope is seen.
  const workspaceHeader: Record<string, string> = options.workspaceId === undefined ? {} : { 'x-workspace-id': options.workspaceId };
  let calls = 0;

  function backoff(attempt: number): number {
    const ceiling = Math.min(retry.maxDelayMs, retry.baseDelayMs * 2 ** attempt);
    return ceiling / 2 + Math.random() * (ceiling / 2);
  }

  async function attemptOnce(endpoint: Endpoint, path: string, attempt: number, signal?: AbortSignal): Promise<Attempt> {
    await budget.take(signal);
    calls += 1;
    const count = (outcome: string) => options.metrics.astriaRequests.inc({ endpoint, outcome });
    const timeout = AbortSignal.timeout(options.timeoutMs);
    const headers = { authorization: `Bearer ${await apiKey.current()}`, accept: 'application/json', ...workspaceHeader };
    let response: Dispatcher.ResponseData;
    let text: string;
    try {
      response = await request(options.apiUrl + path, {
        method: 'GET',
        headers,
        dispatcher,
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
      text = await readText(response, MAX_BODY_BYTES[endpoint]);
    } catch (error) {
      if (signal?.aborted) throw signal.reason;
      if (error instanceof BodyTooLargeError) {
        count('invalid_body');
        return { outcome: 'give_up', label: 'invalid_body', reason: error.message };
      }
      const timedOut = timeout.aborted || error instanceof undiciErrors.HeadersTimeoutError || error instanceof undiciErrors.BodyTimeoutError;
      const label = timedOut ? 'timeout' : 'network_error';
      count(label);
      return { outcome: 'retry', label, reason: `${label}: ${(error as Error).message}`, delayMs: backoff(attempt) };
    }

    const status = response.statusCode;
    if (status >= 200 && status < 300) {
      try {
        const body: unknown = JSON.parse(text);
        budget.succeeded();
        count('ok');
        return { outcome: 'ok', body };
      } catch {
        count('invalid_body');
        options.log.warn({ endpoint, path, status, bytes: text.length }, 'skipping malformed JSON from Astria');
        return { outcome: 'give_up', label: 'invalid_body', reason: `malformed JSON from Astria (HTTP ${status})` };
      }
    }
    if (status === 404) {
      // Astria answers a missing tune in JSON; an HTML page (a website, an ingress default backend, a
      // wrong ASTRIA_API_URL path) says nothing about the tune, and must never mark a model ERROR.
      if (!isJsonObject(text)) {
        count('client_error');
        return { outcome: 'not_astria', reason: `HTTP 404 without Astria's JSON body: check ASTRIA_API_URL` };
      }
      budget.succeeded();
      count('not_found');
      return { outcome: 'not_found' };
    }
    if (status === 401) {
      count('unauthorized');
      throw new AstriaAuthError(`Astria rejected the API key (HTTP ${status}); check ${options.apiKeyFile ? 'ASTRIA_API_KEY_FILE' : 'ASTRIA_API_KEY'}`);
    }
    if (status === 403) {
      // The key works (or every call would be a 401): this one resource is off limits to it.
      count('forbidden');
      return { outcome: 'give_up', label: 'forbidden', reason: `Astria refused access (HTTP 403): ${errorText(text)}` };
    }
    if (status === 429) {
      count('rate_limited');
      const pauseMs = parseRetryAfter(response.headers['retry-after'], options.clock.now()) ?? backoff(attempt);
      budget.rateLimited(pauseMs);
      // The budget holds every caller until the pause is over; this one just queues up again.
      return { outcome: 'retry', label: 'rate_limited', reason: 'rate limited (HTTP 429)', delayMs: 0 };
    }
    if (status === 504) {
      count('gateway_timeout');
      return {
        outcome: 'retry',
        label: 'gateway_timeout',
        reason: 'Astria gateway timeout (HTTP 504)',
        delayMs: backoff(attempt) * GATEWAY_TIMEOUT_BACKOFF_FACTOR,
      };
    }
    if (status >= 500) {
      count('server_error');
      return { outcome: 'retry', label: 'server_error', reason: `Astria server error (HTTP ${status})`, delayMs: backoff(attempt) };
    }
    count('client_error');
    return { outcome: 'give_up', label: 'client_error', reason: `Astria answered HTTP ${status}: ${errorText(text)}` };
  }

  /** Runs one logical call with retries; each attempt holds a concurrency slot only while it is sent. */
  async function call(endpoint: Endpoint, path: string, signal?: AbortSignal): Promise<Exclude<Attempt, { outcome: 'retry' }>> {
    let last: Extract<Attempt, { outcome: 'retry' }> | undefined;
    for (let attempt = 0; attempt < retry.attempts; attempt += 1) {
      const result = await limit(() => attemptOnce(endpoint, path, attempt, signal));
      if (result.outcome !== 'retry') return result;
      last = result;
      options.log.debug({ endpoint, path, attempt, reason: result.reason }, 'Astria call failed, will retry');
      if (attempt + 1 < retry.attempts && result.delayMs > 0) await options.clock.sleep(result.delayMs, signal);
    }
    return { outcome: 'give_up', label: last!.label, reason: `${last!.reason}, after ${retry.attempts} attempts` };
  }

  async function getOne<T extends { id: number }>(resource: ResourceKind<T>, id: string, path: string, signal?: AbortSignal): Promise<GetResult<T>> {
    const result = await call(resource.get, path, signal);
    if (result.outcome === 'not_found') return { kind: 'gone' };
    if (result.outcome === 'give_up' || result.outcome === 'not_astria') return { kind: 'failed', reason: result.reason };
    const parsed = resource.schema.safeParse(result.body);
    if (!parsed.success) {
      options.log.warn({ [`${resource.noun}Id`]: id, issues: parsed.error.issues.slice(0, 3) }, `skipping invalid ${resource.noun} body from Astria`);
      return { kind: 'failed', reason: `invalid ${resource.noun} body from Astria` };
    }
    if (String(parsed.data.id) !== id) return { kind: 'failed', reason: `Astria answered ${resource.noun} ${parsed.data.id} for ${id}` };
    return { kind: 'found', value: parsed.data };
  }

  async function listPage<T extends { id: number }>(
    resource: ResourceKind<T>,
    { beforeId, limit: pageSize = MAX_LIST_LIMIT }: ListOptions,
    signal?: AbortSignal,
  ): Promise<PageResult<T>> {
    const limit = Math.max(1, Math.min(MAX_LIST_LIMIT, Math.floor(pageSize)));
    const query = new URLSearchParams({ limit: String(limit) });
    if (beforeId != null) query.set('before_id', String(beforeId));
    const result = await call(resource.list, `${resource.listPath}?${query}`, signal);
    if (result.outcome === 'not_found' || result.outcome === 'not_astria') {
      return { kind: 'failed', reason: `the ${resource.noun} list answered HTTP 404: check ASTRIA_API_URL`, endpointMissing: true };
    }
    if (result.outcome === 'give_up') return { kind: 'failed', reason: result.reason };
    if (!Array.isArray(result.body)) return { kind: 'failed', reason: `${resource.noun} list from Astria is not an array` };
    return parseListPage(resource, result.body, options.log);
  }

  return {
    get calls() {
      return calls;
    },

    async getTune(tuneId, signal) {
      if (!isTuneId(tuneId)) return { kind: 'failed', reason: `trainingJobId "${tuneId}" is not an Astria tune id` };
      const result = await getOne(TUNES, tuneId, `/tunes/${tuneId}`, signal);
      if (result.kind === 'found') return { kind: 'tune', tune: result.value };
      return result.kind === 'gone' ? { kind: 'gone', tuneId } : result;
    },

    async listTunes(listOptions, signal) {
      const result = await listPage(TUNES, listOptions, signal);
      if (result.kind !== 'page') return result;
      const { items: tunes, ...rest } = result;
      return { ...rest, tunes };
    },

    async getPrompt(tuneId, promptId, signal) {
      if (!isPromptId(promptId)) return { kind: 'failed', reason: `jobId "${promptId}" is not an Astria prompt id` };
      const path = isTuneId(tuneId) ? `/tunes/${tuneId}/prompts/${promptId}` : `/prompts/${promptId}`;
      const result = await getOne(PROMPTS, promptId, path, signal);
      if (result.kind === 'gone') return { kind: 'gone', promptId };
      if (result.kind === 'failed') return result;
      if (isTuneId(tuneId) && String(result.value.tune_id) !== tuneId) {
        return { kind: 'failed', reason: `Astria answered prompt ${promptId} of tune ${result.value.tune_id}, not of tune ${tuneId}` };
      }
      return { kind: 'prompt', prompt: result.value };
    },

    async listPrompts(listOptions, signal) {
      const result = await listPage(PROMPTS, listOptions, signal);
      if (result.kind !== 'page') return result;
      const { items: prompts, ...rest } = result;
      return { ...rest, prompts };
    },

    async close() {
      await ownAgent?.close();
    },
  };
}

/** Validates each element on its own: one bad element is logged and skipped, the rest of the page counts. */
function parseListPage<T extends { id: number }>(resource: ResourceKind<T>, items: unknown[], log: Logger): PageResult<T> {
  const valid: T[] = [];
  let skipped = 0;
  let lowestId: number | null = null;
  for (const item of items) {
    const id = Number((item as { id?: unknown } | null)?.id);
    if (Number.isSafeInteger(id) && id > 0) lowestId = lowestId === null ? id : Math.min(lowestId, id);
    const parsed = resource.schema.safeParse(item);
    if (parsed.success) valid.push(parsed.data);
    else {
      skipped += 1;
      log.warn(
        { [`${resource.noun}Id`]: Number.isFinite(id) ? id : undefined, issues: parsed.error.issues.slice(0, 3) },
        `skipping invalid ${resource.noun} in list`,
      );
    }
  }
  if (items.length > 0 && lowestId === null) return { kind: 'failed', reason: `${resource.noun} list from Astria has no usable ids` };
  return { kind: 'page', items: valid, nextBeforeId: items.length === 0 ? null : lowestId, skipped };
}

/**
 * The body as text, counted while it arrives: a chunked (or lying) answer is cut off at the cap, not
 * buffered whole first.
 */
async function readText(response: Dispatcher.ResponseData, maxBytes: number): Promise<string> {
  const tooLarge = (size: number | string) => {
    response.body.destroy();
    return new BodyTooLargeError(`Astria's answer of ${size} bytes exceeds ${maxBytes}`);
  };
  const declared = Number(response.headers['content-length']);
  if (declared > maxBytes) throw tooLarge(declared);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > maxBytes) throw tooLarge(`over ${maxBytes}`);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

/** Not retried: the same request would bring the same answer. */
class BodyTooLargeError extends Error {
  override name = 'BodyTooLargeError';
}

function isJsonObject(text: string): boolean {
  try {
    const body: unknown = JSON.parse(text);
    return typeof body === 'object' && body !== null;
  } catch {
    return false;
  }
}

/** `Retry-After` as seconds or an HTTP date, in milliseconds from now; null when absent or unusable. */
export function parseRetryAfter(header: string | string[] | undefined, now: number): number | null {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return null;
  const ms = /^\s*\d+(\.\d+)?\s*$/.test(value) ? Number(value) * 1000 : Date.parse(value) - now;
  if (!Number.isFinite(ms) || ms < 0) return null;
  return Math.min(ms, MAX_RETRY_AFTER_MS);
}

/** A short description of an Astria error body (`{"error"}`, `{"message"}` or `{"errors": [...]}`). */
function errorText(text: string): string {
  try {
    const body = JSON.parse(text) as { error?: unknown; message?: unknown; errors?: unknown };
    const detail = body.error ?? body.message ?? body.errors;
    if (detail !== undefined) return (typeof detail === 'string' ? detail : JSON.stringify(detail)).slice(0, 200);
  } catch {
    // not JSON: fall through to the raw text
  }
  return text.slice(0, 200);
}
