import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildReport } from '../../src/cli/report.js';
import { classifyReconcilerRecoveries } from '../../src/db/callbacks.js';
import { MIGRATIONS } from '../../src/db/migrations/index.js';
import { ensureOwnSchema, OwnSchemaOutdatedError } from '../../src/db/own-schema.js';
import { createStatusService } from '../../src/status/service.js';
import { createTestDatabase, readModel, type TestDatabase } from '../support/database.js';
import { advance, seedProcessing } from '../support/events.js';
import { ownSchemaBeforeMigrations } from '../support/own-schema-before-migrations.js';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(() => db.drop());

/** A database set up by the release before migrations: its schema, an event, a delivery and a callback in it. */
async function setUpByPreviousRelease(pool: pg.Pool, schema: string): Promise<void> {
  for (const statement of ownSchemaBeforeMigrations(`"${schema}"`)) await pool.query(statement);
  await pool.query(
    `INSERT INTO "${schema}".events (event_id, model_id, user_id, from_status, to_status, source, payload, occurred_at)
     VALUES (gen_random_uuid(), 'old-model', 'old-user', 'TRAINING', 'READY', 'webhook', '{}', '2026-01-02T03:04:05Z')`,
  );
  await pool.query(`INSERT INTO "${schema}".deliveries (event_seq, transport) SELECT seq, 'http' FROM "${schema}".events`);
  await pool.query(`INSERT INTO "${schema}".callbacks (tune_id, received_at) VALUES ('123', '2026-01-02T03:04:00Z')`);
}

/** Tables, columns, defaults, indexes and constraints of `schema`, its name written `S` so two schemas compare. */
async function catalog(pool: pg.Pool, schema: string): Promise<string[]> {
  const { rows } = await pool.query<{ line: string }>(
    `SELECT format('column %s.%s %s %s default %s', c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
                   CASE WHEN a.attnotnull THEN 'not null' ELSE 'null' END, pg_get_expr(d.adbin, d.adrelid)) AS line
       FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       LEFT JOIN pg_attrdef d ON d.adrelid = c.oid AND d.adnum = a.attnum
      WHERE n.nspname = $1 AND c.relkind = 'r'
     UNION ALL
     SELECT format('index %s', indexdef) FROM pg_indexes WHERE schemaname = $1
     UNION ALL
     SELECT format('constraint %s %s %s', c.relname, k.conname, pg_get_constraintdef(k.oid))
       FROM pg_constraint k JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace
      WHERE n.nspname = $1
     UNION ALL
     SELECT format('sequence %s', sequencename) FROM pg_sequences WHERE schemaname = $1`,
    [schema],
  );
  return rows.map((row) => row.line.replaceAll(`"${schema}".`, 'S.').replaceAll(`${schema}.`, 'S.')).sort();
}

const migrationsOf = async (pool: pg.Pool, schema: string) =>
  (await pool.query<{ id: number; name: string }>(`SELECT id, name FROM "${schema}".migrations ORDER BY id`)).rows;
const allMigrations = MIGRATIONS.map(({ id, name }) => ({ id, name }));

/** `count` separate connections starting at once, as that many replicas would. */
async function startTogether(count: number, schema: string): Promise<void> {
  const pools = Array.from({ length: count }, () => new pg.Pool({ connectionString: db.url, max: 1 }));
  try {
    await Promise.all(pools.map((pool) => ensureOwnSchema(pool, schema)));
  } finally {
    await Promise.all(pools.map((pool) => pool.end()));
  }
}

