import { createAstriaClient } from '../astria/client.js';
import { systemClock } from '../clock.js';
import type { Config } from '../config.js';
import { ensureOwnSchema } from '../db/own-schema.js';
import { createPool } from '../db/pool.js';
import type { Logger } from '../log.js';
import { createMetrics } from '../metrics.js';
import type { PassDeps } from '../reconciler/pass.js';
import { createStatusService } from '../status/service.js';

/** Everything a pass or the daemon needs, built once from the configuration. */
export interface Runtime extends PassDeps {
  config: Config;
  close(): Promise<void>;
}

export class DatabaseUnreachableError extends Error {
  override name = 'DatabaseUnreachableError';
}

export async function createRuntime(
  config: Config,
  log: Logger,
  options: { dryRun: boolean; defaultMetrics: boolean },
): Promise<Runtime> {
  const clock = systemClock;
  const metrics = createMetrics({ defaultMetrics: options.defaultMetrics });
  const pool = createPool(config.databaseUrl, log);
  try {
    // A dry run writes nothing, our own schema included.
    if (options.dryRun) await pool.query('SELECT 1');
    else await ensureOwnSchema(pool, config.schema);
  } catch (error) {
    await pool.end().catch(() => undefined);
    // Unreachable, or reachable but refusing us (permissions): either way nothing can work.
    throw new DatabaseUnreachableError(`database unreachable or unusable: ${(error as Error).message}`);
  }
  const astria = createAstriaClient({ ...config.astria, log, metrics, clock });
  const service = options.dryRun
    ? null
    : createStatusService({
        pool,
        schema: config.schema,
        channel: config.broadcast.pgChannel,
        transports: config.broadcast.transports,
        clock,
        metrics,
      });
  return {
    config,
    pool,
    astria,
    service,
    log,
    clock,
    metrics,
    async close() {
      await Promise.allSettled([astria.close(), pool.end()]);
    },
  };
}
