import { parseArgs } from 'node:util';
import { parseDuration } from '../config.js';

export type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'daemon'; stuckAfterMs: number | null }
  | { kind: 'once'; dryRun: boolean; modelIds: string[]; stuckAfterMs: number | null; json: boolean }
  | { kind: 'report'; sinceMs: number; json: boolean };

/** Wrong flags or arguments: exit code 2 with the usage text. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export const USAGE = `Usage:
  astria-reconciler                      run the daemon (until SIGTERM/SIGINT)
  astria-reconciler --once [options]     one pass over every in-flight model, then exit
  astria-reconciler report [--since 7d] [--json]
                                         what was applied, from the event log

Options for --once:
  --dry-run              report what would change; write nothing, send no event
  --model-id ID          only this model (repeatable); may name a model in ERROR to heal it
  --stuck-after DURATION override RECONCILER_STUCK_AFTER (0s = every in-flight model)
  --json                 print one JSON report on stdout

  --stuck-after also applies to the daemon.
  -h, --help             this text
  -v, --version          the version

Configuration comes from the environment (DATABASE_URL, ASTRIA_API_KEY, ...): see the README.
Exit codes: 0 done, 1 fatal (bad config, database unreachable, Astria 401), 2 usage error,
3 pass finished but some models could not be checked (safe to re-run).`;

function duration(flag: string, text: string): number {
  const ms = parseDuration(text);
  if (ms === null) throw new UsageError(`${flag}: "${text}" is not a duration (use e.g. 30s, 2m, 7d)`);
  return ms;
}

export function parseCommand(argv: string[]): Command {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: {
        once: { type: 'boolean' },
        'dry-run': { type: 'boolean' },
        'model-id': { type: 'string', multiple: true },
        'stuck-after': { type: 'string' },
        json: { type: 'boolean' },
        since: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };

  const [subcommand, ...extra] = positionals;
  if (extra.length > 0 || (subcommand !== undefined && subcommand !== 'report')) {
    throw new UsageError(`unexpected argument "${subcommand === 'report' ? extra[0] : subcommand}"`);
  }
  const reject = (flags: (keyof typeof values)[], context: string) => {
    const given = flags.filter((flag) => values[flag] !== undefined);
    if (given.length > 0) throw new UsageError(`--${given[0]} cannot be used ${context}`);
  };

  if (subcommand === 'report') {
    reject(['once', 'dry-run', 'model-id', 'stuck-after'], 'with report');
    return { kind: 'report', sinceMs: duration('--since', values.since ?? '7d'), json: values.json ?? false };
  }
  reject(['since'], 'without report');
  const stuckAfterMs = values['stuck-after'] === undefined ? null : duration('--stuck-after', values['stuck-after']);
  if (!values.once) {
    reject(['dry-run', 'model-id', 'json'], 'without --once');
    return { kind: 'daemon', stuckAfterMs };
  }
  const modelIds = values['model-id'] ?? [];
  if (modelIds.some((id) => id.trim() === '')) throw new UsageError('--model-id needs a model id');
  return { kind: 'once', dryRun: values['dry-run'] ?? false, modelIds, stuckAfterMs, json: values.json ?? false };
}
