import { createStatusService, ensureOwnSchema, type BroadcastTransport, type StatusService } from 'astria-reconciler';
import type { Prisma } from '@/lib/generated/prisma/client';
import { prisma } from './db';
import { applySideEffects } from './side-effects';

export const RECONCILER_SCHEMA = process.env.RECONCILER_SCHEMA ?? 'astria_reconciler';
export const BROADCAST_PG_CHANNEL = process.env.BROADCAST_PG_CHANNEL ?? 'model_status_changed';
export const TRAINING_TIMEOUT_MS = 24 * 3_600_000;

/**
 * Use the same BROADCAST as the reconciler sidecar. `pg` is sent by this process inside the status
 * write's transaction; `http`/`redis` are queued in the same transaction and delivered by the sidecar's
 * dispatcher, so the app needs no Redis client or retry loop of its own.
 */
function transports(): BroadcastTransport[] {
  const names = (process.env.BROADCAST ?? 'pg').split(',').map((name) => name.trim());
  return names.filter((name): name is BroadcastTransport => name === 'pg' || name === 'http' || name === 'redis');
}

const globalForStatus = globalThis as unknown as { astriaStatus?: Promise<StatusService> };

/**
 * The status service on the app's PrismaClient, created once per instance. Our schema is created
 * first (idempotent, a no-op once there), so the route works before the sidecar ever started.
 * `onTransition` runs the app's side effects (refunds of failed trainings and generations and their
 * reversal on a heal, the copy of a completed generation's images) inside the transaction of the
 * transition this process applies; the ones the sidecar applies arrive at /api/reconciler/events.
 */
export function statusService(): Promise<StatusService> {
  globalForStatus.astriaStatus ??= (async () => {
    await ensureOwnSchema({ prisma }, RECONCILER_SCHEMA);
    return createStatusService({
      prisma,
      schema: RECONCILER_SCHEMA,
      channel: BROADCAST_PG_CHANNEL,
      transports: transports(),
      // The hook's SQL runs in the transition's transaction; `driverClient` is Prisma's `tx` of it.
      // Models' and generations' changes both come through it (`event.type` tells them apart).
      onTransition: (event, tx) => applySideEffects(event, tx.driverClient as Prisma.TransactionClient),
    });
  })().catch((error: unknown) => {
    // A failed start (database down) is retried by the next request, not cached.
    globalForStatus.astriaStatus = undefined;
    throw error;
  });
  return globalForStatus.astriaStatus;
}
