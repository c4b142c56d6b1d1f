import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, parseDuration } from '../../src/config.js';

const API_KEY = 'sd_TOPSECRET_9f8e7d6c5b4a';
const BASE = { DATABASE_URL: 'postgres://app:pw@db.internal:5432/app', ASTRIA_API_KEY: API_KEY };

/** The ConfigError `loadConfig` throws for `env` (fails the test when it does not throw one). */
function configError(env: Record<string, string | undefined>, options?: { needsAstria?: boolean }): ConfigError {
  try {
    if (options === undefined) loadConfig(env);
    else loadConfig(env, options);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return error as ConfigError;
  }
  throw new Error(`loadConfig accepted ${JSON.stringify(env)}`);
}

describe('parseDuration', () => {
  it.each([
    ['250ms', 250],
    ['30s', 30_000],
    ['2m', 120_000],
    ['24h', 86_400_000],
    ['7d', 604_800_000],
    ['0s', 0],
    ['1500ms', 1_500],
  ])('%s → %d ms', (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it.each(['soon', '30', '', 's', '-5s', '5 minutes', '5x', '2w', 'm5'])('%j is not a duration', (text) => {
    expect(parseDuration(text)).toBeNull();
  });
});

describe('loadConfig defaults (SPEC.md table)', () => {
  const config = loadConfig(BASE);

  it('timing', () => {
    expect(config.intervalMs).toBe(30_000);
    expect(config.stuckAfterMs).toBe(120_000);
    expect(config.trainingTimeoutMs).toBe(24 * 3_600_000);
    expect(config.shutdownTimeoutMs).toBe(25_000);
  });

  it('Astria', () => {
    expect(config.astria.apiUrl).toBe('https://api.astria.ai');
    expect(config.astria.apiKey).toBe(API_KEY);
    expect(config.astria.maxRps).toBe(5);
    expect(config.astria.concurrency).toBe(4);
  });

  it('HTTP and logging', () => {
    expect(config.http.port).toBe(9464);
    expect(config.http.host).toBe('0.0.0.0');
    expect(config.http.webhookSecret).toBeUndefined();
    expect(config.logLevel).toBe('info');
  });

  it('broadcast and own schema', () => {
    expect(config.broadcast.transports).toEqual(['pg']);
    expect(config.broadcast.pgChannel).toBe('model_status_changed');
    expect(config.schema).toBe('astria_reconciler');
  });

  it('keeps DATABASE_URL as given', () => {
    expect(config.databaseUrl).toBe(BASE.DATABASE_URL);
  });
});

describe('loadConfig reads the environment', () => {
  it('durations in every unit', () => {
    const config = loadConfig({
      ...BASE,
      RECONCILER_INTERVAL: '500ms',
      RECONCILER_STUCK_AFTER: '45s',
      RECONCILER_TRAINING_TIMEOUT: '2d',
      SHUTDOWN_TIMEOUT: '1m',
    });
    expect(config.intervalMs).toBe(500);
    expect(config.stuckAfterMs).toBe(45_000);
    expect(config.trainingTimeoutMs).toBe(2 * 86_400_000);
    expect(config.shutdownTimeoutMs).toBe(60_000);
    expect(loadConfig({ ...BASE, RECONCILER_TRAINING_TIMEOUT: '36h' }).trainingTimeoutMs).toBe(36 * 3_600_000);
  });

  it('RECONCILER_STUCK_AFTER=0s means every in-flight model', () => {
    expect(loadConfig({ ...BASE, RECONCILER_STUCK_AFTER: '0s' }).stuckAfterMs).toBe(0);
  });

  it('numbers, host, level, URL, secret', () => {
    const config = loadConfig({
      ...BASE,
      ASTRIA_MAX_RPS: '2.5',
      ASTRIA_CONCURRENCY: '8',
      RECONCILER_HTTP_PORT: '8080',
      RECONCILER_HTTP_HOST: '127.0.0.1',
      LOG_LEVEL: 'debug',
      ASTRIA_API_URL: 'http://localhost:4010/',
      WEBHOOK_SECRET: 'hook-secret',
    });
    expect(config.astria.maxRps).toBe(2.5);
    expect(config.astria.concurrency).toBe(8);
    expect(config.http.port).toBe(8080);
    expect(config.http.host).toBe('127.0.0.1');
    expect(config.logLevel).toBe('debug');
    expect(config.astria.apiUrl).toBe('http://localhost:4010');
    expect(config.http.webhookSecret).toBe('hook-secret');
  });

  it('accepts postgresql:// as well as postgres://', () => {
    expect(loadConfig({ ...BASE, DATABASE_URL: 'postgresql://localhost/app' }).databaseUrl).toBe('postgresql://localhost/app');
  });

  it('BROADCAST is a comma list', () => {
    const config = loadConfig({
      ...BASE,
      BROADCAST: 'pg, http',
      BROADCAST_HTTP_URL: 'https://app.example/api/broadcast',
      BROADCAST_HTTP_SECRET: 's3cret',
      BROADCAST_PG_CHANNEL: 'my_channel',
    });
    expect(config.broadcast.transports).toEqual(['pg', 'http']);
    expect(config.broadcast.httpUrl).toBe('https://app.example/api/broadcast');
    expect(config.broadcast.pgChannel).toBe('my_channel');
  });

  it('an empty string counts as unset', () => {
    const config = loadConfig({
      ...BASE,
      RECONCILER_INTERVAL: '',
      LOG_LEVEL: '',
      ASTRIA_MAX_RPS: '',
      RECONCILER_HTTP_PORT: '',
      BROADCAST: '',
      WEBHOOK_SECRET: '',
    });
    expect(config.intervalMs).toBe(30_000);
    expect(config.logLevel).toBe('info');
    expect(config.astria.maxRps).toBe(5);
    expect(config.http.port).toBe(9464);
    expect(config.broadcast.transports).toEqual(['pg']);
    expect(config.http.webhookSecret).toBeUndefined();
  });

  it('an empty required variable is reported as missing', () => {
    expect(configError({ ...BASE, ASTRIA_API_KEY: '' }).message).toContain('ASTRIA_API_KEY');
    expect(configError({ ...BASE, DATABASE_URL: '' }).message).toContain('DATABASE_URL');
  });
});

describe('loadConfig rejects invalid values, naming the variable', () => {
  it.each([
    ['RECONCILER_INTERVAL', 'soon'],
    ['RECONCILER_STUCK_AFTER', '2 minutes'],
    ['RECONCILER_TRAINING_TIMEOUT', 'forever'],
    ['ASTRIA_MAX_RPS', '-1'],
    ['ASTRIA_MAX_RPS', '0'],
    ['ASTRIA_CONCURRENCY', 'abc'],
    ['ASTRIA_CONCURRENCY', '0'],
    ['RECONCILER_HTTP_PORT', '70000'],
    ['LOG_LEVEL', 'loud'],
    ['BROADCAST', 'kafka'],
    ['DATABASE_URL', 'mysql://x'],
    ['ASTRIA_API_URL', 'not a url'],
  ])('%s=%s', (name, value) => {
    const error = configError({ ...BASE, [name]: value });
    expect(error.message).toContain(name);
  });

  it('missing DATABASE_URL', () => {
    expect(configError({ ASTRIA_API_KEY: API_KEY }).message).toContain('DATABASE_URL');
  });

  it('a DATABASE_URL the URL parser rejects (unescaped / in the password): names it, never echoes it', () => {
    const error = configError({ ...BASE, DATABASE_URL: 'postgresql://app:pa/ss@db.internal:5432/app' });
    expect(error.message).toMatch(/DATABASE_URL is not a valid URL/);
    expect(error.message).not.toContain('pa/ss');
  });

  it.each([
    ['/', 'postgresql://app:12/ss@db.internal:5432/app'],
    ['/', 'postgresql://app:pa/ss@db.internal/app'],
    ['@', 'postgresql://app:p@ss@db.internal:5432/app'],
    [':', 'postgresql://app:pa:ss@db.internal:5432/app'],
    ['#', 'postgresql://app:12#ss@db.internal/app'],
    ['?', 'postgresql://app:pa?ss@db.internal/app'],
  ])('a password holding an unencoded %s gets the percent-encoding hint, naming DATABASE_URL, never echoing it', (_, url) => {
    const error = configError({ ...BASE, DATABASE_URL: url });
    expect(error.message).toMatch(/DATABASE_URL .*percent-encode them \(\/ as %2F, @ as %40, : as %3A, # as %23, \? as %3F\)/);
    expect(error.message).not.toContain('ss@db');
    expect(error.message).not.toMatch(/pa.ss|12.ss/);
  });

  it('a password with the reserved characters percent-encoded is taken as given', () => {
    const url = 'postgresql://app:p%2F%40%3A%23%3Fss@db.internal:5432/app?sslmode=require';
    expect(loadConfig({ ...BASE, DATABASE_URL: url }).databaseUrl).toBe(url);
  });

  it('missing ASTRIA_API_KEY', () => {
    expect(configError({ DATABASE_URL: BASE.DATABASE_URL }).message).toContain('ASTRIA_API_KEY');
  });

  it('ASTRIA_API_KEY_FILE instead of ASTRIA_API_KEY: read at start, named when missing or empty, never echoed', () => {
    const dir = mkdtempSync(join(tmpdir(), 'astria-key-'));
    const file = join(dir, 'key');
    writeFileSync(file, `${API_KEY}\n`);
    const config = loadConfig({ DATABASE_URL: BASE.DATABASE_URL, ASTRIA_API_KEY_FILE: file });
    expect(config.astria).toMatchObject({ apiKey: API_KEY, apiKeyFile: file });
    expect(configError({ ...BASE, ASTRIA_API_KEY_FILE: file }).message).toMatch(/ASTRIA_API_KEY and ASTRIA_API_KEY_FILE are both set/);
    expect(configError({ DATABASE_URL: BASE.DATABASE_URL, ASTRIA_API_KEY_FILE: join(dir, 'absent') }).message).toMatch(
      /ASTRIA_API_KEY_FILE cannot be read \(ENOENT\)/,
    );
    writeFileSync(file, '  \n');
    expect(configError({ DATABASE_URL: BASE.DATABASE_URL, ASTRIA_API_KEY_FILE: file }).message).toMatch(/ASTRIA_API_KEY_FILE names an empty file/);
    writeFileSync(file, API_KEY);
    expect(configError({ DATABASE_URL: BASE.DATABASE_URL, ASTRIA_API_KEY_FILE: file, LOG_LEVEL: 'loud' }).message).not.toContain(API_KEY);
    rmSync(dir, { recursive: true });
  });

  it('a key with a line break or NUL fails at start naming its variable (an HTTP header cannot carry it)', () => {
    expect(configError({ ...BASE, ASTRIA_API_KEY: `${API_KEY}\nsd_other` }).message).toMatch(/ASTRIA_API_KEY contains a control character/);
    const dir = mkdtempSync(join(tmpdir(), 'astria-key-'));
    const file = join(dir, 'key');
    writeFileSync(file, `${API_KEY}\nsd_other\n`);
    const { message } = configError({ DATABASE_URL: BASE.DATABASE_URL, ASTRIA_API_KEY_FILE: file });
    expect(message).toMatch(/ASTRIA_API_KEY_FILE holds a control character/);
    expect(message).not.toContain(API_KEY);
    rmSync(dir, { recursive: true });
  });

  it.each(['information_schema', 'pg_catalog', 'pg_foo'])('RECONCILER_SCHEMA=%s (a system schema) fails at start naming it', (schema) => {
    expect(configError({ ...BASE, RECONCILER_SCHEMA: schema }).message).toMatch(/RECONCILER_SCHEMA must not be a system schema/);
  });

  it('a value that is not a number says so (not "is required")', () => {
    expect(configError({ ...BASE, ASTRIA_MAX_RPS: 'NaN' }).message).toContain('ASTRIA_MAX_RPS must be a number');
    expect(configError({ ...BASE, ASTRIA_CONCURRENCY: '1.5' }).message).toContain('ASTRIA_CONCURRENCY must be a whole number');
    expect(configError({ ...BASE, RECONCILER_HTTP_PORT: 'abc' }).message).toContain('RECONCILER_HTTP_PORT must be a number');
  });

  it('names every bad variable in one message', () => {
    const { message } = configError({
      ASTRIA_API_KEY: API_KEY,
      RECONCILER_INTERVAL: 'soon',
      ASTRIA_MAX_RPS: '-1',
      ASTRIA_CONCURRENCY: 'abc',
      RECONCILER_HTTP_PORT: '70000',
      LOG_LEVEL: 'loud',
    });
    for (const name of ['DATABASE_URL', 'RECONCILER_INTERVAL', 'ASTRIA_MAX_RPS', 'ASTRIA_CONCURRENCY', 'RECONCILER_HTTP_PORT', 'LOG_LEVEL']) {
      expect(message).toContain(name);
    }
  });

  it('names a missing ASTRIA_API_KEY alongside other bad variables', () => {
    const { message } = configError({ DATABASE_URL: 'mysql://x', LOG_LEVEL: 'loud' });
    for (const name of ['ASTRIA_API_KEY', 'DATABASE_URL', 'LOG_LEVEL']) expect(message).toContain(name);
  });

  it('BROADCAST=http without BROADCAST_HTTP_URL names BROADCAST_HTTP_URL', () => {
    const { message } = configError({ ...BASE, BROADCAST: 'http', BROADCAST_HTTP_SECRET: 's3cret' });
    expect(message).toContain('BROADCAST_HTTP_URL');
  });

  it('BROADCAST=http without BROADCAST_HTTP_URL is named even when another variable is bad too', () => {
    const { message } = configError({ ...BASE, BROADCAST: 'http', BROADCAST_HTTP_SECRET: 's3cret', LOG_LEVEL: 'loud' });
    expect(message).toContain('LOG_LEVEL');
    expect(message).toContain('BROADCAST_HTTP_URL');
  });

  it('BROADCAST_HTTP_SECRET: a whsec_ key that is not base64 is refused at start, naming it; any other string is a key', () => {
    const http = { ...BASE, BROADCAST: 'http', BROADCAST_HTTP_URL: 'https://app.example/api/reconciler/events' };
    const { message } = configError({ ...http, BROADCAST_HTTP_SECRET: 'whsec_not base64!' });
    expect(message).toMatch(/BROADCAST_HTTP_SECRET starts with whsec_ but the rest is not valid base64/);
    expect(message).not.toContain('not base64!');
    expect(loadConfig({ ...http, BROADCAST_HTTP_SECRET: 'whsec_c2VjcmV0IGtleSBieXRlcw==' }).broadcast.httpSecret).toBe('whsec_c2VjcmV0IGtleSBieXRlcw==');
    expect(loadConfig({ ...http, BROADCAST_HTTP_SECRET: 'a plain secret' }).broadcast.httpSecret).toBe('a plain secret');
  });

  it('never puts the ASTRIA_API_KEY value in the message', () => {
    const { message } = configError({
      ASTRIA_API_KEY: API_KEY,
      DATABASE_URL: 'mysql://x',
      ASTRIA_API_URL: 'not a url',
      RECONCILER_INTERVAL: 'soon',
      ASTRIA_MAX_RPS: '-1',
      LOG_LEVEL: 'loud',
      BROADCAST: 'kafka',
    });
    expect(message).toContain('RECONCILER_INTERVAL');
    expect(message).not.toContain(API_KEY);
    expect(message).not.toContain('TOPSECRET');
  });
});

describe('loadConfig without Astria (report command)', () => {
  it('succeeds without ASTRIA_API_KEY when needsAstria is false', () => {
    const config = loadConfig({ DATABASE_URL: BASE.DATABASE_URL }, { needsAstria: false });
    expect(config.databaseUrl).toBe(BASE.DATABASE_URL);
    expect(config.intervalMs).toBe(30_000);
  });

  it('still requires DATABASE_URL when needsAstria is false', () => {
    expect(configError({}, { needsAstria: false }).message).toContain('DATABASE_URL');
  });

  it('needsAstria defaults to true', () => {
    expect(configError({ DATABASE_URL: BASE.DATABASE_URL }, {}).message).toContain('ASTRIA_API_KEY');
  });
});

describe('RECONCILER_EVENT_RETENTION', () => {
  it('defaults to 30d and accepts any duration', () => {
    expect(loadConfig(BASE).eventRetentionMs).toBe(30 * 86_400_000);
    expect(loadConfig({ ...BASE, RECONCILER_EVENT_RETENTION: '90d' }).eventRetentionMs).toBe(90 * 86_400_000);
  });

  it('rejects a non-duration or zero, naming the variable', () => {
    expect(configError({ ...BASE, RECONCILER_EVENT_RETENTION: 'forever' }).message).toContain('RECONCILER_EVENT_RETENTION');
    expect(configError({ ...BASE, RECONCILER_EVENT_RETENTION: '0s' }).message).toContain('RECONCILER_EVENT_RETENTION');
  });
});