describe('our schema, by numbered migrations', () => {
  it('migration 1 creates exactly the schema the release before migrations created', async () => {
    for (const statement of ownSchemaBeforeMigrations('"previous"')) await db.pool.query(statement);
    await db.pool.query('CREATE SCHEMA "first"');
    for (const statement of MIGRATIONS[0]!.statements('"first"')) await db.pool.query(statement);

    const previous = await catalog(db.pool, 'previous');
    expect(previous.length).toBeGreaterThan(20);
    expect(await catalog(db.pool, 'first')).toEqual(previous);
  });

  it('a database the previous release set up upgrades in place to what a fresh one gets, its rows kept', async () => {
    await setUpByPreviousRelease(db.pool, 'upgraded');
    await ensureOwnSchema(db.pool, 'upgraded');
    await ensureOwnSchema(db.pool, 'new');

    expect(await migrationsOf(db.pool, 'upgraded')).toEqual(allMigrations);
    expect(await catalog(db.pool, 'upgraded')).toEqual(await catalog(db.pool, 'new'));
    // The old event keeps its time as the database's stamp; its delivery and the callback stay.
    const event = await db.pool.query(`SELECT recorded_at = occurred_at AS same FROM upgraded.events`);
    expect(event.rows).toEqual([{ same: true }]);
    const kept = await db.pool.query(`SELECT (SELECT count(*)::int FROM upgraded.deliveries) AS deliveries, (SELECT count(*)::int FROM upgraded.callbacks) AS callbacks`);
    expect(kept.rows[0]).toEqual({ deliveries: 1, callbacks: 1 });
  });

  it('then works as a fresh one: a transition is written, logged and judged', async () => {
    const [[modelId, tuneId]] = (await seedProcessing(db.pool, 'upgrade', 1, 60_000)) as [[string, number]];
    const service = createStatusService({ pool: db.pool, schema: 'upgraded' });
    expect(await advance(db.pool, service, tuneId, 'started', { schema: 'upgraded' })).toHaveLength(1);
    expect(await advance(db.pool, service, tuneId, 'trained', { schema: 'upgraded' })).toHaveLength(1);
    expect((await readModel(db.pool, modelId)).status).toBe('READY');
    const logged = await db.pool.query(`SELECT to_status FROM upgraded.events WHERE model_id = $1 ORDER BY seq`, [modelId]);
    expect(logged.rows.map((row) => row.to_status)).toEqual(['TRAINING', 'READY']);
    // Within the grace, with no callback: pending, not judged yet.
    expect(await classifyReconcilerRecoveries(db.pool, 'upgraded', 600_000)).toEqual({ tune: { lost: 0, late: 0 }, prompt: { lost: 0, late: 0 } });
    expect((await buildReport(db.pool, 'upgraded', 3_600_000)).callbacks).toMatchObject({ pending: 1 });
  });

  it('applies each migration once when many replicas start together, on a fresh database and on an upgraded one', async () => {
    await startTogether(6, 'together');
    expect(await migrationsOf(db.pool, 'together')).toEqual(allMigrations);

    await setUpByPreviousRelease(db.pool, 'together upgraded');
    await startTogether(6, 'together upgraded');
    expect(await migrationsOf(db.pool, 'together upgraded')).toEqual(allMigrations);
    expect(await catalog(db.pool, 'together upgraded')).toEqual(await catalog(db.pool, 'together'));
  });

  it('leaves alone a schema a later release migrated further (a rollback)', async () => {
    await ensureOwnSchema(db.pool, 'later');
    await db.pool.query(`INSERT INTO later.migrations (id, name) VALUES ($1, 'from a later release')`, [MIGRATIONS.at(-1)!.id + 1]);
    await ensureOwnSchema(db.pool, 'later');
    expect(await migrationsOf(db.pool, 'later')).toHaveLength(MIGRATIONS.length + 1);
  });

  it('a schema at migration 2 upgrades with its history: an unjudged READY still judged, old arrivals and deliveries without the new facts', async () => {
    await db.pool.query('CREATE SCHEMA "at two"');
    await db.pool.query(`CREATE TABLE "at two".migrations (id int PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    for (const migration of MIGRATIONS.filter(({ id }) => id <= 2)) {
      for (const statement of migration.statements('"at two"')) await db.pool.query(statement);
      await db.pool.query(`INSERT INTO "at two".migrations (id, name) VALUES ($1, $2)`, [migration.id, migration.name]);
    }
    await db.pool.query(`UPDATE "at two".callback_recording SET started_at = now() - interval '1 day'`);
    // A reconciler READY 20 minutes ago, never judged (no leader since), its delivery tried once, and a callback for another tune.
    await db.pool.query(
      `INSERT INTO "at two".events (event_id, model_id, user_id, from_status, to_status, source, payload, occurred_at, recorded_at)
       VALUES (gen_random_uuid(), 'm-two', 'u', 'TRAINING', 'READY', 'reconciler', '{"data":{"modelUrl":"4242"}}', now() - interval '20 minutes', now() - interval '20 minutes')`,
    );
    await db.pool.query(`INSERT INTO "at two".deliveries (event_seq, transport, attempts) SELECT seq, 'http', 1 FROM "at two".events`);
    await db.pool.query(`INSERT INTO "at two".callbacks (tune_id) VALUES ('999')`);

    await ensureOwnSchema(db.pool, 'at two');
    expect(await migrationsOf(db.pool, 'at two')).toEqual(allMigrations);
    expect(await catalog(db.pool, 'at two')).toEqual(await catalog(db.pool, 'new'));
    expect(await classifyReconcilerRecoveries(db.pool, 'at two', 600_000)).toEqual({ tune: { lost: 1, late: 0 }, prompt: { lost: 0, late: 0 } });
    const old = await db.pool.query(
      `SELECT (SELECT row(receiver, applied, refused)::text FROM "at two".callbacks) AS arrival,
              (SELECT row(first_attempt_at, last_attempt_at)::text FROM "at two".deliveries) AS delivery`,
    );
    expect(old.rows[0]).toEqual({ arrival: '(,,)', delivery: '(,)' });
  });

  it('report refuses a schema the previous release made, and names the way out; it upgrades nothing itself', async () => {
    await setUpByPreviousRelease(db.pool, 'not upgraded');
    const report = buildReport(db.pool, 'not upgraded', 3_600_000);
    await expect(report).rejects.toThrow(OwnSchemaOutdatedError);
    await expect(report).rejects.toThrow(/older release.*start this release once/);
    const table = await db.pool.query(`SELECT to_regclass('"not upgraded".migrations') IS NULL AS absent`);
    expect(table.rows[0]).toEqual({ absent: true });
  });
});
