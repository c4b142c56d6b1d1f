import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type pg from 'pg';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

export type RouteHandler = (req: IncomingMessage, res: ServerResponse, url: URL) => Promise<void>;

export interface HttpServerOptions {
  pool: pg.Pool;
  metrics: Metrics;
  log: Logger;
  /** Served at POST /webhooks/astria when set (WEBHOOK_SECRET configured). */
  webhook?: RouteHandler;
  /** How long /readyz waits for the database before answering 503. */
  readinessTimeoutMs?: number;
}

export interface HttpServer {
  listen(port: number, host: string): Promise<AddressInfo>;
  close(): Promise<void>;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Health, readiness, metrics and the webhook on one port. Readiness depends on the database only:
 * a sidecar's readiness takes the whole pod out of service, so Astria being down must not.
 */
export function createHttpServer(options: HttpServerOptions): HttpServer {
  const readinessTimeoutMs = options.readinessTimeoutMs ?? 2_000;

  async function databaseReachable(): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), readinessTimeoutMs)));
    const query = options.pool.query('SELECT 1').then(
      () => true,
      () => false,
    );
    try {
      return await Promise.race([query, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  const routes: Record<string, RouteHandler> = {
    'GET /livez': async (_req, res) => sendJson(res, 200, { status: 'alive' }),
    'GET /readyz': async (_req, res) =>
      (await databaseReachable())
        ? sendJson(res, 200, { status: 'ready' })
        : sendJson(res, 503, { status: 'database unreachable' }),
    'GET /metrics': async (_req, res) => {
      const body = await options.metrics.registry.metrics();
      res.writeHead(200, { 'content-type': options.metrics.registry.contentType });
      res.end(body);
    },
  };
  routes['GET /healthz'] = routes['GET /livez']!;
  if (options.webhook) routes['POST /webhooks/astria'] = options.webhook;

  const server: Server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
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
        server.once('error', reject);
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
