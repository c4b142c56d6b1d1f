import {
  createBroadcastVerifier,
  createMemoryReplayStore,
  generationStatusChangedEventSchema,
  modelStatusChangedEventSchema,
  type BroadcastVerifier,
} from 'astria-reconciler';
import { NextResponse, type NextRequest } from 'next/server';
import { prisma } from '@/lib/db';
import { applySideEffects } from '@/lib/side-effects';

let verifier: BroadcastVerifier | undefined;

/**
 * Built on the first request, not at import (the build loads this module without the secret). It
 * throws when BROADCAST_HTTP_SECRET is unset or empty: the route answers 500 rather than run open.
 * BROADCAST_HTTP_SECRET may list several secrets, comma-separated, while the sidecar's is rotated.
 * The replay store is this instance's memory; with several instances a shared one (Redis
 * `SET key 1 NX PX ttl`) refuses a replay on any of them.
 */
function broadcastVerifier(): BroadcastVerifier {
  verifier ??= createBroadcastVerifier({
    secrets: (process.env.BROADCAST_HTTP_SECRET ?? '').split(','),
    replayStore: createMemoryReplayStore(),
  });
  return verifier;
}

/**
 * The sidecar's `http` broadcast (BROADCAST=http, BROADCAST_HTTP_URL=https://<app>/api/reconciler/events):
 * every status change the sidecar applies, models' and generations', signed per Standard Webhooks
 * with BROADCAST_HTTP_SECRET (checked over the raw body: signature, a timestamp within 5 minutes, not
 * seen before), delivered at least once. The side effects (refunds, the images' copy) run in one
 * transaction with their dedupe rows, so a redelivery does nothing twice, and a transition this app
 * applied itself (already handled by its hook, same eventId) neither.
 */
export async function POST(request: NextRequest) {
  const body = await request.text();
  const verified = await broadcastVerifier().verify(body, request.headers);
  if (!verified.ok) return NextResponse.json({ error: verified.reason }, { status: 401 });
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return NextResponse.json({ error: 'body is not JSON' }, { status: 400 });
  }
  const parsed = modelStatusChangedEventSchema.or(generationStatusChangedEventSchema).safeParse(json);
  // Other event types may come later: accept and ignore them, or the sidecar would retry forever.
  if (!parsed.success) return NextResponse.json({ status: 'ignored' });
  await prisma.$transaction((tx) => applySideEffects(parsed.data, tx));
  return NextResponse.json({ status: 'ok' });
}
