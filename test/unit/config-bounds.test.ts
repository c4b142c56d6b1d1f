import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const BASE = { DATABASE_URL: 'postgres://app:pw@db.internal:5432/app', ASTRIA_API_KEY: 'sd_key' };

function problem(env: Record<string, string>): string {
  try {
    loadConfig({ ...BASE, ...env });
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(env)}`);
}

describe('durations a timer takes are at most 24 days', () => {
  it.each(['RECONCILER_INTERVAL', 'ASTRIA_TIMEOUT', 'SHUTDOWN_TIMEOUT', 'RECONCILER_CALLBACK_GRACE', 'RECONCILER_AUTH_RETRY'])(
    '%s=25d is refused, naming the variable; 24d is accepted',
    (name) => {
      expect(problem({ [name]: '25d' })).toMatch(new RegExp(`${name} must be at most 24d`));
      expect(() => loadConfig({ ...BASE, [name]: '24d' })).not.toThrow();
    },
  );
});

describe('ages (how long ago, as a cutoff or an SQL interval) are at most 100 years', () => {
  it.each(['RECONCILER_STUCK_AFTER', 'RECONCILER_TRAINING_TIMEOUT', 'RECONCILER_EVENT_RETENTION', 'BROADCAST_DEAD_AFTER'])(
    '%s=999999999d is refused at start, naming the variable; 36500d is accepted',
    (name) => {
      expect(problem({ [name]: '999999999d' })).toMatch(new RegExp(`${name} must be at most 36500d`));
      expect(problem({ [name]: '36501d' })).toMatch(new RegExp(`${name} must be at most 36500d`));
      expect(() => loadConfig({ ...BASE, [name]: '36500d' })).not.toThrow();
    },
  );
});

describe('RECONCILER_SCHEMA', () => {
  it("must not be the app's schema: public, or the ?schema= of DATABASE_URL", () => {
    expect(problem({ RECONCILER_SCHEMA: 'public' })).toMatch(/RECONCILER_SCHEMA must not be the app's schema/);
    const prisma = { DATABASE_URL: 'postgresql://app:pw@db:5432/app?schema=shop' };
    expect(problem({ ...prisma, RECONCILER_SCHEMA: 'shop' })).toMatch(/RECONCILER_SCHEMA must not be the app's schema \("shop"\)/);
    expect(loadConfig({ ...BASE, ...prisma, RECONCILER_SCHEMA: 'astria' }).schema).toBe('astria');
  });

  it('takes any name quoting makes valid, up to 63 bytes (PostgreSQL cuts a longer one)', () => {
    for (const name of ['astria-reconciler', 'astria reconciler', 'log "v2"', '1st', 'é'.repeat(31)]) {
      expect(loadConfig({ ...BASE, RECONCILER_SCHEMA: name }).schema).toBe(name);
    }
    expect(problem({ RECONCILER_SCHEMA: 'x'.repeat(64) })).toMatch(/RECONCILER_SCHEMA must be at most 63 bytes/);
    expect(problem({ RECONCILER_SCHEMA: 'é'.repeat(32) })).toMatch(/RECONCILER_SCHEMA must be at most 63 bytes/);
    expect(problem({ RECONCILER_SCHEMA: 'a\u0000b' })).toMatch(/RECONCILER_SCHEMA must not contain a NUL/);
  });
});

describe('RECONCILER_MAX_NOT_FOUND_SHARE', () => {
  it('defaults to 0.5 and takes a share in (0, 1]', () => {
    expect(loadConfig(BASE).maxNotFoundShare).toBe(0.5);
    expect(loadConfig({ ...BASE, RECONCILER_MAX_NOT_FOUND_SHARE: '1' }).maxNotFoundShare).toBe(1);
    expect(loadConfig({ ...BASE, RECONCILER_MAX_NOT_FOUND_SHARE: '0.1' }).maxNotFoundShare).toBe(0.1);
    for (const value of ['0', '1.5', '-0.2', 'half']) expect(problem({ RECONCILER_MAX_NOT_FOUND_SHARE: value })).toMatch(/RECONCILER_MAX_NOT_FOUND_SHARE/);
  });
});
