import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { HOST_SCHEMA_SQL, seedModels } from '../../dev/host-schema.js';
import { DEFAULT_HOST_SCHEMA } from '../../src/db/host-names.js';
import { operatorFilter, selectInFlightRefs } from '../../src/db/inflight.js';
import { ensureOwnSchema } from '../../src/db/own-schema.js';
import { createPool } from '../../src/db/pool.js';
import { createStatusService } from '../../src/status/service.js';
import { applyObservedTune } from '../../src/status/apply-tune.js';
import { tuneSchema } from '../../src/astria/tune.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';

const log = pino({ level: 'silent' });
let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());

function withUser(url: string, user: string, password: string, query = ''): string {
  const parsed = new URL(url);
  parsed.username = user;
  parsed.password = password;
  parsed.search = query;
  return parsed.toString();
}

describe('database access as deployed', () => {
  it('starts with a role that may only use our schema once an administrator created it (no DDL re-run)', async () => {
    await ensureOwnSchema(db.pool, 'astria_reconciler');
    const role = `app_${Date.now()}`;
    await db.pool.query(`CREATE ROLE ${role} LOGIN PASSWORD 'pw'`);
    await db.pool.query(`GRANT USAGE ON SCHEMA astria_reconciler TO ${role}`);
    await db.pool.query(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA astria_reconciler TO ${role}`);
    await db.pool.query(`GRANT USAGE ON ALL SEQUENCES IN SCHEMA astria_reconciler TO ${role}`);
    await db.pool.query(`GRANT SELECT, UPDATE ON ai_models TO ${role}`);
    await db.pool.query(`REVOKE CREATE ON DATABASE ${new URL(db.url).pathname.slice(1)} FROM PUBLIC`);
    await seedModels(db.pool, [{ id: 'restricted-1', status: 'TRAINING', trainingJobId: '77' }]);
    const pool = createPool(withUser(db.url, role, 'pw'), log);
    try {
      await ensureOwnSchema(pool, 'astria_reconciler');
      const tune = tuneSchema.parse({ id: 77, trained_at: new Date().toISOString() });
      const result = await applyObservedTune({
        pool,
        service: createStatusService({ pool }),
        tune,
        source: 'webhook',
        now: new Date(),
        trainingTimeoutMs: 86_400_000,
      });
      expect(result.applied).toHaveLength(1);
    } finally {
      await pool.end();
      // Roles outlive the test database: leave none behind on a shared server.
      await db.pool.query(`DROP OWNED BY ${role}`);
      await db.pool.query(`DROP ROLE ${role}`);
    }
  });

  it("finds ai_models in the schema named by a Prisma-style ?schema= in DATABASE_URL", async () => {
    const client = await db.pool.connect();
    try {
      await client.query('CREATE SCHEMA tenant');
      await client.query('SET search_path = tenant');
      await client.query(HOST_SCHEMA_SQL);
      await seedModels(client, [{ id: 'tenant-1', status: 'TRAINING', trainingJobId: '88' }]);
    } finally {
      await client.query('RESET search_path');
      client.release();
    }
    const pool = createPool(`${db.url}?schema=tenant`, log);
    try {
      const inFlight = await selectInFlightRefs(pool, DEFAULT_HOST_SCHEMA, operatorFilter(Date.now(), 0, []));
      expect(inFlight).toMatchObject([{ id: 'tenant-1', remoteId: '88' }]);
    } finally {
      await pool.end();
    }
  });

  it('keeps its lock and statement timeouts and search path when DATABASE_URL carries its own ?options= (as Neon URLs do)', async () => {
    const pool = createPool(`${db.url}?options=${encodeURIComponent('-c work_mem=8MB')}&schema=tenant`, log);
    try {
      const show = async (name: string) => ((await pool.query<Record<string, string>>(`SHOW ${name}`)).rows[0]![name]);
      expect(await show('lock_timeout')).toBe('5s');
      expect(await show('statement_timeout')).toBe('30s');
      expect(await show('search_path')).toBe('"tenant"');
      // The URL's own option still applies.
      expect(await show('work_mem')).toBe('8MB');
    } finally {
      await pool.end();
    }
  });

  it('finds ai_models in a mixed-case Prisma ?schema=MyApp (quoted, not lower-cased)', async () => {
    const client = await db.pool.connect();
    try {
      await client.query('CREATE SCHEMA "MyApp"');
      await client.query('SET search_path = "MyApp"');
      await client.query(HOST_SCHEMA_SQL);
      await seedModels(client, [{ id: 'myapp-1', status: 'TRAINING', trainingJobId: '99' }]);
    } finally {
      await client.query('RESET search_path');
      client.release();
    }
    const pool = createPool(`${db.url}?schema=MyApp&options=${encodeURIComponent('-c work_mem=8MB')}`, log);
    try {
      expect((await pool.query<{ search_path: string }>('SHOW search_path')).rows[0]!.search_path).toBe('"MyApp"');
      expect((await pool.query<{ lock_timeout: string }>('SHOW lock_timeout')).rows[0]!.lock_timeout).toBe('5s');
      const inFlight = await selectInFlightRefs(pool, DEFAULT_HOST_SCHEMA, operatorFilter(Date.now(), 0, []));
      expect(inFlight).toMatchObject([{ id: 'myapp-1', remoteId: '99' }]);
    } finally {
      await pool.end();
    }
  });
});
