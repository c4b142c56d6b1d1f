import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';

const BASE = { DATABASE_URL: 'postgres://app:pw@db.internal:5432/app', ASTRIA_API_KEY: 'sd_workspace_test_key' };

describe('ASTRIA_WORKSPACE_ID', () => {
  it('is optional: unset (or empty) sends no workspace', () => {
    expect(loadConfig(BASE).astria.workspaceId).toBeUndefined();
    expect(loadConfig({ ...BASE, ASTRIA_WORKSPACE_ID: '' }).astria.workspaceId).toBeUndefined();
  });

  it.each(['1', '4242', '00017', 'all'])('accepts %s as written', (value) => {
    expect(loadConfig({ ...BASE, ASTRIA_WORKSPACE_ID: value }).astria.workspaceId).toBe(value);
  });

  it.each(['ALL', 'my-team', '12 ', '-3', '1.5', 'all,12', '4242\n', '1'.repeat(21)])('fails at start naming the variable for %j', (value) => {
    expect(() => loadConfig({ ...BASE, ASTRIA_WORKSPACE_ID: value })).toThrow(ConfigError);
    expect(() => loadConfig({ ...BASE, ASTRIA_WORKSPACE_ID: value })).toThrow(/ASTRIA_WORKSPACE_ID must be a workspace id \(digits\) or all/);
  });
});
