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
  it('defaults: tunes observed every 2 s, prompts unset (the daemon derives them), callback grace 10 min, key retried every 2 min', () => {
    expect(loadConfig(BASE)).toMatchObject({ observeEveryMs: 2_000, observePromptsEveryMs: undefined, callbackGraceMs: 600_000, authRetryMs: 120_000 });
  });

  it('RECONCILER_CALLBACK_GRACE up to 24d is accepted, beyond it refused saying so', () => {
    expect(loadConfig({ ...BASE, RECONCILER_CALLBACK_GRACE: '24d' }).callbackGraceMs).toBe(24 * 86_400_000);
    expect(problem({ RECONCILER_CALLBACK_GRACE: '1000000000d' })).toContain('RECONCILER_CALLBACK_GRACE must be at most 24d');
  });

  it('accepts other durations', () => {
    const config = loadConfig({ ...BASE, RECONCILER_OBSERVE_EVERY: '500ms', RECONCILER_OBSERVE_PROMPTS_EVERY: '1s', RECONCILER_CALLBACK_GRACE: '1h', RECONCILER_AUTH_RETRY: '30s' });
    expect(config).toMatchObject({ observeEveryMs: 500, observePromptsEveryMs: 1_000, callbackGraceMs: 3_600_000, authRetryMs: 30_000 });
  });

  it.each([
    ['RECONCILER_OBSERVE_EVERY', 'often'],
    ['RECONCILER_OBSERVE_EVERY', '10ms'],
    ['RECONCILER_OBSERVE_EVERY', '1h'],
    ['RECONCILER_OBSERVE_PROMPTS_EVERY', 'soon'],
    ['RECONCILER_OBSERVE_PROMPTS_EVERY', '50ms'],
    ['RECONCILER_OBSERVE_PROMPTS_EVERY', '11m'],
    ['RECONCILER_CALLBACK_GRACE', '0s'],
    ['RECONCILER_CALLBACK_GRACE', '25d'],
    ['RECONCILER_CALLBACK_GRACE', '1000000000d'],
    ['RECONCILER_AUTH_RETRY', '5ms'],
  ])('%s=%s fails at start naming the variable', (name, value) => {
    expect(problem({ [name]: value })).toContain(name);
  });
});
