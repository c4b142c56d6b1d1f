import { parseArgs } from 'node:util';
import { age, durationProblem, parseDuration, type AsyncBroadcastTransport, type DurationRange } from '../config.js';

export type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'daemon'; stuckAfterMs: number | null }
  | { kind: 'once'; dryRun: boolean; modelIds: string[]; stuckAfterMs: number | null; json: boolean }
  | { kind: 'report'; sinceMs: number; json: boolean }
  | { kind: 'requeue-dead'; transport: AsyncBroadcastTransport | null };

/** Wrong flags or arguments: exit code 2 with the usage text. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export const USAGE = `Usage:
  astria-reconciler                      run the daemon (until SIGTERM/SIGINT)
  astria-reconciler --once [options]     one pass over every in-flight model, then exit
  astria-reconciler report [--since 7d] [--json]
                                         what was applied, from the event log, and the dead deliveries
  astria-reconciler requeue-dead [--transport http|redis]
                                         send the parked (dead) broadcast deliveries again

Options for --once:
  --dry-run              report what would change; write nothing, send no event
  --model-id ID          only this model (repeatable); may name a model in ERROR to heal it
  --stuck-after DURATION override RECONCILER_STUCK_AFTER (0s = every in-flight model)
  --json                 print one JSON report on stdout

  --stuck-after also applies to the daemon.
  -h, --help             this text
  -v, --version          the version

Configuration comes from the environment (DATABASE_URL, ASTRIA_API_KEY, ...): see the README.
report and requeue-dead need only DATABASE_URL.
Exit codes: 0 done, 1 fatal (bad config, database unreachable or without ai_models, Astria 401),
2 usage error, 3 pass finished but some models could not be checked (safe to re-run).`;

const SUBCOMMANDS = ['report', 'requeue-dead'] as const;
const TRANSPORTS: readonly AsyncBroadcastTransport[] = ['http', 'redis'];

/** parseArgs' own message, without its hint about positionals after '--' (nobody here needs one). */
function describeParseError(error: Error & { code?: string }): string {
  const unknown = /^Unknown option '([^']+)'/.exec(error.message);
  if (error.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && unknown) return `unknown option ${unknown[1]}`;
  return error.message;
}

/** A duration flag, within `range` when given (`--since` is bounded by `report`: back to 1970 at most). */
function duration(flag: string, text: string, range?: DurationRange): number {
  const ms = parseDuration(text);
  if (ms === null) throw new UsageError(`${flag}: "${text}" is not a duration (use e.g. 30s, 2m, 7d)`);
  const problem = range ? durationProblem(ms, range) : null;
  if (problem !== null) throw new UsageError(`${flag} ${problem}`);
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
        transport: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        version: { type: 'boolean', short: 'v' },
      },
    });
  } catch (error) {
    throw new UsageError(describeParseError(error as Error));
  }
  const { values, positionals } = parsed;
  if (values.help) return { kind: 'help' };
  if (values.version) return { kind: 'version' };

  const [subcommand, ...extra] = positionals;
  const known = SUBCOMMANDS.find((name) => name === subcommand);
  if (extra.length > 0 || (subcommand !== undefined && !known)) {
    throw new UsageError(`unexpected argument "${known ? extra[0] : subcommand}"`);
  }
  const reject = (flags: (keyof typeof values)[], context: string) => {
    const given = flags.filter((flag) => values[flag] !== undefined);
    if (given.length > 0) throw new UsageError(`--${given[0]} cannot be used ${context}`);
  };

  if (known === 'report') {
    reject(['once', 'dry-run', 'model-id', 'stuck-after', 'transport'], 'with report');
    return { kind: 'report', sinceMs: duration('--since', values.since ?? '7d'), json: values.json ?? false };
  }
  if (known === 'requeue-dead') {
    reject(['once', 'dry-run', 'model-id', 'stuck-after', 'since', 'json'], 'with requeue-dead');
    const transport = TRANSPORTS.find((name) => name === values.transport) ?? null;
    if (values.transport !== undefined && transport === null) {
      throw new UsageError(`--transport: "${values.transport}" is not one of ${TRANSPORTS.join(', ')}`);
    }
    return { kind: 'requeue-dead', transport };
  }
  reject(['since'], 'without report');
  reject(['transport'], 'without requeue-dead');
  const stuckAfterMs = values['stuck-after'] === undefined ? null : duration('--stuck-after', values['stuck-after'], age());
  if (!values.once) {
    reject(['dry-run', 'model-id', 'json'], 'without --once');
    return { kind: 'daemon', stuckAfterMs };
  }
  const modelIds = values['model-id'] ?? [];
  if (modelIds.some((id) => id.trim() === '')) throw new UsageError('--model-id needs a model id');
  return { kind: 'once', dryRun: values['dry-run'] ?? false, modelIds, stuckAfterMs, json: values.json ?? false };
}
