import { createDispatcher } from '../broadcast/dispatcher.js';
import { createTransports } from '../broadcast/create-transports.js';
import { createHttpServer } from '../http/server.js';
import { createWebhookHandler } from '../http/webhook.js';
import { runDaemon } from '../reconciler/daemon.js';
import { createLeaderElection } from '../reconciler/leader.js';
import { FailureReporter } from '../reconciler/loop-errors.js';
import { runPruning } from '../reconciler/prune.js';
import type { StatusService } from '../status/service.js';
import { prepareDatabase, type Runtime } from './runtime.js';

const PRUNE_EVERY_MS = 60 * 60_000;
/** Retries of a database that is not usable yet: quick at first, then every 5 s. */
const DATABASE_RETRY_FIRST_MS = 500;
const DATABASE_RETRY_MAX_MS = 5_000;

/**
 * The sidecar: on every replica the HTTP endpoints, the broadcast dispatcher and the event-log pruning;
 * the reconcile loop does work only while this replica leads. HTTP comes up first, so `/livez` answers
 * even while the database is down or is the wrong one (`/readyz` says why); everything else starts
 * once the database is usable. Resolves once the signal aborted and in-flight work finished. An
 * Astria 401 only pauses polling (the loop retries the key).
 */
export async function runDaemonCommand(runtime: Runtime, signal: AbortSignal): Promise<void> {
  const { config, log, pool, metrics, clock } = runtime;
  const transports = await createTransports(config.broadcast, log);
  const dispatcher = createDispatcher({
    pool,
    schema: config.schema,
    transports,
    log,
    metrics,
    clock,
    deadAfterAttempts: config.broadcast.deadAfterAttempts,
    deadAfterMs: config.broadcast.deadAfterMs,
  });
  // Every applied transition wakes the dispatcher at once; its poll is only the safety net.
  const service: StatusService = {
    async apply(transition, source) {
      const result = await runtime.service!.apply(transition, source);
      if (result.applied) dispatcher.kick();
      return result;
    },
    async applyGeneration(transition, source) {
      const result = await runtime.service!.applyGeneration(transition, source);
      if (result.applied) dispatcher.kick();
      return result;
    },
    // Progress goes to NOTIFY only: nothing for the dispatcher.
    applyProgress: (transitions, source) => runtime.service!.applyProgress(transitions, source),
  };
  const leader = createLeaderElection({
    databaseUrl: config.databaseUrl,
    lockName: `astria_reconciler:leader:${config.schema}`,
    log,
    metrics,
  });
  let notReady: string | null = 'connecting to the database';
  const webhook = config.http.webhookSecret
    ? createWebhookHandler({
        secret: config.http.webhookSecret,
        pool,
        service,
        log,
        clock,
        trainingTimeoutMs: config.trainingTimeoutMs,
        schema: config.schema,
        host: config.host,
        // Before our schema exists a callback cannot be recorded; say so rather than fail on the write.
        notReady: () => notReady,
      })
    : undefined;
  const server = createHttpServer({ pool, host: config.host, metrics, log, webhook, notReadyReason: () => notReady });
  const address = await server.listen(config.http.port, config.http.host);
  log.info(
    { host: address.address, port: address.port, webhook: webhook !== undefined, intervalMs: config.intervalMs, broadcast: config.broadcast.transports },
    'astria-reconciler daemon started',
  );
  try {
    if (!(await untilDatabaseReady(runtime, signal, (reason) => (notReady = reason)))) return;
    notReady = null;
    // Should the loop end with an error, the dispatcher and pruning must stop too.
    const stop = new AbortController();
    const stopAll = AbortSignal.any([signal, stop.signal]);
    const background = Promise.all([
      dispatcher.run(stopAll),
      runPruning(runtime, { schema: config.schema, retentionMs: config.eventRetentionMs, everyMs: PRUNE_EVERY_MS }, stopAll),
    ]);
    try {
      await runDaemon(
        { ...runtime, service, leader },
        {
          intervalMs: config.intervalMs,
          stuckAfterMs: config.stuckAfterMs,
          trainingTimeoutMs: config.trainingTimeoutMs,
          concurrency: config.astria.concurrency,
          observeEveryMs: config.observeEveryMs,
          observePromptsEveryMs: config.observePromptsEveryMs,
          callbackGraceMs: config.callbackGraceMs,
          authRetryMs: config.authRetryMs,
          schema: config.schema,
          maxNotFoundShare: config.maxNotFoundShare,
          orphanWindowMs: config.orphanWindowMs,
          tuneTitleTemplate: config.tuneTitleTemplate,
          signal,
        },
      );
    } finally {
      stop.abort();
      await background;
    }
  } finally {
    await Promise.allSettled(transports.map((transport) => transport.close()));
    await leader.release();
    await server.close();
    log.info('astria-reconciler daemon stopped');
  }
}

/**
 * Retries `prepareDatabase` until it succeeds (true) or the signal aborts (false). Each failure is
 * counted as a loop error and becomes the `/readyz` reason; a lasting one is logged once a minute.
 */
async function untilDatabaseReady(runtime: Runtime, signal: AbortSignal, setReason: (reason: string) => void): Promise<boolean> {
  const { clock } = runtime;
  const failures = new FailureReporter(runtime);
  let delayMs = DATABASE_RETRY_FIRST_MS;
  while (!signal.aborted) {
    try {
      await prepareDatabase(runtime, { dryRun: false });
      failures.succeeded(clock.now());
      return true;
    } catch (error) {
      setReason((error as Error).message);
      // Unreachable, refusing us, or without ai_models: the database, whatever the error.
      failures.failed(error, clock.now(), 'database not usable; serving /livez and retrying', { retryInMs: delayMs }, 'database');
    }
    await clock.sleep(delayMs, signal).catch(() => undefined);
    delayMs = Math.min(DATABASE_RETRY_MAX_MS, delayMs * 2);
  }
  return false;
}
