/**
 * A simulated Astria API served over real HTTP on loopback, shared by the demo, end-to-end tests and
 * benchmarks. It speaks what the Astria API facts (astria-api.md) describe: Bearer auth, `GET /tunes/:id` (bare tune),
 * `GET /tunes` (bare array, newest first, `limit`/`before_id`/`offset`), `{"error": "..."}` bodies,
 * workspaces (`X-Workspace-Id`) and every failure shape seen in the wild. Prompts (image generations)
 * are served the same way at `GET /prompts`, `GET /tunes/:tune_id/prompts` (that tune's), `GET /prompts/:id`
 * and `GET /tunes/:tune_id/prompts/:id`, with ids of their own sequence, created by
 * `POST /tunes/:tune_id/prompts` (JSON `{"prompt": {"text", "callback"}}`, as an app asks for images), and
 * posted to callbacks like tunes.
 * Failures are scripted with one mechanism, `injectFaults`; rate limiting and latency are options.
 */
import { createServer, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';

export interface SimulatedTuneInit {
  id?: number;
  title?: string;
  /** The callback URL the app gave at creation (`?model=<id>` names the model); default none. */
  callback?: string | null;
  /** Default: now, or the given `startedTrainingAt` / `trainedAt` when earlier. */
  createdAt?: Date;
  startedTrainingAt?: Date | null;
  eta?: Date | null;
  trainedAt?: Date | null;
  /** Undocumented failure fields, as integrations read them (a string or an object each). */
  status?: string;
  errorMessage?: unknown;
  error?: unknown;
  userError?: unknown;
}

/** A failure as `fail` writes it: any of the undocumented fields integrations read, each as given. */
export interface SimulatedFailure {
  status?: string;
  error?: unknown;
  error_message?: unknown;
  user_error?: unknown;
}

export interface Fault {
  /** Which requests it hits; default `any` (which also hits unknown paths). */
  endpoint?: Exclude<Endpoint, 'other'> | 'any';
  /** Default 500 (or the normal answer's status for `truncate`). */
  status?: number;
  headers?: Record<string, string>;
  /** Default `{"error": "<reason phrase>"}` (or the normal answer's body for `truncate`). */
  body?: string;
  /** Extra delay before answering, on top of `latencyMs`. */
  delayMs?: number;
  /** Never answers; the socket is released by the client giving up or by `close()`. */
  hang?: boolean;
  /** Announces the full body's content-length, sends half of it, then destroys the socket. */
  truncate?: boolean;
}

export interface SimulatedAstriaOptions {
  apiKey: string;
  /** Added to every response; default 0. */
  latencyMs?: number;
  /** More than this many requests arriving in any sliding 1000 ms window → 429; default unlimited. */
  maxRps?: number;
  /**
   * Most objects a list page serves, whatever `limit` asks (default 120, Astria's documented most):
   * deployments have served 100, or 20 when `limit` was ignored, with more below.
   */
  maxPageSize?: number;
  /** When set, 429s carry `Retry-After` with this many seconds (Astria documents none). */
  retryAfterSeconds?: number;
  host?: string;
  port?: number;
  /** Clock for the timestamps written into tunes; default real time. */
  now?: () => Date;
  /**
   * The workspace every tune lives in. When set, a request whose `X-Workspace-Id` is neither it nor
   * `all` sees the key's personal scope, which holds no tunes: the list answers an empty page and a
   * tune's GET a 404, as Astria answers for an object outside the scope it was asked in.
   */
  workspaceId?: string;
}

export interface SimulatedAstriaStats {
  requests: number;
  get: number;
  list: number;
  prompt_get: number;
  prompt_list: number;
  prompt_create: number;
  /** Bytes of the response bodies sent (what a client pulls from Astria, headers aside). */
  bytes: number;
  byStatus: Record<number, number>;
  /** Peak number of requests being served at once. */
  maxConcurrent: number;
}

export type Endpoint = 'get' | 'list' | 'prompt_get' | 'prompt_list' | 'prompt_create' | 'other';

export interface RequestEvent {
  method: string;
  /** Path with its query string, as sent. */
  path: string;
  endpoint: Endpoint;
  /** Arrival time, epoch milliseconds. */
  at: number;
  /** The `X-Workspace-Id` header, null when absent. */
  workspaceId: string | null;
}

export type TuneJson = Record<string, unknown> & { id: number };

export interface SimulatedAstria {
  readonly url: string;
  readonly stats: SimulatedAstriaStats;
  resetStats(): void;
  addTune(init?: SimulatedTuneInit): TuneJson;
  addTunes(count: number, init?: (index: number) => SimulatedTuneInit): TuneJson[];
  /** The stored object itself: edits to it show in later responses. */
  getTune(id: number): TuneJson | undefined;
  train(id: number, at?: Date): void;
  /** A message is `status: failed` with that `error_message`; an object writes exactly the fields given. */
  fail(id: number, failure?: string | SimulatedFailure): void;
  remove(id: number): void;
  injectFaults(fault: Fault, count?: number): void;
  clearFaults(): void;
  onRequest(listener: (event: RequestEvent) => void): () => void;
  fireCallback(id: number, url: string, options?: { bare?: boolean }): Promise<number>;
  close(): Promise<void>;

  // Prompts (image generations). Their ids are a sequence of their own, denser than tune ids (a pack
  // makes dozens at once): the same number can name a tune and a prompt.
  addPrompt(tuneId: number, init?: SimulatedPromptInit): PromptJson;
  /** A pack's burst: `count` prompts for one tune, consecutive ids. */
  addPack(tuneId: number, count: number, init?: (index: number) => SimulatedPromptInit): PromptJson[];
  /** The stored object itself: edits to it show in later responses. */
  getPrompt(id: number): PromptJson | undefined;
  startPrompt(id: number, at?: Date): void;
  /** Done with `images` (default four mock URLs; `[]` for a prompt the safety filter emptied). */
  finishPrompt(id: number, options?: { images?: string[]; at?: Date }): void;
  /** Settled with Astria's `user_error`, no images. */
  failPrompt(id: number, userError?: string): void;
  removePrompt(id: number): void;
  /**
   * POSTs prompts to `url` as Astria's callbacks do: `wrapped` `{"prompt": …}` (one prompt), `bare`
   * (one prompt), or `array` (a pack's `prompts_callback`, any number). Returns the HTTP status.
   */
  firePromptCallback(ids: number | number[], url: string, options?: { shape?: PromptCallbackShape }): Promise<number>;
}

export interface SimulatedPromptInit {
  id?: number;
  text?: string;
  callback?: string | null;
  createdAt?: Date;
  startedAt?: Date | null;
}

export type PromptJson = Record<string, unknown> & { id: number; tune_id: number };
export type PromptCallbackShape = 'wrapped' | 'bare' | 'array';

const FIRST_ID = 1000;
const DEFAULT_LIMIT = 20;
const MAX_LIMIT = 120;
const MAX_OFFSET = 200;
/** Astria's documented bound for the prompt list's `offset`. */
const MAX_PROMPT_OFFSET = 10_000;
/** Astria's default `num_images`. */
const DEFAULT_PROMPT_IMAGES = 4;
const RATE_WINDOW_MS = 1000;
/** Astria deletes a tune's storage 30 days after training unless extended. */
const STORAGE_MS = 30 * 24 * 60 * 60 * 1000;

export async function startSimulatedAstria(options: SimulatedAstriaOptions): Promise<SimulatedAstria> {
  const astria = new SimulatedAstriaServer(options);
  await astria.listen(options.host ?? '127.0.0.1', options.port ?? 0);
  return astria;
}

interface Answer {
  status: number;
  body: string;
  headers?: Record<string, string>;
}

class SimulatedAstriaServer implements SimulatedAstria {
  readonly stats: SimulatedAstriaStats = { requests: 0, get: 0, list: 0, prompt_get: 0, prompt_list: 0, prompt_create: 0, bytes: 0, byStatus: {}, maxConcurrent: 0 };
  private readonly server: Server;
  private readonly tunes = new IdStore<TuneJson>('tune');
  private readonly prompts = new IdStore<PromptJson>('prompt');
  private readonly faults = new FaultQueue();
  private readonly rate: SlidingWindowLimiter | undefined;
  private readonly listeners = new Set<(event: RequestEvent) => void>();
  private readonly now: () => Date;
  private inFlight = 0;
  private address = '';
  private closing: Promise<void> | undefined;

  constructor(private readonly options: SimulatedAstriaOptions) {
    this.now = options.now ?? (() => new Date());
    this.rate = options.maxRps === undefined ? undefined : new SlidingWindowLimiter(options.maxRps, RATE_WINDOW_MS);
    this.server = createServer((req, res) => {
      this.handle(req, res).catch((error: unknown) => res.destroy(error as Error));
    });
  }

  get url(): string {
    return this.address;
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        const { port: bound } = this.server.address() as AddressInfo;
        this.address = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
        resolve();
      });
    });
  }

  resetStats(): void {
    // Mutated in place so callers holding `stats` keep seeing live numbers.
    Object.assign(this.stats, { requests: 0, get: 0, list: 0, prompt_get: 0, prompt_list: 0, prompt_create: 0, bytes: 0, byStatus: {}, maxConcurrent: this.inFlight });
  }

  addTune(init: SimulatedTuneInit = {}): TuneJson {
    return this.tunes.add(init.id, (id) => buildTune(id, init, this.now()));
  }

  addTunes(count: number, init?: (index: number) => SimulatedTuneInit): TuneJson[] {
    const now = this.now(); // one clock read for the batch keeps bulk seeding fast
    return Array.from({ length: count }, (_, index) => {
      const tuneInit = init?.(index) ?? {};
      return this.tunes.add(tuneInit.id, (id) => buildTune(id, tuneInit, now));
    });
  }

  getTune(id: number): TuneJson | undefined {
    return this.tunes.get(id);
  }

  train(id: number, at: Date = this.now()): void {
    markTrained(this.tunes.require(id), at);
  }

  fail(id: number, failure: string | SimulatedFailure = 'Training failed'): void {
    const tune = this.tunes.require(id);
    Object.assign(tune, typeof failure === 'string' ? { status: 'failed', error_message: failure } : failure);
    tune.updated_at = this.now().toISOString();
  }

  remove(id: number): void {
    this.tunes.remove(id);
  }

  injectFaults(fault: Fault, count = 1): void {
    this.faults.push(fault, count);
  }

  clearFaults(): void {
    this.faults.clear();
  }

  onRequest(listener: (event: RequestEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  async fireCallback(id: number, url: string, options: { bare?: boolean } = {}): Promise<number> {
    const tune = this.tunes.require(id);
    return postCallback(url, options.bare ? tune : { tune });
  }

  addPrompt(tuneId: number, init: SimulatedPromptInit = {}): PromptJson {
    return this.prompts.add(init.id, (id) => buildPrompt(id, tuneId, init, this.now()));
  }

  addPack(tuneId: number, count: number, init?: (index: number) => SimulatedPromptInit): PromptJson[] {
    const now = this.now();
    return Array.from({ length: count }, (_, index) => {
      const promptInit = init?.(index) ?? {};
      return this.prompts.add(promptInit.id, (id) => buildPrompt(id, tuneId, promptInit, now));
    });
  }

  getPrompt(id: number): PromptJson | undefined {
    return this.prompts.get(id);
  }

  startPrompt(id: number, at: Date = this.now()): void {
    const prompt = this.prompts.require(id);
    prompt.started_training_at = at.toISOString();
    prompt.updated_at = at.toISOString();
  }

  finishPrompt(id: number, options: { images?: string[]; at?: Date } = {}): void {
    const prompt = this.prompts.require(id);
    const at = (options.at ?? this.now()).toISOString();
    const images =
      options.images ?? Array.from({ length: DEFAULT_PROMPT_IMAGES }, (_, n) => `https://sdbooth2-production.s3.amazonaws.com/mock/${id}/${n + 1}.jpg`);
    Object.assign(prompt, { images, trained_at: at, started_training_at: prompt.started_training_at ?? at, updated_at: at });
  }

  failPrompt(id: number, userError = 'Image generation failed'): void {
    const prompt = this.prompts.require(id);
    Object.assign(prompt, { user_error: userError, images: [], updated_at: this.now().toISOString() });
  }

  removePrompt(id: number): void {
    this.prompts.remove(id);
  }

  async firePromptCallback(ids: number | number[], url: string, options: { shape?: PromptCallbackShape } = {}): Promise<number> {
    const prompts = (Array.isArray(ids) ? ids : [ids]).map((id) => this.prompts.require(id));
    const shape = options.shape ?? (Array.isArray(ids) ? 'array' : 'wrapped');
    if (shape !== 'array' && prompts.length !== 1) throw new Error(`a ${shape} prompt callback carries exactly one prompt`);
    return postCallback(url, shape === 'array' ? prompts : shape === 'bare' ? prompts[0] : { prompt: prompts[0] });
  }

  close(): Promise<void> {
    this.closing ??= new Promise((resolve, reject) => {
      this.server.close((error) => (error ? reject(error) : resolve()));
      // Idle keep-alive and hanging sockets would otherwise hold close() open.
      this.server.closeAllConnections();
    });
    return this.closing;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    // Rate limiting is decided on arrival, before any latency, like a gateway in front of the API.
    const limited = this.rate?.isOverLimit(performance.now()) ?? false;
    this.trackInFlight(res);
    const url = new URL(req.url ?? '/', 'http://astria.invalid');
    const route = classify(req.method ?? 'GET', url.pathname);
    this.count(route.endpoint);
    const workspaceHeader = req.headers['x-workspace-id'];
    const workspaceId = typeof workspaceHeader === 'string' ? workspaceHeader : null;
    this.emit({ method: req.method ?? 'GET', path: req.url ?? '/', endpoint: route.endpoint, at: Date.now(), workspaceId });

    const body = route.endpoint === 'prompt_create' ? await readBody(req) : '';
    const fault = this.faults.take(route.endpoint);
    await pause(this.options.latencyMs ?? 0, res);
    const inScope = this.options.workspaceId === undefined || workspaceId === this.options.workspaceId || workspaceId === 'all';
    if (fault) return this.sendFault(res, fault, () => this.answer(route, url.searchParams, inScope, body));
    if (limited) return this.send(res, this.tooManyRequests());
    if (req.headers.authorization !== `Bearer ${this.options.apiKey}`) {
      return this.send(res, errorAnswer(401, 'Unauthorized'));
    }
    this.send(res, this.answer(route, url.searchParams, inScope, body));
  }

  private trackInFlight(res: ServerResponse): void {
    this.inFlight += 1;
    this.stats.maxConcurrent = Math.max(this.stats.maxConcurrent, this.inFlight);
    res.once('close', () => {
      this.inFlight -= 1;
    });
  }

  private count(endpoint: Endpoint): void {
    this.stats.requests += 1;
    if (endpoint !== 'other') this.stats[endpoint] += 1;
  }

  private emit(event: RequestEvent): void {
    for (const listener of this.listeners) listener(event);
  }

  private tooManyRequests(): Answer {
    const answer = errorAnswer(429, 'Too many requests');
    const seconds = this.options.retryAfterSeconds;
    return seconds === undefined ? answer : { ...answer, headers: { 'retry-after': String(seconds) } };
  }

  /** `inScope`: the request was made in the objects' workspace; out of it, the scope holds nothing. */
  private answer(route: Route, query: URLSearchParams, inScope: boolean, body: string): Answer {
    if (route.endpoint === 'get') return this.answerGet(route.id, inScope);
    if (route.endpoint === 'list') return inScope ? answerPage(this.tunes, query, MAX_OFFSET, this.options.maxPageSize) : jsonAnswer(200, []);
    if (!inScope) return route.endpoint === 'prompt_list' ? jsonAnswer(200, []) : errorAnswer(404, 'Not found');
    if (route.endpoint === 'prompt_get') return this.answerPromptGet(route.id, route.tuneId);
    if (route.endpoint === 'prompt_list') {
      const { tuneId } = route;
      return answerPage(this.prompts, query, MAX_PROMPT_OFFSET, this.options.maxPageSize, tuneId === undefined ? undefined : (prompt) => String(prompt.tune_id) === tuneId);
    }
    if (route.endpoint === 'prompt_create') return this.createPrompt(route.tuneId, body);
    return errorAnswer(404, 'Not found');
  }

  /** A new prompt, queued, for an existing tune: Astria answers with the prompt object. */
  private createPrompt(tuneId: string, body: string): Answer {
    const tune = /^\d+$/.test(tuneId) ? this.tunes.get(Number(tuneId)) : undefined;
    if (!tune) return errorAnswer(404, 'Not found');
    let fields: unknown;
    try {
      fields = (JSON.parse(body) as { prompt?: unknown }).prompt;
    } catch {
      return errorAnswer(422, 'body is not JSON');
    }
    const { text, callback } = (fields ?? {}) as { text?: unknown; callback?: unknown };
    if (typeof text !== 'string' || text.trim() === '') return errorAnswer(422, "text can't be blank");
    const prompt = this.addPrompt(tune.id, { text, callback: typeof callback === 'string' ? callback : null });
    return jsonAnswer(201, prompt);
  }

  private answerGet(id: string, inScope: boolean): Answer {
    const tune = inScope && /^\d+$/.test(id) ? this.tunes.get(Number(id)) : undefined;
    return tune ? jsonAnswer(200, tune) : errorAnswer(404, 'Not found');
  }

  /** Under a tune, the prompt must be that tune's. */
  private answerPromptGet(id: string, tuneId: string | undefined): Answer {
    const prompt = /^\d+$/.test(id) ? this.prompts.get(Number(id)) : undefined;
    if (!prompt || (tuneId !== undefined && String(prompt.tune_id) !== tuneId)) return errorAnswer(404, 'Not found');
    return jsonAnswer(200, prompt);
  }

  private async sendFault(res: ServerResponse, fault: Fault, normal: () => Answer): Promise<void> {
    await pause(fault.delayMs ?? 0, res);
    if (fault.hang) return;
    const base = fault.truncate ? normal() : undefined;
    const status = fault.status ?? base?.status ?? 500;
    const body = fault.body ?? base?.body ?? errorBody(STATUS_CODES[status] ?? 'Error');
    if (fault.truncate) return this.sendTruncated(res, { status, body, headers: fault.headers });
    this.send(res, { status, body, headers: fault.headers });
  }

  private send(res: ServerResponse, answer: Answer): void {
    if (res.destroyed) return; // the client gave up or close() ran while we waited
    const length = Buffer.byteLength(answer.body);
    this.writeHead(res, answer, length);
    this.stats.bytes += length;
    res.end(answer.body);
  }

  private sendTruncated(res: ServerResponse, answer: Answer): void {
    if (res.destroyed) return;
    const bytes = Buffer.from(answer.body);
    this.writeHead(res, answer, bytes.length);
    this.stats.bytes += Math.floor(bytes.length / 2);
    res.write(bytes.subarray(0, Math.floor(bytes.length / 2)), () => res.destroy());
  }

  private writeHead(res: ServerResponse, answer: Answer, contentLength: number): void {
    this.stats.byStatus[answer.status] = (this.stats.byStatus[answer.status] ?? 0) + 1;
    res.writeHead(answer.status, {
      'content-type': 'application/json; charset=utf-8',
      'content-length': String(contentLength),
      ...answer.headers,
    });
  }
}

/** Objects by id, plus their ids in ascending order so list pages are binary searches, not sorts. */
class IdStore<T extends { id: number }> {
  private readonly byId = new Map<number, T>();
  private readonly ids: number[] = [];
  private nextId = FIRST_ID;

  /** `noun` names the kind in errors: `tune` or `prompt`. */
  constructor(private readonly noun: string) {}

  add(explicitId: number | undefined, build: (id: number) => T): T {
    const id = explicitId ?? this.nextId;
    if (!Number.isSafeInteger(id) || id < 1) throw new Error(`${this.noun} id must be a positive integer: ${id}`);
    if (this.byId.has(id)) throw new Error(`${this.noun} ${id} already exists`);
    this.nextId = Math.max(this.nextId, id + 1);
    const item = build(id);
    this.byId.set(id, item);
    // Auto-increment ids always append; only explicit lower ids pay for an insertion.
    const last = this.ids[this.ids.length - 1];
    if (last === undefined || id > last) this.ids.push(id);
    else this.ids.splice(lowerBound(this.ids, id), 0, id);
    return item;
  }

  get(id: number): T | undefined {
    return this.byId.get(id);
  }

  require(id: number): T {
    const item = this.byId.get(id);
    if (!item) throw new Error(`no simulated ${this.noun} ${id}`);
    return item;
  }

  remove(id: number): void {
    if (!this.byId.delete(id)) return;
    this.ids.splice(lowerBound(this.ids, id), 1);
  }

  /** Newest first: ids strictly below `beforeId` (when given), of those `keep` keeps (default all), skipping `offset`, at most `limit`. */
  page(beforeId: number | undefined, offset: number, limit: number, keep: (item: T) => boolean = () => true): T[] {
    const page: T[] = [];
    let skip = offset;
    for (let index = (beforeId === undefined ? this.ids.length : lowerBound(this.ids, beforeId)) - 1; index >= 0 && page.length < limit; index -= 1) {
      const item = this.byId.get(this.ids[index] as number) as T;
      if (!keep(item)) continue;
      if (skip > 0) skip -= 1;
      else page.push(item);
    }
    return page;
  }
}

/** Scripted faults, consumed first-in first-out by the requests they match. */
class FaultQueue {
  private entries: { fault: Fault; remaining: number }[] = [];

  push(fault: Fault, count: number): void {
    if (count > 0) this.entries.push({ fault, remaining: count });
  }

  take(endpoint: Endpoint): Fault | undefined {
    const index = this.entries.findIndex(({ fault }) => (fault.endpoint ?? 'any') === 'any' || fault.endpoint === endpoint);
    const entry = this.entries[index];
    if (!entry) return undefined;
    entry.remaining -= 1;
    if (entry.remaining === 0) this.entries.splice(index, 1);
    return entry.fault;
  }

  clear(): void {
    this.entries = [];
  }
}

/** Counts every arrival (refused ones too) in a sliding window, as a gateway would. */
class SlidingWindowLimiter {
  private readonly arrivals: number[] = [];

  constructor(
    private readonly max: number,
    private readonly windowMs: number,
  ) {}

  isOverLimit(now: number): boolean {
    while (this.arrivals.length > 0 && (this.arrivals[0] as number) <= now - this.windowMs) this.arrivals.shift();
    this.arrivals.push(now);
    return this.arrivals.length > this.max;
  }
}

type Route =
  | { endpoint: 'get'; id: string }
  | { endpoint: 'list' }
  | { endpoint: 'prompt_get'; id: string; tuneId?: string }
  /** Under a tune: that tune's prompts only. */
  | { endpoint: 'prompt_list'; tuneId?: string }
  | { endpoint: 'prompt_create'; tuneId: string }
  | { endpoint: 'other' };

function classify(method: string, pathname: string): Route {
  const create = method === 'POST' ? /^\/tunes\/([^/]+)\/prompts$/.exec(pathname) : null;
  if (create) return { endpoint: 'prompt_create', tuneId: create[1] as string };
  if (method !== 'GET') return { endpoint: 'other' };
  if (pathname === '/tunes') return { endpoint: 'list' };
  const match = /^\/tunes\/([^/]+)$/.exec(pathname);
  return match ? { endpoint: 'get', id: match[1] as string } : classifyPrompt(pathname);
}

function classifyPrompt(pathname: string): Route {
  if (pathname === '/prompts') return { endpoint: 'prompt_list' };
  const bare = /^\/prompts\/([^/]+)$/.exec(pathname);
  if (bare) return { endpoint: 'prompt_get', id: bare[1] as string };
  const nested = /^\/tunes\/([^/]+)\/prompts\/([^/]+)$/.exec(pathname);
  if (nested) return { endpoint: 'prompt_get', id: nested[2] as string, tuneId: nested[1] as string };
  const ofTune = /^\/tunes\/([^/]+)\/prompts$/.exec(pathname);
  return ofTune ? { endpoint: 'prompt_list', tuneId: ofTune[1] as string } : { endpoint: 'other' };
}

/** One list page of `store`: newest first, `limit`/`before_id`/`offset` as Astria reads them. */
function answerPage<T extends { id: number }>(store: IdStore<T>, query: URLSearchParams, maxOffset: number, maxPageSize = MAX_LIMIT, keep?: (item: T) => boolean): Answer {
  const limit = readCount(query, 'limit', DEFAULT_LIMIT, 1);
  const offset = readCount(query, 'offset', 0, 0);
  const beforeId = readCount(query, 'before_id', undefined, 0);
  if (limit === null || offset === null || beforeId === null) return errorAnswer(400, 'Invalid paging parameters');
  if (offset > maxOffset) return errorAnswer(400, `offset must be at most ${maxOffset}`);
  return jsonAnswer(200, store.page(beforeId, offset, Math.min(limit, maxPageSize), keep));
}

function buildTune(id: number, init: SimulatedTuneInit, now: Date): TuneJson {
  // A tune is created before it starts and finishes: one seeded as trained an hour ago was created by then.
  const createdAt = (init.createdAt ?? earliest(now, init.startedTrainingAt, init.trainedAt)).toISOString();
  const tune: TuneJson = {
    id,
    title: init.title ?? `Tune ${id}`,
    name: 'person',
    is_api: true,
    token: 'ohwx',
    base_tune_id: null,
    args: null,
    steps: null,
    face_crop: null,
    ckpt_url: null,
    ckpt_urls: [],
    eta: init.eta?.toISOString() ?? null,
    trained_at: null,
    started_training_at: init.startedTrainingAt?.toISOString() ?? null,
    expires_at: null,
    created_at: createdAt,
    updated_at: createdAt,
    branch: 'flux1',
    model_type: 'lora',
    url: `https://www.astria.ai/tunes/${id}.json`,
    orig_images: [`https://www.astria.ai/mock/${id}/1.jpg`],
    callback: init.callback ?? null,
  };
  // Reference tunes come back already trained at creation.
  if (init.trainedAt) markTrained(tune, init.trainedAt);
  // Undocumented failure fields appear only when scripted, as in the wild.
  if (init.status !== undefined) tune.status = init.status;
  if (init.errorMessage !== undefined) tune.error_message = init.errorMessage;
  if (init.error !== undefined) tune.error = init.error;
  if (init.userError !== undefined) tune.user_error = init.userError;
  return tune;
}

/** A prompt as Astria's docs show it, queued: no images and no `trained_at` until it is done. */
function buildPrompt(id: number, tuneId: number, init: SimulatedPromptInit, now: Date): PromptJson {
  const createdAt = (init.createdAt ?? now).toISOString();
  return {
    id,
    callback: init.callback ?? null,
    text: init.text ?? `ohwx person, portrait photo ${id}`,
    negative_prompt: '',
    cfg_scale: null,
    steps: null,
    seed: null,
    trained_at: null,
    started_training_at: init.startedAt?.toISOString() ?? null,
    created_at: createdAt,
    updated_at: createdAt,
    tune_id: tuneId,
    url: `https://api.astria.ai/tunes/${tuneId}/prompts/${id}.json`,
    images: [],
  };
}

/** A request's body as text (a create's JSON is small). */
async function readBody(req: IncomingMessage): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

/** POSTs one callback body as Astria does (never retried) and returns the HTTP status. */
async function postCallback(url: string, body: unknown): Promise<number> {
  const response = await fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  await response.arrayBuffer(); // drain so the connection can be reused
  return response.status;
}

/** Finishes a tune the way Astria reports it; a scripted failure is healed. */
function markTrained(tune: TuneJson, at: Date): void {
  const trainedAt = at.toISOString();
  const checkpoint = `https://www.astria.ai/mock/${tune.id}/model.safetensors`;
  Object.assign(tune, {
    trained_at: trainedAt,
    started_training_at: tune.started_training_at ?? trainedAt,
    expires_at: new Date(at.getTime() + STORAGE_MS).toISOString(),
    updated_at: trainedAt,
    ckpt_url: checkpoint,
    ckpt_urls: [checkpoint],
  });
  if ('status' in tune) tune.status = 'trained';
  delete tune.error;
  delete tune.error_message;
  delete tune.user_error;
}

function earliest(first: Date, ...others: (Date | null | undefined)[]): Date {
  return others.reduce<Date>((min, date) => (date && date.getTime() < min.getTime() ? date : min), first);
}

/** A non-negative integer query parameter: `fallback` when absent, null when malformed or below `min`. */
function readCount<T extends number | undefined>(query: URLSearchParams, name: string, fallback: T, min: number): number | T | null {
  const raw = query.get(name);
  if (raw === null) return fallback;
  if (!/^\d+$/.test(raw)) return null;
  const value = Number(raw);
  return value >= min ? value : null;
}

/** Index of the first element >= target in an ascending array. */
function lowerBound(sorted: number[], target: number): number {
  let low = 0;
  let high = sorted.length;
  while (low < high) {
    const mid = (low + high) >>> 1;
    if ((sorted[mid] as number) < target) low = mid + 1;
    else high = mid;
  }
  return low;
}

/** Waits `ms`, ending early when the response closes (client gone or server closing). */
function pause(ms: number, res: ServerResponse): Promise<void> {
  if (ms <= 0 || res.destroyed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      res.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    res.once('close', done);
  });
}

function jsonAnswer(status: number, value: unknown): Answer {
  return { status, body: JSON.stringify(value) };
}

function errorBody(message: string): string {
  return JSON.stringify({ error: message });
}

function errorAnswer(status: number, message: string): Answer {
  return { status, body: errorBody(message) };
}
