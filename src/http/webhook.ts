import type { Clock } from '../clock.js';
import { acceptAstriaCallback, type CallbackDeps } from './callback.js';
import { sendJson, type RouteHandler } from './server.js';

export interface WebhookOptions extends Omit<CallbackDeps, 'now'> {
  clock: Clock;
}

/** `POST /webhooks/astria` on the sidecar's port: Node's request stream fed to `acceptAstriaCallback`. */
export function createWebhookHandler(options: WebhookOptions): RouteHandler {
  const deps: CallbackDeps = { ...options, now: () => new Date(options.clock.now()) };
  return async (req, res, url) => {
    const contentLength = req.headers['content-length'] === undefined ? null : Number(req.headers['content-length']);
    const response = await acceptAstriaCallback(
      { givenSecret: url.searchParams.get('secret'), modelId: url.searchParams.get('model'), contentLength, body: req },
      deps,
    );
    // A rejected body may be left unread: close the connection rather than drain it.
    if (response.status >= 400) res.setHeader('connection', 'close');
    sendJson(res, response.status, response.body);
  };
}
