import type { Clock } from '../clock.js';
import { acceptAstriaCallback, callbackUrlParams, type CallbackDeps } from './callback.js';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { sendJson, writeJson, type RouteHandler } from './server.js';

/**
 * How long a rejected request's unread body is still read (and dropped) after the answer. Closing
 * under a client that is still sending makes the kernel reset the connection, and a client that
 * sees the reset first never reads our 4xx (a write fails with EPIPE instead): nginx's lingering close.
 */
const LINGER_MS = 2_000;

export interface WebhookOptions extends Omit<CallbackDeps, 'now'> {
  clock: Clock;
}

/** `POST /webhooks/astria` on the sidecar's port: Node's request stream fed to `acceptAstriaCallback`. */
export function createWebhookHandler(options: WebhookOptions): RouteHandler {
  const deps: CallbackDeps = { ...options, now: () => new Date(options.clock.now()) };
  return async (req, res, url) => {
    const contentLength = req.headers['content-length'] === undefined ? null : Number(req.headers['content-length']);
    const response = await acceptAstriaCallback(
      // The request stays open when the body is cut off: a rejection answers, then lingers.
      { ...callbackUrlParams(url.searchParams), contentLength, body: req.iterator({ destroyOnReturn: false }) },
      deps,
    );
    // Every rejection (a wrong secret in the callback URL above all) is logged by the server, paced.
    if (response.status >= 400) {
      // A rejected body may be left unread: no keep-alive after it.
      res.setHeader('connection', 'close');
      if (!req.complete) return answerThenLinger(req, res, response.status, response.body);
    }
    sendJson(res, response.status, response.body);
  };
}

/** Sends the whole answer now, and ends it (closing the connection) once the client has sent its body or LINGER_MS passed. */
function answerThenLinger(req: IncomingMessage, res: ServerResponse, status: number, body: unknown): void {
  writeJson(res, status, body);
  const end = () => {
    clearTimeout(timer);
    if (!res.writableEnded) res.end();
  };
  const timer = setTimeout(end, LINGER_MS);
  req.once('end', end).once('close', end).resume();
}
