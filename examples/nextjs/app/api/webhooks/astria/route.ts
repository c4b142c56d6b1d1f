import { acceptAstriaCallback, callbackUrlParams } from 'astria-reconciler';
import { NextResponse, type NextRequest } from 'next/server';
import { prisma } from '@/lib/db';
import { statusService, TRAINING_TIMEOUT_MS } from '@/lib/status';

/**
 * Astria's tune and prompt callbacks, applied through the same code as the reconciler sidecar's own
 * webhook, on the app's PrismaClient: secret checked in constant time, body capped at 1 MiB, validated,
 * then the status rules and the compare-and-set status service (one event row, broadcast and side
 * effects in the same transaction). A tune applies to models, a prompt to the generations waiting on
 * its id. Whoever comes first (this route, or the sidecar recovering a callback this route never got)
 * applies it once. 401 wrong secret, 413 too large, 400 malformed, 202 unknown tune or prompt: none writes.
 *
 * Create tunes with `callback: https://<your app>/api/webhooks/astria?secret=<WEBHOOK_SECRET>&model=<model id>`:
 * with `model`, the callback applies to that model only (without it, to every model training the tune).
 * No `runtime`/`dynamic` segment config: a POST handler is dynamic and runs on Node.js by default,
 * and `cacheComponents` refuses both settings.
 */
export async function POST(request: NextRequest) {
  const contentLength = request.headers.get('content-length');
  const response = await acceptAstriaCallback(
    {
      ...callbackUrlParams(request.nextUrl.searchParams), // secret (a repeated one is refused) and model
      contentLength: contentLength === null ? null : Number(contentLength),
      body: request.body,
    },
    {
      secret: process.env.WEBHOOK_SECRET,
      prisma,
      service: statusService,
      trainingTimeoutMs: TRAINING_TIMEOUT_MS,
    },
  );
  return NextResponse.json(response.body, { status: response.status });
}
