import { createHttpServer } from '../http/server.js';
import { createWebhookHandler } from '../http/webhook.js';
import { runDaemon } from '../reconciler/daemon.js';
import { createLeaderElection } from '../reconciler/leader.js';
import type { Runtime } from './runtime.js';

/**
 * The sidecar: the HTTP endpoints on every replica, the reconcile loop (doing work only while leader).
 * Resolves once the signal aborted and in-flight work finished; rejects on a fatal error (Astria 401).
 */
export async function runDaemonCommand(runtime: Runtime, signal: AbortSignal): Promise<void> {
  const { config, log, pool, metrics, clock } = runtime;
  const service = runtime.service!;
  const leader = createLeaderElection({
    databaseUrl: config.databaseUrl,
    lockName: `astria_reconciler:leader:${config.schema}`,
    log,
    metrics,
  });
  const webhook = config.http.webhookSecret
    ? createWebhookHandler({ secret: config.http.webhookSecret, pool, service, log, clock, trainingTimeoutMs: config.trainingTimeoutMs })
    : undefined;
  const server = createHttpServer({ pool, metrics, log, webhook });
  const address = await server.listen(config.http.port, config.http.host);
  log.info(
    { host: address.address, port: address.port, webhook: webhook !== undefined, intervalMs: config.intervalMs },
    'astria-reconciler daemon started',
  );
  try {
    await runDaemon(
      { ...runtime, service, leader },
      {
        intervalMs: config.intervalMs,
        stuckAfterMs: config.stuckAfterMs,
        trainingTimeoutMs: config.trainingTimeoutMs,
        concurrency: config.astria.concurrency,
        signal,
      },
    );
  } finally {
    await leader.release();
    await server.close();
    log.info('astria-reconciler daemon stopped');
  }
}
