#!/usr/bin/env node
import { readFileSync } from 'node:fs';
import { AstriaAuthError } from '../astria/client.js';
import { ConfigError, loadConfig } from '../config.js';
import { createLogger } from '../log.js';
import { parseCommand, USAGE, UsageError, type Command } from './args.js';
import { runDaemonCommand } from './daemon.js';
import { runOnce } from './once.js';
import { runReport } from './report.js';
import { createPool } from '../db/pool.js';
import { createRuntime, DatabaseUnreachableError } from './runtime.js';

const EXIT = { ok: 0, fatal: 1, usage: 2, incomplete: 3 } as const;

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
  const config = loadConfig(process.env, { needsAstria: command.kind !== 'report' });
  if (command.kind !== 'report' && command.stuckAfterMs !== null) config.stuckAfterMs = command.stuckAfterMs;
  const log = createLogger(config.logLevel);

  if (command.kind === 'once') {
    const signal = abortOnSignals();
    const runtime = await createRuntime(config, log, { dryRun: command.dryRun, defaultMetrics: false });
    try {
      return await runOnce(runtime, {
        modelIds: command.modelIds,
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
    const runtime = await createRuntime(config, log, { dryRun: false, defaultMetrics: true });
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
    return await runReport(pool, config.schema, { sinceMs: command.sinceMs, json: command.json, stdout: process.stdout });
  } catch (error) {
    if (error instanceof UsageError) throw error;
    throw new DatabaseUnreachableError(`cannot read the event log: ${(error as Error).message}`);
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

function reportFailure(error: unknown): number {
  if (error instanceof UsageError) {
    process.stderr.write(`astria-reconciler: ${error.message}\n\n${USAGE}\n`);
    return EXIT.usage;
  }
  if (error instanceof ConfigError || error instanceof DatabaseUnreachableError || error instanceof AstriaAuthError) {
    process.stderr.write(`astria-reconciler: ${error.message}\n`);
    return EXIT.fatal;
  }
  process.stderr.write(`astria-reconciler: fatal: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  return EXIT.fatal;
}

void main();
