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

describe('detection settings (issue 8)', () => {
  it('defaults: observe every 2 s, callback grace 10 min, key retried every 2 min', () => {
    expect(loadConfig(BASE)).toMatchObject({ observeEveryMs: 2_000, callbackGraceMs: 600_000, authRetryMs: 120_000 });
  });

  it('accepts other durations', () => {
    const config = loadConfig({ ...BASE, RECONCILER_OBSERVE_EVERY: '500ms', RECONCILER_CALLBACK_GRACE: '1h', RECONCILER_AUTH_RETRY: '30s' });
    expect(config).toMatchObject({ observeEveryMs: 500, callbackGraceMs: 3_600_000, authRetryMs: 30_000 });
  });

  it.each([
    ['RECONCILER_OBSERVE_EVERY', 'often'],
    ['RECONCILER_OBSERVE_EVERY', '10ms'],
    ['RECONCILER_OBSERVE_EVERY', '1h'],
    ['RECONCILER_CALLBACK_GRACE', '0s'],
    ['RECONCILER_AUTH_RETRY', '5ms'],
  ])('%s=%s fails at start naming the variable', (name, value) => {
    expect(problem({ [name]: value })).toContain(name);
  });
});
