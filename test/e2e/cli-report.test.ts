import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { ownSchemaBeforeMigrations } from '../support/own-schema-before-migrations.js';
import { createStatusService } from '../../src/status/service.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { advance, seedProcessing } from '../support/events.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
  await ensureOwnSchema(db.pool, 'astria_reconciler');
  const service = createStatusService({ pool: db.pool });
  const models = await seedProcessing(db.pool, 'cli-report', 3, 90_000);
  const now = new Date();
  await advance(db.pool, service, models[0]![1], 'trained', { trainedAt: new Date(now.getTime() - 90_000) });
  await advance(db.pool, service, models[1]![1], 'trained', { trainedAt: new Date(now.getTime() - 30_000), source: 'webhook' });
  await advance(db.pool, service, models[2]![1], 'failed');
});
afterAll(() => db.drop());

describe('astria-reconciler report (built CLI, real database)', () => {
  it('--json prints the SPEC.md report from the event log, without needing Astria', async () => {
    const result = await runCli(['report', '--json'], { DATABASE_URL: db.url });

    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(Date.now() - Date.parse(report.since)).toBeGreaterThanOrEqual(7 * 86_400_000);
    expect(report.transitions).toMatchObject({ READY: { webhook: 1, reconciler: 1 }, ERROR: { webhook: 0, reconciler: 1 } });
    expect(report.lagSeconds.max).toBeGreaterThanOrEqual(90);
    expect(report.lagSeconds.p50).toBe(report.lagSeconds.max);
    expect(report.slowest).toEqual([expect.objectContaining({ modelId: 'cli-report-0', tuneId: '90000' })]);
  });

  it('prints tables without --json, honouring --since', async () => {
    const result = await runCli(['report', '--since', '1d'], { DATABASE_URL: db.url });

    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/READY\s+1\s+1\s+2/);
    expect(result.stdout).toContain('cli-report-0');
  });

  it('stops with one line naming the way out on a schema an older release made, upgrading nothing', async () => {
    for (const statement of ownSchemaBeforeMigrations('previous_release')) await db.pool.query(statement);
    const result = await runCli(['report'], { DATABASE_URL: db.url, RECONCILER_SCHEMA: 'previous_release' });

    expect(result.code).toBe(1);
    expect(result.stderr).toContain('was made by an older release of astria-reconciler: start this release once');
    expect(result.stderr).not.toContain('unexpected error');
  });
});
