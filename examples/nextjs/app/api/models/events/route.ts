import type { NextRequest } from 'next/server';
import { currentUserId } from '@/lib/auth';
import { subscribeModelEvents } from '@/lib/model-events';

/**
 * Server-Sent Events: the signed-in user's `model_status_changed`, `model_progress` and
 * `generation_status_changed` events, as they are committed by any instance of the app or by the
 * reconciler sidecar (PostgreSQL LISTEN; see lib/model-events.ts). When the LISTEN connection drops,
 * every stream on it closes; the browser's EventSource reconnects (after `retry`), which opens a new
 * LISTEN connection.
 *
 * Browser side (app/models.tsx):
 *   const source = new EventSource('/api/models/events');
 *   source.addEventListener('ready', () => refetchModels());          // on every (re)connect
 *   source.addEventListener('model_status_changed', (e) => apply(JSON.parse(e.data)));
 * `ready` comes on every connection, reconnections included: re-read the models' status then, because
 * events committed while the stream was down (deploy, function timeout, network) are not replayed.
 * No `runtime`/`dynamic` segment config (refused under `cacheComponents`): reading the session
 * cookie makes this handler dynamic, and Node.js is the default runtime.
 */

const HEARTBEAT_MS = 15_000;

export async function GET(request: NextRequest) {
  const userId = await currentUserId();
  if (!userId) return new Response('unauthorized', { status: 401 });

  const encoder = new TextEncoder();
  let stop: () => void = () => undefined;

  const stream = new ReadableStream<Uint8Array>({
    async start(controller) {
      let closed = false;
      let unsubscribe: (() => void) | null = null;
      const send = (text: string) => {
        if (closed) return;
        try {
          controller.enqueue(encoder.encode(text));
        } catch {
          stop();
        }
      };
      // Proxies and load balancers close idle connections; a comment line every 15 s keeps it open.
      const heartbeat = setInterval(() => send(': keep-alive\n\n'), HEARTBEAT_MS);
      stop = () => {
        if (closed) return;
        closed = true;
        clearInterval(heartbeat);
        request.signal.removeEventListener('abort', stop);
        unsubscribe?.();
        try {
          controller.close();
        } catch {
          // Already closed by the client.
        }
      };
      request.signal.addEventListener('abort', stop);

      send('retry: 1000\n\n');
      try {
        unsubscribe = await subscribeModelEvents({
          onEvent(event) {
            // Every user's events arrive on the channel; this stream forwards only the session user's.
            if (event.userId !== userId) return;
            send(`event: ${event.type}\nid: ${event.eventId}\ndata: ${JSON.stringify(event)}\n\n`);
          },
          onLost: () => stop(),
        });
      } catch {
        stop();
        return;
      }
      // Aborted while we were subscribing.
      if (closed) {
        unsubscribe();
        return;
      }
      send('event: ready\ndata: {}\n\n');
    },
    cancel() {
      stop();
    },
  });

  return new Response(stream, {
    headers: {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    },
  });
}
