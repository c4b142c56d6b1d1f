import { pino, type Logger } from 'pino';

export type { Logger };

/**
 * Paths that may carry a secret. pino replaces them before serialisation, so the Astria key, the
 * webhook secret and database passwords never reach a log line even when a request or error object
 * is logged whole.
 */
const REDACT_PATHS = [
  'apiKey',
  'secret',
  'password',
  'authorization',
  'headers.authorization',
  'req.headers.authorization',
  '*.apiKey',
  '*.secret',
  '*.password',
  '*.authorization',
  'config.astria.apiKey',
  'config.databaseUrl',
  'config.http.webhookSecret',
  'config.broadcast.httpSecret',
  'config.broadcast.redisUrl',
  // Node's URL parser puts the whole rejected text (a DATABASE_URL with its password) on the error.
  'input',
  'err.input',
  'err.cause.input',
];

/** Logs go to stderr: stdout is reserved for the `--json` report. */
export function createLogger(level: string, destination: NodeJS.WritableStream = process.stderr): Logger {
  return pino(
    {
      level,
      base: { service: 'astria-reconciler' },
      redact: { paths: REDACT_PATHS, censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination,
  );
}
