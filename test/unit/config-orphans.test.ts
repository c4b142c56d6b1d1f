import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const BASE = { DATABASE_URL: 'postgres://app:pw@db.internal:5432/app', ASTRIA_API_KEY: 'sd_orphans_test_key' };

describe('RECONCILER_ORPHAN_WINDOW', () => {
  it('defaults to 48h and takes a duration', () => {
    expect(loadConfig(BASE).orphanWindowMs).toBe(48 * 3_600_000);
    expect(loadConfig({ ...BASE, RECONCILER_ORPHAN_WINDOW: '6h' }).orphanWindowMs).toBe(6 * 3_600_000);
  });

  it.each([
    ['0s', /RECONCILER_ORPHAN_WINDOW must be positive/],
    ['36501d', /RECONCILER_ORPHAN_WINDOW must be at most 36500d/],
    ['two days', /RECONCILER_ORPHAN_WINDOW "two days" is not a duration/],
  ])('fails at start naming the variable for %j', (value, message) => {
    expect(() => loadConfig({ ...BASE, RECONCILER_ORPHAN_WINDOW: value })).toThrow(ConfigError);
    expect(() => loadConfig({ ...BASE, RECONCILER_ORPHAN_WINDOW: value })).toThrow(message);
  });
});

describe('ASTRIA_TUNE_TITLE', () => {
  it('is optional: unset (or empty) matches no title', () => {
    expect(loadConfig(BASE).tuneTitleTemplate).toBeUndefined();
    expect(loadConfig({ ...BASE, ASTRIA_TUNE_TITLE: '' }).tuneTitleTemplate).toBeUndefined();
  });

  it.each(['{modelId}', 'Model {modelId}', '{modelId}-{modelId}'])('accepts %j as written', (value) => {
    expect(loadConfig({ ...BASE, ASTRIA_TUNE_TITLE: value }).tuneTitleTemplate).toBe(value);
  });

  it.each([
    ['Model', /ASTRIA_TUNE_TITLE must contain \{modelId\}/],
    ['{modelid}', /ASTRIA_TUNE_TITLE must contain \{modelId\}/],
    ['{userId}-{modelId}', /ASTRIA_TUNE_TITLE must hold no placeholder but \{modelId\}/],
    ['{modelId', /ASTRIA_TUNE_TITLE must contain \{modelId\}/],
  ])('fails at start naming the variable for %j', (value, message) => {
    expect(() => loadConfig({ ...BASE, ASTRIA_TUNE_TITLE: value })).toThrow(message);
  });
});
