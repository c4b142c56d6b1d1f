import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createBroadcastVerifier, verifySignature } from '../../src/broadcast/signature.js';

export interface ReceivedEvent {
  eventId: string;
  modelId: string;
  payload: Record<string, unknown>;
}

/** A port nothing listens on (yet): connecting to it is refused until someone binds it. */
export async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/**
 * A loopback receiver of the `http` broadcast. It verifies both signatures over the raw body, Standard
 * Webhooks' and `X-Signature` (a bad one is answered 401 and counted), then answers `status` (settable;
 * or per event, `statusOf`; a 3xx redirects to the URL with a trailing slash), after `delayMs`.
 * `accepted` lists the events answered 2xx, in the order they arrived.
 */
export async function startReceiver(options: { secret: string; port?: number; status?: number; delayMs?: number }) {
  const state = {
    status: options.status ?? 200,
    /** The answer to one event (default: `status`). */
    statusOf: null as ((payload: Record<string, unknown>) => number) | null,
    delayMs: options.delayMs ?? 0,
    accepted: [] as ReceivedEvent[],
    rejected: 0,
    badSignatures: 0,
    requests: 0,
  };
  const verifier = createBroadcastVerifier({ secrets: options.secret });
  let url = '';
  const server: Server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => {
      state.requests++;
      const body = Buffer.concat(chunks);
      const respond = async () => {
        const verified = await verifier.verify(body, req.headers);
        if (!verified.ok || !verifySignature(body, req.headers['x-signature'] as string | undefined, options.secret)) {
          state.badSignatures++;
          res.writeHead(401).end('bad signature');
          return;
        }
        if (req.headers['content-type'] !== 'application/json') {
          res.writeHead(415).end('not json');
          return;
        }
        const payload = JSON.parse(body.toString('utf8')) as Record<string, unknown>;
        const status = state.statusOf?.(payload) ?? state.status;
        if (status >= 300 && status < 400) {
          state.rejected++;
          res.writeHead(status, { location: `${url}/` }).end();
          return;
        }
        if (status < 200 || status >= 300) {
          state.rejected++;
          res.writeHead(status).end('try later');
          return;
        }
        state.accepted.push({ eventId: String(payload.eventId), modelId: String(payload.modelId), payload });
        res.writeHead(status, { 'content-type': 'application/json' }).end('{"ok":true}');
      };
      if (state.delayMs > 0) setTimeout(() => void respond(), state.delayMs);
      else void respond();
    });
  });
  await new Promise<void>((resolve) => server.listen(options.port ?? 0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  url = `http://127.0.0.1:${port}/broadcast`;
  return {
    state,
    url,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Polls `check` until it returns true, failing after `timeoutMs`. */
export async function eventually(check: () => boolean | Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
