import { readFileSync } from 'node:fs';
import { z } from 'zod';
import { DEFAULT_HOST_SCHEMA, HostMappingError, loadHostMapping, type HostSchema } from './db/host-names.js';
import { DEFAULT_SCHEMA } from './db/identifier.js';
import { isValidSigningSecret } from './broadcast/signature.js';

const DURATION_UNITS_MS = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** Parses `250ms`, `30s`, `2m`, `24h`, `7d` into milliseconds; null when the text is not one. */
export function parseDuration(text: string): number | null {
  const match = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(text.trim());
  if (!match) return null;
  return Math.round(Number(match[1]) * DURATION_UNITS_MS[match[2] as keyof typeof DURATION_UNITS_MS]);
}

/** The inclusive bounds of a duration, in milliseconds. */
export interface DurationRange {
  min: number;
  max: number;
}

/** Node's timers hold at most 2^31-1 ms (24.8 days): a longer one fires at once, over and over. */
const MAX_TIMER_MS = 24 * 86_400_000;
/**
 * A duration taken back from now (a cutoff in JS, an SQL interval): 100 years keeps `now - age` a valid
 * Date and the interval in PostgreSQL's range (a million-day one is "interval out of range").
 */
const MAX_AGE_MS = 36_500 * 86_400_000;
/** A timer's delay, at least `min`. */
const timer = (min = 0): DurationRange => ({ min, max: MAX_TIMER_MS });
/** An age (how long ago), at least `min`. */
export const age = (min = 0): DurationRange => ({ min, max: MAX_AGE_MS });
const POSITIVE = 1;

/** `ms` written in the largest unit that holds it whole: 36500d, 10m, 100ms. */
function formatDuration(ms: number): string {
  const [unit, size] = Object.entries(DURATION_UNITS_MS).reverse().find(([, size]) => ms % size === 0) ?? ['ms', 1];
  return `${ms / size}${unit}`;
}

/** Why a duration is outside its range, for people; null when it is within. Shared by variables and flags. */
export function durationProblem(ms: number, range: DurationRange): string | null {
  if (ms < range.min) return range.min === POSITIVE ? 'must be positive' : `must be at least ${formatDuration(range.min)}`;
  if (ms > range.max) return `must be at most ${formatDuration(range.max)}`;
  return null;
}

/** A duration's text in milliseconds within `range`; anything else is an issue naming the problem. */
const withinRange = (range: DurationRange) => (text: string, ctx: z.RefinementCtx) => {
  const ms = parseDuration(text);
  const problem = ms === null ? `"${text}" is not a duration (use e.g. 500ms, 30s, 2m, 24h, 7d)` : durationProblem(ms, range);
  if (problem !== null) {
    ctx.addIssue({ code: 'custom', message: problem });
    return z.NEVER;
  }
  return ms!;
};

/** A duration variable with its default and range, in milliseconds. */
const duration = (fallback: string, range: DurationRange) => z.string().default(fallback).transform(withinRange(range));

/** A duration variable without a default (undefined when unset: what it falls back to depends on others). */
const optionalDuration = (range: DurationRange) =>
  z
    .string()
    .optional()
    .transform((text, ctx) => (text === undefined ? undefined : withinRange(range)(text, ctx)));

const positiveInt = z.coerce.number().int().positive();
const port = z.coerce.number().int().min(0).max(65_535);

const url = z.url({ protocol: /^https?$/ });

/**
 * A user or password (everything before the last `@`) holding `/`, `?`, `#`, `@` or a second `:`
 * unencoded. Such a URL either fails to parse or parses as something else: `app:12/ss@db` is host `app`,
 * port 12 and a database path, and the connection fails later as an unknown host; clients that split at
 * the first `@` misread the rest. Reading it wrong is worse than asking for the encoding.
 */
