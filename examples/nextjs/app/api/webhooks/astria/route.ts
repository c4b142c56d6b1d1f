import { createHash, timingSafeEqual } from 'node:crypto';
import { applyObservedTune, callbackBodySchema } from 'astria-reconciler';
import { NextResponse, type NextRequest } from 'next/server';
import { pool } from '@/lib/db';
import { statusService, TRAINING_TIMEOUT_MS } from '@/lib/status';

/**
 * Astria's tune callback, applied through the same rules and status service as the reconciler sidecar:
 * compare-and-set on the status, one event row, broadcast in the same transaction. Whoever comes first
 * (this route, or the sidecar recovering a callback this route never got) applies the change once.
 *
 * Create tunes with `callback: https://<your app>/api/webhooks/astria?secret=<WEBHOOK_SECRET>`.
 */
export const runtime = 'nodejs';
export const dynamic = 'force-dynamic';

const MAX_BODY_BYTES = 1024 * 1024;

/** Constant time whatever the lengths: both sides are hashed to 32 bytes first. */
function secretMatches(given: string | null, expected: string): boolean {
  if (given === null) return false;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(expected));
}

/** The body, or null when it is larger than `limit` (checked while reading, not only by Content-Length). */
async function readBody(request: NextRequest, limit: number): Promise<Uint8Array | null> {
  if (Number(request.headers.get('content-length') ?? 0) > limit) return null;
  if (!request.body) return new Uint8Array();
  const reader = request.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    size += value.byteLength;
    if (size > limit) {
      await reader.cancel();
      return null;
    }
    chunks.push(value);
  }
  return Buffer.concat(chunks);
}

export async function POST(request: NextRequest) {
  const secret = process.env.WEBHOOK_SECRET;
  // No secret configured: refuse everything rather than accept anyone's "callback".
  if (!secret || !secretMatches(request.nextUrl.searchParams.get('secret'), secret)) {
    return NextResponse.json({ error: 'invalid or missing secret' }, { status: 401 });
  }
  const raw = await readBody(request, MAX_BODY_BYTES);
  if (raw === null) return NextResponse.json({ error: 'body too large' }, { status: 413 });
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder().decode(raw));
  } catch {
    return NextResponse.json({ error: 'body is not JSON' }, { status: 400 });
  }
  const parsed = callbackBodySchema.safeParse(json);
  if (!parsed.success) return NextResponse.json({ error: 'body is not an Astria tune' }, { status: 400 });

  const result = await applyObservedTune({
    pool,
    service: await statusService(),
    tune: parsed.data,
    source: 'webhook',
    now: new Date(),
    trainingTimeoutMs: TRAINING_TIMEOUT_MS,
  });
  // A tune none of our models trains (another environment's, or a deleted model): acknowledged, ignored.
  if (result.matched === 0) return NextResponse.json({ status: 'ignored', reason: 'unknown tune' }, { status: 202 });
  return NextResponse.json({ status: 'ok', matched: result.matched, applied: result.applied.length });
}
