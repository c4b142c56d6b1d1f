import { createAstriaClient } from '../astria/client.js';
import { systemClock } from '../clock.js';
import type { Config } from '../config.js';
import { assertHostTable, HostTableMissingError } from '../db/host-check.js';
import { ensureOwnSchema } from '../db/own-schema.js';
import { createPool } from '../db/pool.js';
import type { Logger } from '../log.js';
import { createMetrics } from '../metrics.js';
import type { OnceDeps } from '../reconciler/once.js';
import { createStatusService } from '../status/service.js';

/** Everything a pass or the daemon needs, built once from the configuration. */
export interface Runtime extends OnceDeps {
  config: Config;
  close(): Promise<void>;
}

export interface RuntimeOptions {
  dryRun: boolean;
  defaultMetrics: boolean;
}

/** The database did not answer, or refused us: `what` could not be done; the message names the variable to check. */
export class DatabaseUnreachableError extends Error {
  override name = 'DatabaseUnreachableError';
  constructor(what: string, cause: unknown) {
    super(`${what} (check DATABASE_URL): ${cause instanceof Error ? cause.message : String(cause)}`);
  }
}

/** The runtime without touching the database: nothing connects until it is used. */
export function buildRuntime(config: Config, log: Logger, options: RuntimeOptions): Runtime {
  const clock = systemClock;
  const metrics = createMetrics({ defaultMetrics: options.defaultMetrics });
  const pool = createPool(config.databaseUrl, log);
  const astria = createAstriaClient({ ...config.astria, log, metrics, clock });
  const service = options.dryRun
    ? null
    : createStatusService({
        pool,
        schema: config.schema,
        host: config.host,
        channel: config.broadcast.pgChannel,
        transports: config.broadcast.transports,
        clock,
        metrics,
        log,
      });
  return {
    config,
    pool,
    astria,
    service,
    log,
    clock,
    metrics,
    host: config.host,
    async close() {
      await Promise.allSettled([astria.close(), pool.end()]);
    },
  };
}

/**
 * Checks that the database answers and holds the app's `ai_models` (as RECONCILER_HOST_MAPPING names it), then creates our schema if it is
 * missing (a dry run writes nothing, our schema included). Throws HostTableMissingError for a wrong
 * database, DatabaseUnreachableError for anything else (unreachable, or refusing us).
 */
export async function prepareDatabase(runtime: Runtime, options: { dryRun: boolean }): Promise<void> {
  try {
    if (options.dryRun) await assertHostTable(runtime.pool, runtime.config.host);
    else await ensureOwnSchema(runtime.pool, runtime.config.schema, runtime.config.host);
  } catch (error) {
    if (error instanceof HostTableMissingError) throw error;
    throw new DatabaseUnreachableError('database unreachable or unusable', error);
  }
}

/** The runtime with its database checked now (`--once`): fails at once when the database is not usable. */
export async function createRuntime(config: Config, log: Logger, options: RuntimeOptions): Promise<Runtime> {
  const runtime = buildRuntime(config, log, options);
  try {
    await prepareDatabase(runtime, options);
  } catch (error) {
    await runtime.close();
    throw error;
  }
  return runtime;
}
