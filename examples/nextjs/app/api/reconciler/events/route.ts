import { modelStatusChangedEventSchema, verifySignature } from 'astria-reconciler';
import { NextResponse, type NextRequest } from 'next/server';
import { prisma } from '@/lib/db';
import { refundFailedTraining } from '@/lib/refunds';

/**
 * The sidecar's `http` broadcast (BROADCAST=http, BROADCAST_HTTP_URL=https://<app>/api/reconciler/events):
 * every status change the sidecar applies, signed with BROADCAST_HTTP_SECRET, delivered at least once.
 * The refund runs in one transaction with its dedupe row, so a redelivery refunds nothing twice, and
 * a transition this app applied itself (already refunded by its hook, same eventId) neither.
 */
export async function POST(request: NextRequest) {
  const secret = process.env.BROADCAST_HTTP_SECRET;
  const body = await request.text();
  if (!secret || !verifySignature(body, request.headers.get('x-signature'), secret)) {
    return NextResponse.json({ error: 'bad signature' }, { status: 401 });
  }
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    return NextResponse.json({ error: 'body is not JSON' }, { status: 400 });
  }
  const parsed = modelStatusChangedEventSchema.safeParse(json);
  // Other event types may come later: accept and ignore them, or the sidecar would retry forever.
  if (!parsed.success) return NextResponse.json({ status: 'ignored' });
  await prisma.$transaction((tx) => refundFailedTraining(parsed.data, tx));
  return NextResponse.json({ status: 'ok' });
}