function reservedInUserinfo(url: string): boolean {
  const rest = url.replace(/^postgres(ql)?:\/\//, '');
  const at = rest.lastIndexOf('@');
  if (at < 0) return false;
  const userinfo = rest.slice(0, at);
  return /[/?#@]/.test(userinfo) || userinfo.split(':').length > 2;
}

/** Where `ASTRIA_TUNE_TITLE` has the model's id: `{modelId}`, `Model {modelId}`. */
export const TITLE_MODEL_ID = '{modelId}';

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
const BROADCAST_TRANSPORTS = ['pg', 'http', 'redis'] as const;
export type BroadcastTransport = (typeof BROADCAST_TRANSPORTS)[number];
/** The transports a dispatcher delivers from the outbox (`pg` is sent inside the write's transaction). */
export type AsyncBroadcastTransport = Exclude<BroadcastTransport, 'pg'>;

/** The environment the README documents. Keys are the variable names, so errors name the variable. */
const envSchema = z
  .object({
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgres:// or postgresql:// URL')
      // The message never echoes the value: it carries the password.
      .refine(
        (text) => URL.canParse(text) && !reservedInUserinfo(text),
        'is not a valid URL, or its user or password holds an unencoded / @ : # ?: percent-encode them (/ as %2F, @ as %40, : as %3A, # as %23, ? as %3F)',
      ),
    ASTRIA_API_KEY: z.string().min(1).optional(),
    ASTRIA_API_KEY_FILE: z.string().min(1).optional(),
    ASTRIA_API_URL: url.default('https://api.astria.ai'),
    ASTRIA_WORKSPACE_ID: z.string().regex(/^(?:[0-9]{1,20}|all)$/, 'must be a workspace id (digits) or all').optional(),
    RECONCILER_INTERVAL: duration('30s', timer(100)),
    RECONCILER_STUCK_AFTER: duration('2m', age()),
    RECONCILER_OBSERVE_EVERY: duration('2s', { min: 100, max: 10 * 60_000 }),
    RECONCILER_OBSERVE_PROMPTS_EVERY: optionalDuration({ min: 100, max: 10 * 60_000 }),
    RECONCILER_CALLBACK_GRACE: duration('10m', timer(POSITIVE)),
    RECONCILER_AUTH_RETRY: duration('2m', timer(100)),
    RECONCILER_TRAINING_TIMEOUT: duration('24h', age(POSITIVE)),
    RECONCILER_ORPHAN_WINDOW: duration('48h', age(POSITIVE)),
    ASTRIA_TUNE_TITLE: z
      .string()
      .refine((text) => text.includes(TITLE_MODEL_ID), `must contain ${TITLE_MODEL_ID} (where the app writes the model's id into the tune's title)`)
      .refine((text) => text.replaceAll(TITLE_MODEL_ID, '').search(/[{}]/) === -1, `must hold no placeholder but ${TITLE_MODEL_ID}`)
      .optional(),
    RECONCILER_MAX_NOT_FOUND_SHARE: z.coerce.number().gt(0, 'must be above 0').max(1, 'must be at most 1').default(0.5),
    ASTRIA_MAX_RPS: z.coerce.number().positive().max(1_000).default(5),
    ASTRIA_CONCURRENCY: positiveInt.max(256).default(4),
    ASTRIA_TIMEOUT: duration('30s', timer(POSITIVE)),
    RECONCILER_HTTP_PORT: port.default(9464),
    RECONCILER_HTTP_HOST: z.string().min(1).default('0.0.0.0'),
    WEBHOOK_SECRET: z.string().min(1).optional(),
    LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
    SHUTDOWN_TIMEOUT: duration('25s', timer()),
    RECONCILER_EVENT_RETENTION: duration('30d', age(POSITIVE)),
    RECONCILER_SCHEMA: z
      .string()
      // Quoted wherever it is used, so any name works as written (`user`, `MyLog`, `astria-reconciler`);
      // PostgreSQL would silently cut a longer one to 63 bytes, naming another schema than the one given.
      .refine((name) => Buffer.byteLength(name, 'utf8') <= 63, 'must be at most 63 bytes (a PostgreSQL identifier)')
      .refine((name) => !name.includes('\0'), 'must not contain a NUL character')
      // PostgreSQL reserves pg_* for system schemas and owns information_schema.
      .refine((name) => !/^pg_/i.test(name) && name.toLowerCase() !== 'information_schema', 'must not be a system schema (pg_*, information_schema)')
      .default(DEFAULT_SCHEMA),
    BROADCAST: z
      .string()
      .default('pg')
      .transform((text) => [...new Set(text.split(',').map((part) => part.trim()).filter(Boolean))])
      .pipe(z.array(z.enum(BROADCAST_TRANSPORTS)).min(1, 'must name at least one of pg, http, redis')),
    BROADCAST_PG_CHANNEL: z
      .string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, 'must be a channel name of letters, digits and _')
      .default('model_status_changed'),
    BROADCAST_HTTP_URL: url.optional(),
    BROADCAST_HTTP_SECRET: z
      .string()
      .min(1)
      .refine(isValidSigningSecret, 'starts with whsec_ but the rest is not valid base64 (a Standard Webhooks key is whsec_ and the base64 of its bytes)')
      .optional(),
    BROADCAST_REDIS_CHANNEL: z.string().min(1).default('model_status_changed'),
    REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL').optional(),
    BROADCAST_DEAD_AFTER: duration('6h', age(POSITIVE)),
    BROADCAST_DEAD_AFTER_ATTEMPTS: positiveInt.default(100),
    RECONCILER_HOST_MAPPING: z.string().min(1).optional(),
  });

/** Variables required only by some choice of another; checked after parsing so every problem is named at once. */
function missingDependents(env: Record<string, string>): string[] {
  const transports = (env.BROADCAST ?? 'pg').split(',').map((part) => part.trim());
  const required: [string, boolean][] = [
    ['BROADCAST_HTTP_URL', transports.includes('http')],
    ['BROADCAST_HTTP_SECRET', transports.includes('http')],
    ['REDIS_URL', transports.includes('redis')],
  ];
  return required
    .filter(([name, needed]) => needed && !env[name])
    .map(([name]) => `${name} is required when BROADCAST includes ${name === 'REDIS_URL' ? 'redis' : 'http'}`);
}

/**
 * Our tables must never land in the app's own schema: `prisma migrate` would see them as drift and
 * offer to drop them. That is `public`, or the `?schema=` of a Prisma DATABASE_URL.
 */
function schemaClash(schema: string, databaseUrl: string): string[] {
  const appSchema = new URL(databaseUrl).searchParams.get('schema');
  const clashes = new Set(['public', appSchema ?? 'public']);
  return clashes.has(schema) ? [`RECONCILER_SCHEMA must not be the app's schema ("${schema}"): use a schema of its own, e.g. astria_reconciler`] : [];
}

export interface Config {
  databaseUrl: string;
  astria: {
    apiKey: string;
    /** Set when the key comes from `ASTRIA_API_KEY_FILE`: the client re-reads it when the file changes. */
    apiKeyFile: string | undefined;
    apiUrl: string;
    /** Sent as `X-Workspace-Id`: the workspace (digits) the app's tunes live in, or `all`. */
    workspaceId: string | undefined;
    maxRps: number;
    concurrency: number;
    timeoutMs: number;
  };
  intervalMs: number;
  stuckAfterMs: number;
  /** How often the daemon observes in-flight tunes (the list pages covering them): lag against calls. */
  observeEveryMs: number;
  /** How often the daemon observes in-flight prompts (generations); unset: 1.5 × `observeEveryMs`. */
  observePromptsEveryMs: number | undefined;
  /** A reconciler transition with no callback this long after it is a lost callback. */
  callbackGraceMs: number;
  /** While Astria rejects the key, how often the daemon tries it again. */
  authRetryMs: number;
  trainingTimeoutMs: number;
  /** Rows without a tune id created this recently are matched to tunes on Astria's list (orphans). */
  orphanWindowMs: number;
  /** `ASTRIA_TUNE_TITLE`: the title the app gives a model's tune, `{modelId}` standing for its id; unset = no title matching. */
  tuneTitleTemplate: string | undefined;
  /** Above this share of a pass's models answering 404, none is marked ERROR (a wrong endpoint). */
  maxNotFoundShare: number;
  shutdownTimeoutMs: number;
  /** Delivered events older than this are pruned from the event log. */
  eventRetentionMs: number;
  http: { port: number; host: string; webhookSecret: string | undefined };
  logLevel: (typeof LOG_LEVELS)[number];
  schema: string;
  /** The app's table, column and status names (`RECONCILER_HOST_MAPPING`). */
  host: HostSchema;
  broadcast: {
    transports: BroadcastTransport[];
    pgChannel: string;
    httpUrl: string | undefined;
    httpSecret: string | undefined;
    redisUrl: string | undefined;
    redisChannel: string;
    /** A delivery still rejected (or failed on: an HTTP 500) this long after it was queued, or still rejected after this many attempts, is parked as dead. */
    deadAfterMs: number;
    deadAfterAttempts: number;
  };
}

/** What no HTTP header value may hold (a key pasted with a line break, a NUL). */
export const CONTROL_CHARACTER = /[\u0000-\u001f\u007f]/;

/**
 * The Bearer key, from `ASTRIA_API_KEY` or the file `ASTRIA_API_KEY_FILE` names (a mounted Secret, which
 * can be rotated without a restart). Problems are added to `problems`; the key itself never is.
 */
function readApiKey(env: Record<string, string | undefined>, problems: string[]): string {
  const { ASTRIA_API_KEY: value, ASTRIA_API_KEY_FILE: file } = env;
  if (value && file) {
    problems.unshift('ASTRIA_API_KEY and ASTRIA_API_KEY_FILE are both set: use one');
    return '';
  }
  if (value) {
    if (CONTROL_CHARACTER.test(value)) problems.unshift('ASTRIA_API_KEY contains a control character (a line break?): an HTTP header cannot carry it');
    return value;
  }
  if (!file) {
    problems.unshift('ASTRIA_API_KEY (or ASTRIA_API_KEY_FILE) is required');
    return '';
  }
  let key = '';
  try {
    key = readFileSync(file, 'utf8').trim();
  } catch (error) {
    problems.unshift(`ASTRIA_API_KEY_FILE cannot be read (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
    return '';
  }
  if (key === '') problems.unshift('ASTRIA_API_KEY_FILE names an empty file');
  else if (CONTROL_CHARACTER.test(key)) {
    problems.unshift('ASTRIA_API_KEY_FILE holds a control character inside the key (more than one line?): an HTTP header cannot carry it');
  }
  return key;
}

/** The app's names from the file `RECONCILER_HOST_MAPPING` names (default vibephoto's tables); a bad file is a problem naming its key. */
function readHostMapping(file: string | undefined, problems: string[]): HostSchema {
  if (file === undefined) return DEFAULT_HOST_SCHEMA;
  try {
    return loadHostMapping(file);
  } catch (error) {
    if (!(error instanceof HostMappingError)) throw error;
    problems.push(error.message);
    return DEFAULT_HOST_SCHEMA;
  }
}

export class ConfigError extends Error {
  override name = 'ConfigError';
}

/**
 * Reads the configuration from the environment. Empty variables count as unset so that
 * `FOO=` in a manifest falls back to the default instead of failing obscurely.
 * Throws a ConfigError naming every bad variable.
 */
export function loadConfig(env: Record<string, string | undefined>, options: { needsAstria?: boolean } = {}): Config {
  const present = Object.fromEntries(Object.entries(env).filter(([, value]) => value !== undefined && value !== ''));
  const parsed = envSchema.safeParse(present);
  const problems = parsed.success
    ? []
    : parsed.error.issues.map((issue) => {
        const name = String(issue.path[0] ?? 'config');
        return `${name} ${describeIssue(issue, present[name] !== undefined)}`;
      });
  // `report` reads only our event log; everything else talks to Astria.
  const apiKey = (options.needsAstria ?? true) ? readApiKey(present, problems) : '';
  problems.push(...missingDependents(present as Record<string, string>));
  if (parsed.success) problems.push(...schemaClash(parsed.data.RECONCILER_SCHEMA, parsed.data.DATABASE_URL));
  const host = readHostMapping(present.RECONCILER_HOST_MAPPING, problems);
  if (!parsed.success || problems.length > 0) throw new ConfigError(`invalid configuration: ${problems.join('; ')}`);
  const e = parsed.data;
  return {
    databaseUrl: e.DATABASE_URL,
    astria: {
      apiKey,
      apiKeyFile: e.ASTRIA_API_KEY_FILE,
      apiUrl: e.ASTRIA_API_URL.replace(/\/+$/, ''),
      workspaceId: e.ASTRIA_WORKSPACE_ID,
      maxRps: e.ASTRIA_MAX_RPS,
      concurrency: e.ASTRIA_CONCURRENCY,
      timeoutMs: e.ASTRIA_TIMEOUT,
    },
    intervalMs: e.RECONCILER_INTERVAL,
    stuckAfterMs: e.RECONCILER_STUCK_AFTER,
    observeEveryMs: e.RECONCILER_OBSERVE_EVERY,
    observePromptsEveryMs: e.RECONCILER_OBSERVE_PROMPTS_EVERY,
    callbackGraceMs: e.RECONCILER_CALLBACK_GRACE,
    authRetryMs: e.RECONCILER_AUTH_RETRY,
    trainingTimeoutMs: e.RECONCILER_TRAINING_TIMEOUT,
    orphanWindowMs: e.RECONCILER_ORPHAN_WINDOW,
    tuneTitleTemplate: e.ASTRIA_TUNE_TITLE,
    maxNotFoundShare: e.RECONCILER_MAX_NOT_FOUND_SHARE,
    shutdownTimeoutMs: e.SHUTDOWN_TIMEOUT,
    eventRetentionMs: e.RECONCILER_EVENT_RETENTION,
    http: { port: e.RECONCILER_HTTP_PORT, host: e.RECONCILER_HTTP_HOST, webhookSecret: e.WEBHOOK_SECRET },
    logLevel: e.LOG_LEVEL,
    schema: e.RECONCILER_SCHEMA,
    host,
    broadcast: {
      transports: e.BROADCAST,
      pgChannel: e.BROADCAST_PG_CHANNEL,
      httpUrl: e.BROADCAST_HTTP_URL,
      httpSecret: e.BROADCAST_HTTP_SECRET,
      redisUrl: e.REDIS_URL,
      redisChannel: e.BROADCAST_REDIS_CHANNEL,
      deadAfterMs: e.BROADCAST_DEAD_AFTER,
      deadAfterAttempts: e.BROADCAST_DEAD_AFTER_ATTEMPTS,
    },
  };
}

/** A message for people, never echoing the value (it may be a secret). */
function describeIssue(issue: z.core.$ZodIssue, given: boolean): string {
  if (issue.code !== 'invalid_type') return issue.message;
  if (!given) return 'is required';
  if (issue.expected === 'int') return 'must be a whole number';
  if (issue.expected === 'number') return 'must be a number';
  return issue.message;
}
