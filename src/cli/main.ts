#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { AstriaAuthError } from '../astria/client.js';
import { requeueDeadDeliveries } from '../broadcast/dead-letter.js';
import { ConfigError, loadConfig } from '../config.js';
import { assertHostTable, HostTableMissingError } from '../db/host-check.js';
import { OwnSchemaOutdatedError } from '../db/own-schema.js';
import { createPool } from '../db/pool.js';
import { ListenError } from '../http/server.js';
import { createLogger } from '../log.js';
import { parseCommand, USAGE, UsageError, type Command } from './args.js';
import { runDaemonCommand } from './daemon.js';
import { diagnoseAsksAstria, runDiagnose } from './diagnose.js';
import { runOnce } from './once.js';
import { runReport } from './report.js';
import { buildRuntime, createRuntime, DatabaseUnreachableError } from './runtime.js';

const EXIT = { ok: 0, fatal: 1, usage: 2, incomplete: 3 } as const;

/** Fatal conditions an operator fixes from the message alone: no stack trace for them. */
const KNOWN_FATAL = [ConfigError, DatabaseUnreachableError, HostTableMissingError, OwnSchemaOutdatedError, AstriaAuthError, ListenError];

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** SIGTERM/SIGINT abort the signal: in-flight work finishes, nothing new starts. A second one exits at once. */
function abortOnSignals(): AbortSignal {
  const controller = new AbortController();
  const stop = (signal: NodeJS.Signals) => {
    if (controller.signal.aborted) process.exit(EXIT.fatal);
    controller.abort(new Error(`received ${signal}`));
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
  return controller.signal;
}

async function run(command: Command): Promise<number> {
  if (command.kind === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return EXIT.ok;
  }
  if (command.kind === 'version') {
    process.stdout.write(`${version()}\n`);
    return EXIT.ok;
  }
  const asksAstria = command.kind === 'diagnose' && diagnoseAsksAstria(command, process.env);
  const needsAstria = command.kind === 'once' || command.kind === 'daemon' || asksAstria;
  const config = loadConfig(process.env, { needsAstria });
  if ((command.kind === 'once' || command.kind === 'daemon') && command.stuckAfterMs !== null) config.stuckAfterMs = command.stuckAfterMs;
  const log = createLogger(config.logLevel);

  if (command.kind === 'once') {
    const signal = abortOnSignals();
    const runtime = await createRuntime(config, log, { dryRun: command.dryRun, defaultMetrics: false });
    try {
      return await runOnce(runtime, {
        modelIds: command.modelIds,
        kinds: command.kinds,
        stuckAfterMs: config.stuckAfterMs,
        json: command.json,
        signal,
        stdout: process.stdout,
        progressTo: process.stderr,
      });
    } finally {
      await runtime.close();
    }
  }
  if (command.kind === 'daemon') {
    const signal = abortOnSignals();
    // Nothing connects yet: the daemon serves /livez first and waits for a usable database itself.
    const runtime = buildRuntime(config, log, { dryRun: false, defaultMetrics: true });
    signal.addEventListener('abort', () => {
      log.info({ timeoutMs: config.shutdownTimeoutMs }, 'shutting down: finishing in-flight work');
      // In-flight writes are single transactions: cutting them short rolls them back, never half-applies.
      setTimeout(() => {
        log.warn('shutdown timeout reached; exiting with work still in flight');
        process.exit(EXIT.ok);
      }, config.shutdownTimeoutMs).unref();
    });
    try {
      await runDaemonCommand(runtime, signal);
      return EXIT.ok;
    } finally {
      await runtime.close();
    }
  }
  const pool = createPool(config.databaseUrl, log);
  try {
    // A wrong database has no event log either: zeros from it would read as "nothing happened".
    await assertHostTable(pool, config.host);
    if (command.kind === 'requeue-dead') {
      const requeued = await requeueDeadDeliveries(pool, config.schema, command.transport);
      const total = requeued.http + requeued.redis;
      process.stdout.write(`re-queued ${total} dead deliver${total === 1 ? 'y' : 'ies'} (http ${requeued.http}, redis ${requeued.redis}); running daemons send them within a second\n`);
      return EXIT.ok;
    }
    if (command.kind === 'diagnose') return await runDiagnose(pool, config, command, { askAstria: asksAstria, log, stdout: process.stdout });
    return await runReport(pool, config.schema, { sinceMs: command.sinceMs, json: command.json, stdout: process.stdout, callbackGraceMs: config.callbackGraceMs, orphanWindowMs: config.orphanWindowMs, host: config.host });
  } catch (error) {
    if (error instanceof UsageError || error instanceof HostTableMissingError) throw error;
    throw new DatabaseUnreachableError('cannot use the event log', error);
  } finally {
    await pool.end();
  }
}

async function main(): Promise<void> {
  let code: number;
  try {
    code = await run(parseCommand(process.argv.slice(2)));
  } catch (error) {
    code = reportFailure(error);
  }
  // Let stdout drain before exiting: the --json report may be large.
  process.stdout.write('', () => process.exit(code));
}

/**
 * A usage error: one plain line and where to look. A fatal error: one JSON log line (for the log
 * pipeline) and one plain line (for the person at the terminal); a stack trace only for the unexpected.
 */
function reportFailure(error: unknown): number {
  if (error instanceof UsageError) {
    process.stderr.write(`astria-reconciler: ${error.message}\nRun "astria-reconciler --help" for usage.\n`);
    return EXIT.usage;
  }
  // Written whatever LOG_LEVEL says (it may be the variable that is wrong).
  const log = createLogger('fatal');
  const known = KNOWN_FATAL.some((kind) => error instanceof kind);
  const message = error instanceof Error ? error.message : String(error);
  if (known) log.fatal({ kind: (error as Error).name, exitCode: EXIT.fatal }, message);
  else log.fatal({ err: error, exitCode: EXIT.fatal }, `unexpected error: ${message}`);
  process.stderr.write(`astria-reconciler: ${known ? message : `unexpected error: ${message} (details in the log line above)`}\n`);
  return EXIT.fatal;
}

void main();
