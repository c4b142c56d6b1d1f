import { createDispatcher } from '../broadcast/dispatcher.js';
import { pruneDeliveredEvents } from '../broadcast/retention.js';
import { createTransports } from '../broadcast/transport.js';
import { createHttpServer } from '../http/server.js';
import { createWebhookHandler } from '../http/webhook.js';
import { runDaemon } from '../reconciler/daemon.js';
import { createLeaderElection } from '../reconciler/leader.js';
import type { StatusService } from '../status/service.js';
import type { Runtime } from './runtime.js';

const PRUNE_EVERY_MS = 60 * 60_000;

/**
 * The sidecar: on every replica the HTTP endpoints, the broadcast dispatcher and the event-log pruning;
 * the reconcile loop does work only while this replica leads. Resolves once the signal aborted and
 * in-flight work finished. An Astria 401 only pauses polling (the loop retries the key).
 */
export async function runDaemonCommand(runtime: Runtime, signal: AbortSignal): Promise<void> {
  const { config, log, pool, metrics, clock } = runtime;
  const transports = createTransports(config.broadcast, log);
  const dispatcher = createDispatcher({ pool, schema: config.schema, transports, log, metrics, clock });
  // Every applied transition wakes the dispatcher at once; its poll is only the safety net.
  const service: StatusService = {
    async apply(transition, source) {
      const result = await runtime.service!.apply(transition, source);
      if (result.applied) dispatcher.kick();
      return result;
    },
  };
  const leader = createLeaderElection({
    databaseUrl: config.databaseUrl,
    lockName: `astria_reconciler:leader:${config.schema}`,
    log,
    metrics,
  });
  const webhook = config.http.webhookSecret
    ? createWebhookHandler({ secret: config.http.webhookSecret, pool, service, log, clock, trainingTimeoutMs: config.trainingTimeoutMs, schema: config.schema })
    : undefined;
  const server = createHttpServer({ pool, metrics, log, webhook });
  const address = await server.listen(config.http.port, config.http.host);
  log.info(
    { host: address.address, port: address.port, webhook: webhook !== undefined, intervalMs: config.intervalMs, broadcast: config.broadcast.transports },
    'astria-reconciler daemon started',
  );
  // A fatal error in the loop must stop the dispatcher and pruning too.
  const stop = new AbortController();
  const stopAll = AbortSignal.any([signal, stop.signal]);
  const background = Promise.all([dispatcher.run(stopAll), pruneEvery(runtime, PRUNE_EVERY_MS, stopAll)]);
  try {
    await runDaemon(
      { ...runtime, service, leader },
      {
        intervalMs: config.intervalMs,
        stuckAfterMs: config.stuckAfterMs,
        observeEveryMs: config.observeEveryMs,
        callbackGraceMs: config.callbackGraceMs,
        authRetryMs: config.authRetryMs,
        schema: config.schema,
        trainingTimeoutMs: config.trainingTimeoutMs,
        concurrency: config.astria.concurrency,
        signal,
      },
    );
  } finally {
    stop.abort();
    await background;
    await Promise.allSettled(transports.map((transport) => transport.close()));
    await leader.release();
    await server.close();
    log.info('astria-reconciler daemon stopped');
  }
}

/** Drops delivered events older than the retention, now and then; failures wait for the next round. */
async function pruneEvery({ pool, config, log, clock }: Runtime, everyMs: number, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    try {
      const pruned = await pruneDeliveredEvents(pool, config.schema, config.eventRetentionMs);
      if (pruned > 0) log.info({ pruned }, 'pruned delivered events past retention');
    } catch (error) {
      log.warn({ err: (error as Error).message }, 'event pruning failed; will retry');
    }
    await clock.sleep(everyMs, signal).catch(() => undefined);
  }
}
