import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/config.js';
import { DEFAULT_HOST_SCHEMA } from '../../src/db/host-names.js';

const BASE = { DATABASE_URL: 'postgres://app:pw@db.internal:5432/app', ASTRIA_API_KEY: 'sd_mapping_key' };
const dir = mkdtempSync(join(tmpdir(), 'host-mapping-config-'));

/** `loadConfig` with `RECONCILER_HOST_MAPPING` naming a file holding `text`. */
function withMapping(text: string) {
  const file = join(dir, `${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, text);
  return loadConfig({ ...BASE, RECONCILER_HOST_MAPPING: file });
}

/** The message of the ConfigError the mapping is refused with. */
function refusal(mapping: unknown): string {
  try {
    withMapping(typeof mapping === 'string' ? mapping : JSON.stringify(mapping));
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as Error).message;
  }
  throw new Error(`accepted ${JSON.stringify(mapping)}`);
}

describe('RECONCILER_HOST_MAPPING', () => {
  it("unset: vibephoto's tables, as SPEC.md names them", () => {
    const { host } = loadConfig(BASE);
    expect(host).toBe(DEFAULT_HOST_SCHEMA);
    expect(host.models.sql).toBe('"ai_models"');
    expect(host.generations.sql).toBe('"generations"');
    expect(host.models.statusIn(['PROCESSING', 'TRAINING'])).toBe(`"status" IN ('PROCESSING', 'TRAINING')`);
  });

  it('renames the table (schema-qualified), the columns and the status values, each absent key keeping its default', () => {
    const { host } = withMapping(
      JSON.stringify({
        models: { schema: 'app', table: 'models', columns: { trainingJobId: 'modelId', progress: null }, statuses: { PROCESSING: 'processing', TRAINING: 'processing', READY: 'finished' } },
      }),
    );
    expect(host.models.sql).toBe('"app"."models"');
    expect(host.models.col('trainingJobId')).toBe('"modelId"');
    expect(host.models.col('userId')).toBe('"userId"');
    expect(host.models.has('progress')).toBe(false);
    // Both in-flight statuses share one value: it reads back as the later one.
    expect(host.models.status()).toBe(`CASE "status"::text WHEN 'processing' THEN 'TRAINING' WHEN 'finished' THEN 'READY' ELSE "status"::text END`);
    expect(host.models.statusIn(['PROCESSING', 'TRAINING', 'ERROR'])).toBe(`"status" IN ('processing', 'ERROR')`);
    expect(host.generations.sql).toBe('"generations"');
  });

  it.each([
    [{ models: { columns: { tuneId: 'modelId' } } }, 'models.columns.tuneId is not a known key'],
    [{ model: {} }, 'model is not a known key'],
    [{ generations: { statuses: { DONE: 'done' } } }, 'generations.statuses.DONE is not a known key'],
    [{ models: { table: 5 } }, 'models.table must be a string (a name)'],
    [{ models: { columns: { trainingJobId: null } } }, 'models.columns.trainingJobId must be a string (a name)'],
    [{ models: { columns: { id: '' } } }, 'models.columns.id must not be empty'],
    [{ models: { table: 'x'.repeat(64) } }, 'models.table must be at most 63 bytes'],
    [{ models: { statuses: { READY: null } } }, 'models.statuses.READY must be a string (a status value)'],
    [{ models: { statuses: { READY: 'done', ERROR: 'done' } } }, 'models.statuses.READY and ERROR share the value "done"'],
    [{ generations: { statuses: { PROCESSING: 'busy', COMPLETED: 'busy' } } }, 'generations.statuses.PROCESSING and COMPLETED share the value "busy"'],
    [{ generations: { statuses: { PENDING: null, PROCESSING: null } } }, 'generations.statuses.PROCESSING must be a string (a status value)'],
    [{ models: { statuses: { TRAINING: null } } }, 'models.statuses.TRAINING must be a string (a status value)'],
    [[], '(top level)'],
  ])('%j is refused naming the key', (mapping, named) => {
    const message = refusal(mapping);
    expect(message).toContain('RECONCILER_HOST_MAPPING');
    expect(message).toContain(named);
  });

  it('a file that is not JSON, or cannot be read, is refused naming the variable', () => {
    expect(refusal('{ models: ')).toMatch(/RECONCILER_HOST_MAPPING is not JSON/);
    expect(() => loadConfig({ ...BASE, RECONCILER_HOST_MAPPING: join(dir, 'missing.json') })).toThrow(/RECONCILER_HOST_MAPPING cannot be read \(ENOENT\)/);
  });
});
