/**
 * The built CLI on the app's tables as `RECONCILER_HOST_MAPPING` names them (and on vibephoto's, with
 * no mapping): lost callbacks of models and generations detected by the daemon within seconds, and
 * webhooks racing the daemon and `--once` applying each transition once. A mapping that names a
 * missing column, or a key that does not exist, stops the start with one line naming it.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeEach, describe, expect, it } from 'vitest';
import { startSimulatedAstria, type SimulatedAstria } from '../../dev/simulated-astria.js';
import { runCli } from '../support/cli.js';
import { createTestDatabase, type TestDatabase } from '../support/database.js';
import { startDaemon, waitUntil, type RunningDaemon } from '../support/daemon.js';
import { HOST_FIXTURES, RENAMED_MAPPING, renamed } from '../support/renamed-host-schema.js';

const API_KEY = 'sd_host_mapping_e2e_key';
const SECRET = 'host-mapping-e2e-secret';
const HOUR = 3_600_000;
const ago = (ms: number) => new Date(Date.now() - ms);

describe.each(HOST_FIXTURES)('the built daemon on $name', (fixture) => {
  let db: TestDatabase;
  let astria: SimulatedAstria;
  let running: RunningDaemon | undefined;
  const mapping = (): Record<string, string> => {
    const file = fixture.mappingFile();
    return file === null ? {} : { RECONCILER_HOST_MAPPING: file };
  };

  beforeEach(async () => {
    db = await createTestDatabase();
    await fixture.install(db.pool);
    astria = await startSimulatedAstria({ apiKey: API_KEY, latencyMs: 5 });
  });
  afterEach(async () => {
    if (running && !running.exited()) running.kill('SIGKILL');
    await astria.close();
    await db.drop();
  });

  it('lost callbacks of models and generations are applied within seconds; webhooks racing the daemon and --once apply each change once', async () => {
    const tunes = astria.addTunes(6, () => ({ startedTrainingAt: ago(HOUR), eta: new Date(Date.now() + HOUR) }));
    await fixture.seedModels(db.pool, tunes.map((tune) => ({ id: `m-${tune.id}`, status: 'TRAINING', trainingJobId: String(tune.id), updatedAt: ago(HOUR) })));
    const pack = astria.addPack(tunes[0]!.id, 12);
    for (const prompt of pack) astria.startPrompt(prompt.id);
    await fixture.seedGenerations(db.pool, pack.map((prompt) => ({ id: `g-${prompt.id}`, modelId: `m-${tunes[0]!.id}`, status: 'PROCESSING', jobId: String(prompt.id), createdAt: ago(HOUR) })));
    running = await startDaemon({
      DATABASE_URL: db.url,
      ASTRIA_API_KEY: API_KEY,
      ASTRIA_API_URL: astria.url,
      WEBHOOK_SECRET: SECRET,
      RECONCILER_STUCK_AFTER: '0s',
      ...mapping(),
    });
    const done = async () => {
      const models = await Promise.all(tunes.map((tune) => fixture.readModel(db.pool, `m-${tune.id}`)));
      const generations = await Promise.all(pack.map((prompt) => fixture.readGeneration(db.pool, `g-${prompt.id}`)));
      return models.every((model) => model.status === 'READY') && generations.every((generation) => generation.status === 'COMPLETED');
    };

    // Half of each kind posted by Astria while a --once over the tunes runs too; the other half lost:
    // the daemon finds the lost generations, and races the --once for the lost models.
    for (const tune of tunes) astria.train(tune.id, new Date());
    for (const prompt of pack) astria.finishPrompt(prompt.id, { at: new Date() });
    const webhookUrl = `${running.url}/webhooks/astria?secret=${SECRET}`;
    const [tuneHooks, promptHooks, once] = await Promise.all([
      Promise.all(tunes.slice(0, 3).map((tune) => astria.fireCallback(tune.id, webhookUrl))),
      Promise.all(pack.slice(0, 6).map((prompt) => astria.firePromptCallback(prompt.id, webhookUrl))),
      runCli(['--once', '--kind', 'tunes', '--json'], { DATABASE_URL: db.url, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: astria.url, RECONCILER_STUCK_AFTER: '0s', ...mapping() }),
    ]);
    expect([...tuneHooks, ...promptHooks].every((status) => status === 200 || status === 202)).toBe(true);
    expect(once.code).toBe(0);
    // Within seconds (the strict figures are the bench's; a shared machine gets room here).
    await waitUntil(done, 30_000, 'every model READY and every generation COMPLETED');

    const { rows } = await db.pool.query<{ kind: string; id: string; n: number }>(
      `SELECT kind, coalesce(generation_id, model_id) AS id, count(*)::int AS n FROM astria_reconciler.events GROUP BY 1, 2`,
    );
    expect(rows.filter((row) => row.kind === 'tune')).toHaveLength(tunes.length);
    expect(rows.filter((row) => row.kind === 'prompt')).toHaveLength(pack.length);
    expect(rows.every((row) => row.n === 1)).toBe(true);
    const completed = await fixture.readGeneration(db.pool, `g-${pack[0]!.id}`);
    expect(completed.imageUrls).toEqual(astria.getPrompt(pack[0]!.id)!.images);
    expect(running.exited()).toBe(false);

    // diagnose reads the same tables through the same names: a recovered generation and a model.
    const diagnoseEnv = { DATABASE_URL: db.url, ...mapping() };
    const lostGeneration = await runCli(['diagnose', `g-${pack.at(-1)!.id}`, '--json', '--no-astria'], diagnoseEnv);
    expect(lostGeneration.stderr).toBe('');
    expect(JSON.parse(lostGeneration.stdout)).toMatchObject({ kind: 'generation', row: { id: `g-${pack.at(-1)!.id}`, status: 'COMPLETED', jobId: String(pack.at(-1)!.id) } });
    const model = await runCli(['diagnose', `m-${tunes[0]!.id}`, '--json', '--no-astria'], diagnoseEnv);
    expect(model.stderr).toBe('');
    expect(JSON.parse(model.stdout)).toMatchObject({ row: { id: `m-${tunes[0]!.id}`, status: 'READY', trainingJobId: String(tunes[0]!.id) } });
    // --stuck reads both kinds through the names too: a generation whose prompt id Astria cannot have.
    await fixture.seedGenerations(db.pool, [{ id: 'g-bad-id', modelId: `m-${tunes[0]!.id}`, status: 'PROCESSING', jobId: 'job_abc', createdAt: ago(HOUR), updatedAt: ago(HOUR) }]);
    const stuck = await runCli(['diagnose', '--stuck', '--json'], diagnoseEnv);
    expect(stuck.stderr).toBe('');
    expect(stuck.code).toBe(3);
    expect((JSON.parse(stuck.stdout) as { items: { kind: string; id: string; code: string }[] }).items).toContainEqual(
      expect.objectContaining({ kind: 'generation', id: 'g-bad-id', code: 'invalid_prompt_id' }),
    );
  }, 60_000);
});

describe('a mapping the tables do not match, or that is malformed', () => {
  let db: TestDatabase;
  const dir = mkdtempSync(join(tmpdir(), 'host-mapping-e2e-'));
  const file = (name: string, mapping: unknown) => {
    const path = join(dir, name);
    writeFileSync(path, JSON.stringify(mapping));
    return path;
  };
  afterAll(() => db?.drop());

  it('a missing column: --once exits 1 with one line naming table.column; a bad key: one line naming the key and the variable', async () => {
    db = await createTestDatabase();
    await renamed.install(db.pool);
    const env = { DATABASE_URL: db.url, ASTRIA_API_KEY: API_KEY, ASTRIA_API_URL: 'http://127.0.0.1:9' };
    const typo = file('typo.json', { ...RENAMED_MAPPING, models: { ...RENAMED_MAPPING.models, columns: { ...RENAMED_MAPPING.models.columns, trainingJobId: 'astria_tun' } } });
    const badKey = file('bad-key.json', { models: { columns: { tuneId: 'astria_tune' } } });

    for (const [path, named] of [
      [typo, /column studio\.Trained Models\.astria_tun not found/],
      [badKey, /RECONCILER_HOST_MAPPING.*models\.columns\.tuneId is not a known key/],
    ] as const) {
      const once = await runCli(['--once'], { ...env, RECONCILER_HOST_MAPPING: path });
      expect(once.code).toBe(1);
      const plain = once.stderr.split('\n').filter((line) => line !== '' && !line.startsWith('{'));
      expect(plain).toHaveLength(1);
      expect(plain[0]).toMatch(named);
      expect(once.stderr).not.toMatch(/\n\s+at /);
    }
    // Nothing of ours was created beside tables that do not match.
    const { rows } = await db.pool.query(`SELECT count(*)::int AS n FROM pg_namespace WHERE nspname = 'astria_reconciler'`);
    expect(rows[0].n).toBe(0);
  }, 30_000);
});
