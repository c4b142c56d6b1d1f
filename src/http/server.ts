import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import { systemClock, type Clock } from '../clock.js';
import { assertHostTable, HostTableMissingError } from '../db/host-check.js';
import type { HostSchema } from '../db/host-names.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { safeText } from '../status/sanitize.js';

export type RouteHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>;

export interface HttpServerOptions {
  pool: pg.Pool;
  /** The app's tables /readyz checks (RECONCILER_HOST_MAPPING); default vibephoto's. */
  host?: HostSchema;
  metrics: Metrics;
  log: Logger;
  /** Served at POST /webhooks/astria when set (WEBHOOK_SECRET configured). */
  webhook?: RouteHandler;
  /** How long /readyz waits for the database before answering 503. */
  readinessTimeoutMs?: number;
  /** Why the process is not ready besides the database (e.g. its schema not set up yet); null when nothing. */
  notReadyReason?: () => string | null;
  /** Paces the log of rejected requests (default the system clock). */
  clock?: Clock;
}

export interface HttpServer {
  listen(port: number, host: string): Promise<AddressInfo>;
  close(): Promise<void>;
}

/** The port cannot be bound (in use, not permitted, no such address): a configuration problem. */
export class ListenError extends Error {
  override name = 'ListenError';
  constructor(host: string, port: number, cause: NodeJS.ErrnoException) {
    const why = cause.code === 'EADDRINUSE' ? 'the address is already in use' : cause.message;
    super(`cannot listen on ${host}:${port}: ${why} (RECONCILER_HTTP_PORT, RECONCILER_HTTP_HOST)`);
  }
}

const WEBHOOK_PATH = '/webhooks/astria';

/** The request target as a URL, or null when it is not one (`//[`, `http://a:99999/`, `http://%zz/`). */
function parseTarget(target: string | undefined): URL | null {
  try {
    return new URL(target ?? '/', 'http://localhost');
  } catch {
    return null;
  }
}

/** The `error` of each answer that had one: the reason the rejection's log line gives. */
const answeredErrors = new WeakMap<ServerResponse, string>();

/** Writes a whole JSON answer without ending the response (a rejection may linger before it closes). */
export function writeJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  const error = (body as { error?: unknown } | null)?.error;
  if (typeof error === 'string') answeredErrors.set(res, error);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.write(text);
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  writeJson(res, status, body);
  res.end();
}

/** Rejected requests logged per second at most (as a burst, then evenly); the rest are counted. */
const REJECTIONS_LOGGED_PER_SECOND = 5;
/** The most of a request's path and user agent a log line holds: both are whatever the client sent. */
const MAX_LOGGED_REQUEST_TEXT_BYTES = 200;

/**
 * One line per rejected request (an answer with an `error`, bar the 500 the handler's failure logs),
 * at most REJECTIONS_LOGGED_PER_SECOND a second: this port faces the internet, and a flood of bad
 * requests must not become a flood of log. The first line after a pause counts the ones left out.
 * Never the query, which carries the webhook secret.
 */
function createRejectionLog(log: Logger, clock: Clock): (req: IncomingMessage, res: ServerResponse) => void {
  let allowance = REJECTIONS_LOGGED_PER_SECOND;
  let refilledAt = clock.now();
  let suppressed = 0;
  return (req, res) => {
    const reason = answeredErrors.get(res);
    if (reason === undefined || res.statusCode === 500) return;
    const now = clock.now();
    allowance = Math.min(REJECTIONS_LOGGED_PER_SECOND, allowance + (Math.max(0, now - refilledAt) / 1_000) * REJECTIONS_LOGGED_PER_SECOND);
    refilledAt = now;
    if (allowance < 1) {
      suppressed++;
      return;
    }
    allowance -= 1;
    const path = safeText((req.url ?? '').split(/[?#]/, 1)[0]!, MAX_LOGGED_REQUEST_TEXT_BYTES);
    const userAgent = req.headers['user-agent'];
    log.warn(
      {
        method: safeText(req.method ?? '', MAX_LOGGED_REQUEST_TEXT_BYTES),
        path,
        status: res.statusCode,
        reason,
        remoteAddress: req.socket?.remoteAddress,
        userAgent: userAgent === undefined ? undefined : safeText(userAgent, MAX_LOGGED_REQUEST_TEXT_BYTES),
        ...(suppressed > 0 ? { suppressedBefore: suppressed } : {}),
      },
      path === WEBHOOK_PATH ? 'Astria webhook request rejected' : 'HTTP request rejected',
    );
    suppressed = 0;
  };
}

/**
 * Health, readiness, metrics and the webhook on one port. Readiness depends on the database only:
 * a sidecar's readiness takes the whole pod out of service, so Astria being down must not.
 */
export function createHttpServer(options: HttpServerOptions): HttpServer {
  const readinessTimeoutMs = options.readinessTimeoutMs ?? 2_000;
  const logRejection = createRejectionLog(options.log, options.clock ?? systemClock);

  /** Null when ready, else the reason: the database must answer, within the timeout, and hold `ai_models`. */
  async function notReadyReason(): Promise<string | null> {
    const own = options.notReadyReason?.() ?? null;
    if (own !== null) return own;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<string>(
      (resolve) => (timer = setTimeout(() => resolve(`database did not answer within ${readinessTimeoutMs} ms`), readinessTimeoutMs)),
    );
    const check = assertHostTable(options.pool, options.host).then(
      () => null,
      (error: Error) => (error instanceof HostTableMissingError ? error.message : `database unreachable: ${error.message}`),
    );
    try {
      return await Promise.race([check, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  const routes: Record<string, RouteHandler> = {
    'GET /livez': async (_req, res) => sendJson(res, 200, { status: 'alive' }),
    'GET /readyz': async (_req, res) => {
      const reason = await notReadyReason();
      if (reason === null) sendJson(res, 200, { ready: true });
      else sendJson(res, 503, { ready: false, reason });
    },
    'GET /metrics': async (_req, res) => {
      const body = await options.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': options.metrics.registry.contentType });
      res.end(body);
    },
  };
  routes['GET /healthz'] = routes['GET /livez']!;
  if (options.webhook) routes[`POST ${WEBHOOK_PATH}`] = options.webhook;

  const server: Server = createServer((req, res) => {
    res.once('close', () => logRejection(req, res));
    // The port faces the internet (Astria calls it): whatever the request target, answer, never throw.
    const url = parseTarget(req.url);
    if (url === null) {
      res.setHeader('connection', 'close');
      sendJson(res, 400, { error: 'malformed request target' });
      return;
    }
    // Every request to the webhook's path is counted by the status it got, whoever answered it.
    if (url.pathname === WEBHOOK_PATH) {
      res.once('close', () => {
        if (res.headersSent) options.metrics.webhookRequests.inc({ code: String(res.statusCode) });
      });
    }
    const route = routes[`${req.method} ${url.pathname}`];
    if (!route) {
      const known = Object.keys(routes).some((key) => key.endsWith(` ${url.pathname}`));
      sendJson(res, known ? 405 : 404, { error: known ? 'method not allowed' : 'not found' });
      return;
    }
    route(req, res, url).catch((error: unknown) => {
      options.log.error({ err: (error as Error).message, path: url.pathname }, 'HTTP handler failed');
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 5_000;

  return {
    listen(port, host) {
      return new Promise((resolve, reject) => {
        server.once('error', (error: NodeJS.ErrnoException) => reject(new ListenError(host, port, error)));
        server.listen(port, host, () => resolve(server.address() as AddressInfo));
      });
    },
    close() {
      return new Promise((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
    },
  };
}
