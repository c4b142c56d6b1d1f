import { ONCE_KINDS, type OnceKind } from '../reconciler/once.js';
import { parseArgs } from 'node:util';
import { age, durationProblem, parseDuration, type AsyncBroadcastTransport, type DurationRange } from '../config.js';

export type Command =
  | { kind: 'help' }
  | { kind: 'version' }
  | { kind: 'daemon'; stuckAfterMs: number | null }
  | { kind: 'once'; dryRun: boolean; modelIds: string[]; stuckAfterMs: number | null; json: boolean; kinds: readonly OnceKind[] }
  | { kind: 'report'; sinceMs: number; json: boolean }
  | { kind: 'requeue-dead'; transport: AsyncBroadcastTransport | null }
  | DiagnoseCommand;

/** `diagnose <id>` (id set) or `diagnose --stuck` (id null). */
export interface DiagnoseCommand {
  kind: 'diagnose';
  id: string | null;
  json: boolean;
  noAstria: boolean;
  /** `--stuck`: at most this many lines. */
  limit: number;
  /** `--kind`: models (tunes), generations (prompts), or both (the default). */
  kinds: readonly OnceKind[];
}

/** Wrong flags or arguments: exit code 2 with the usage text. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export const USAGE = `Usage:
  astria-reconciler                      run the daemon (until SIGTERM/SIGINT)
  astria-reconciler --once [options]     one pass over every in-flight model and generation, then exit
  astria-reconciler report [--since 7d] [--json]
                                         what was applied, from the event log, and the dead deliveries
  astria-reconciler requeue-dead [--transport http|redis]
                                         send the parked (dead) broadcast deliveries again
  astria-reconciler diagnose <model | generation | tune | prompt id> [--kind tunes|prompts] [--json] [--no-astria]
                                         why one model or generation is stuck: its row, Astria's view, a
                                         timeline, a verdict (a number that is both a tune id and a prompt
                                         id shows both; --kind picks one)
  astria-reconciler diagnose --stuck [--kind tunes|prompts] [--limit 50] [--json]
                                         every model and generation in flight past its eta, or with a broken link

Options for --once:
  --dry-run              report what would change; write nothing, send no event
  --model-id ID          only this model and its generations (repeatable); may name a model in ERROR to heal it
  --kind tunes|prompts   only models (tunes) or only generations (prompts); default both
  --stuck-after DURATION override RECONCILER_STUCK_AFTER (0s = every in-flight model)
  --json                 print one JSON report on stdout

  --stuck-after also applies to the daemon.
  -h, --help             this text
  -v, --version          the version

Configuration comes from the environment (DATABASE_URL, ASTRIA_API_KEY, ...): see the README.
report, requeue-dead and diagnose need only DATABASE_URL (diagnose asks Astria when ASTRIA_API_KEY is set).
Exit codes: 0 done, 1 fatal (bad config, database unreachable or without ai_models, Astria 401),
2 usage error, 3 pass finished but some models could not be checked (safe to re-run).
diagnose: 0 healthy or settled, 3 a link is broken, 2 an id that names nothing.`;

const SUBCOMMANDS = ['report', 'requeue-dead', 'diagnose'] as const;
const DEFAULT_STUCK_LIMIT = 50;
const MAX_STUCK_LIMIT = 10_000;
/** The longest id `diagnose` takes. */
const MAX_ID_LENGTH = 200;
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

type Reject = (flags: ('once' | 'dry-run' | 'model-id' | 'stuck-after' | 'since' | 'transport' | 'limit' | 'no-astria')[], context: string) => void;

/** `--kind`: one of `ONCE_KINDS`, or both when absent. */
function kindsOf(text: string | undefined): readonly OnceKind[] {
  if (text === undefined) return ONCE_KINDS;
  const kind = ONCE_KINDS.find((name) => name === text);
  if (kind === undefined) throw new UsageError(`--kind: "${text}" is not one of ${ONCE_KINDS.join(', ')}`);
  return [kind];
}

function diagnoseCommand(values: { json?: boolean; stuck?: boolean; limit?: string; 'no-astria'?: boolean; kind?: string }, ids: string[], reject: Reject): DiagnoseCommand {
  reject(['once', 'dry-run', 'model-id', 'stuck-after', 'since', 'transport'], 'with diagnose');
  const json = values.json === true;
  const kinds = kindsOf(values.kind);
  if (values.stuck) {
    if (ids.length > 0) throw new UsageError(`diagnose --stuck takes no id (got "${ids[0]}")`);
    reject(['no-astria'], 'with --stuck (it reads the database only)');
    const text = values.limit;
    const limit = text === undefined ? DEFAULT_STUCK_LIMIT : /^\d{1,6}$/.test(text) ? Number(text) : NaN;
    if (!(limit >= 1 && limit <= MAX_STUCK_LIMIT)) throw new UsageError(`--limit: "${text}" is not a whole number from 1 to ${MAX_STUCK_LIMIT}`);
    return { kind: 'diagnose', id: null, json, noAstria: true, limit, kinds };
  }
  reject(['limit'], 'without --stuck');
  if (ids.length !== 1 || ids[0]!.trim() === '') {
    throw new UsageError(ids.length > 1 ? `diagnose takes one id (got ${ids.length})` : 'diagnose needs a model id or tune id, a generation id or prompt id (or --stuck)');
  }
  const id = ids[0]!.trim();
  // Refused without echoing it: pasted text, not an id (a cuid is 25 characters, a uuid 36).
  if (id.length > MAX_ID_LENGTH) throw new UsageError(`diagnose: an id is at most ${MAX_ID_LENGTH} characters; this one has ${id.length}`);
  return { kind: 'diagnose', id, json, noAstria: values['no-astria'] === true, limit: DEFAULT_STUCK_LIMIT, kinds };
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
        kind: { type: 'string' },
        'stuck-after': { type: 'string' },
        json: { type: 'boolean' },
        since: { type: 'string' },
        transport: { type: 'string' },
        stuck: { type: 'boolean' },
        limit: { type: 'string' },
        'no-astria': { type: 'boolean' },
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
  const reject = (flags: (keyof typeof values)[], context: string) => {
    const given = flags.filter((flag) => values[flag] !== undefined);
    if (given.length > 0) throw new UsageError(`--${given[0]} cannot be used ${context}`);
  };
  if (known === 'diagnose') return diagnoseCommand(values, extra, reject);
  reject(['stuck', 'limit', 'no-astria'], 'without diagnose');
  if (extra.length > 0 || (subcommand !== undefined && !known)) {
    throw new UsageError(`unexpected argument "${known ? extra[0] : subcommand}"`);
  }

  if (known === 'report') {
    reject(['once', 'dry-run', 'model-id', 'kind', 'stuck-after', 'transport'], 'with report');
    return { kind: 'report', sinceMs: duration('--since', values.since ?? '7d'), json: values.json ?? false };
  }
  if (known === 'requeue-dead') {
    reject(['once', 'dry-run', 'model-id', 'kind', 'stuck-after', 'since', 'json'], 'with requeue-dead');
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
    reject(['dry-run', 'model-id', 'kind', 'json'], 'without --once');
    return { kind: 'daemon', stuckAfterMs };
  }
  const modelIds = values['model-id'] ?? [];
  if (modelIds.some((id) => id.trim() === '')) throw new UsageError('--model-id needs a model id');
  return { kind: 'once', dryRun: values['dry-run'] ?? false, modelIds, stuckAfterMs, json: values.json ?? false, kinds: kindsOf(values.kind) };
}
