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
      // A repeated `secret` is refused whatever its order: one value, or none.
      { givenSecret: onlyValue(url.searchParams, 'secret'), modelId: url.searchParams.get('model'), contentLength, body: req },
      deps,
    );
    if (response.status >= 400) {
      // A wrong secret in the callback URL must show up somewhere; the URL itself (the secret) never does.
      options.log?.warn(
        { status: response.status, reason: response.body.error, remoteAddress: req.socket?.remoteAddress, userAgent: req.headers['user-agent'] },
        'Astria webhook request rejected',
      );
      // A rejected body may be left unread: close the connection rather than drain it. (An oversized
      // chunked body has had its socket destroyed already: `req.socket` may be gone.)
      res.setHeader('connection', 'close');
    }
    sendJson(res, response.status, response.body);
  };
}

/** The parameter's value when it is given exactly once, else null. */
function onlyValue(params: URLSearchParams, name: string): string | null {
  const values = params.getAll(name);
  return values.length === 1 ? values[0]! : null;
}
