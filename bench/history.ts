/**
 * History (the cost of what is already done): with nothing in flight and 30 days of history — 216,000
 * models (300 an hour), their TRAINING and READY events, a third of the READYs the reconciler's (half
 * of those with a late callback), every other READY with its callback — what does an idle leader's
 * database pay for judging lost callbacks, and what does a callback without `&model=` pay to find its
 * model? The same measured on an empty history beside it.
 *
 * The first judgements give the whole history its verdicts, a day each (a leader's first run, or its
 * catch-up after a stop); from then on the history is as a leader running all along leaves it. An idle minute is two judgements (`RECONCILER_INTERVAL` 30 s at its
 * default); their time is the database's (one statement each, on loopback). A callback's lookup is
 * timed for a tune the daemon's discovery noted, and for one it did not (the app table searched).
 */
import { performance } from 'node:perf_hooks';
import type pg from 'pg';
import { classifyReconcilerRecoveries, DEFAULT_CALLBACK_GRACE_MS } from '../src/db/callbacks.js';
import { pgExecutor } from '../src/db/pg-driver.js';
import { DEFAULT_HOST_SCHEMA } from '../src/db/host-names.js';
import { selectModelsOfTune } from '../src/db/models.js';
import { noteTuneModels } from '../src/db/tune-models.js';
import { scratchDatabase } from './scenario.js';
import { fixedOrDash, formatGrid, percentile, target, type SectionResult } from './stats.js';

const SCHEMA = 'astria_reconciler';
const DAYS = 30;
const MODELS_PER_HOUR = 300;
/** Judgements in one idle minute at the default `RECONCILER_INTERVAL` (30 s). */
const JUDGEMENTS_PER_MINUTE = 2;
const MEASURED_MINUTES = 5;
const LOOKUPS = 200;
const TARGET_MS_PER_MINUTE = 50;

interface HistoryFigures {
  models: number;
  events: number;
  callbacks: number;
  /** The judgements that gave the whole history its verdicts (a leader's first run, or its catch-up after a stop), and their time. */
  catchUpJudgements: number;
  catchUpMs: number;
  judgingMsPerMinute: number;
  judgingMaxMs: number;
  notedLookupP50Ms: number | null;
  unnotedLookupP50Ms: number | null;
}

/** 30 days of finished models, their events and callbacks, as a leader running all along leaves them. */
async function writeHistory(pool: pg.Pool, models: number): Promise<void> {
  if (models === 0) return;
  await pool.query(`INSERT INTO users (id, email, "updatedAt") SELECT 'user-' || u, 'u' || u || '@example.com', now() FROM generate_series(0, 999) u`);
  // Model i finished at now() - 30 days + i hours / 300; tune ids 100000 + i.
  await pool.query(
    `INSERT INTO ai_models (id, "userId", name, class, "classWord", status, progress, "aiProvider", "trainingJobId", "trainedAt", "createdAt", "updatedAt")
     SELECT 'hist-' || i, 'user-' || (i % 1000), 'model ' || i, 'person', 'person', 'READY', 100, 'astria', (100000 + i)::text,
            (now() - interval '${DAYS} days' + i * interval '1 hour' / $2) AT TIME ZONE 'UTC',
            (now() - interval '${DAYS} days' + i * interval '1 hour' / $2 - interval '30 minutes') AT TIME ZONE 'UTC',
            (now() - interval '${DAYS} days' + i * interval '1 hour' / $2) AT TIME ZONE 'UTC'
       FROM generate_series(0, $1 - 1) i`,
    [models, MODELS_PER_HOUR],
  );
  const finished = `now() - interval '${DAYS} days' + i * interval '1 hour' / $2`;
  await pool.query(
    `INSERT INTO ${SCHEMA}.events (event_id, model_id, user_id, from_status, to_status, source, payload, occurred_at, recorded_at)
     SELECT gen_random_uuid(), 'hist-' || i, 'user-' || (i % 1000), 'PROCESSING', 'TRAINING', 'webhook',
            jsonb_build_object('data', jsonb_build_object('modelUrl', (100000 + i)::text)), ${finished} - interval '25 minutes', ${finished} - interval '25 minutes'
       FROM generate_series(0, $1 - 1) i
     UNION ALL
     SELECT gen_random_uuid(), 'hist-' || i, 'user-' || (i % 1000), 'TRAINING', 'READY', CASE WHEN i % 3 = 0 THEN 'reconciler' ELSE 'webhook' END,
            jsonb_build_object('data', jsonb_build_object('modelUrl', (100000 + i)::text)), ${finished} + interval '2 seconds', ${finished} + interval '2 seconds'
       FROM generate_series(0, $1 - 1) i`,
    [models, MODELS_PER_HOUR],
  );
  // Webhook READYs came with their callback; half the reconciler's came late (a minute after), half never.
  await pool.query(
    `INSERT INTO ${SCHEMA}.callbacks (tune_id, received_at)
     SELECT (100000 + i)::text, ${finished} + CASE WHEN i % 3 = 0 THEN interval '1 minute' ELSE interval '1 second' END
       FROM generate_series(0, $1 - 1) i WHERE i % 3 <> 0 OR i % 2 = 0`,
    [models, MODELS_PER_HOUR],
  );
  // Recorded for longer than the history, none of it judged yet: the first judgement catches up.
  await pool.query(`UPDATE ${SCHEMA}.callback_recording SET started_at = now() - interval '${DAYS + 1} days', judged_from = now() - interval '${DAYS + 1} days'`);
  await pool.query('VACUUM ANALYZE');
}

/** Whether the judging watermark has reached the present (the grace and the commit slack before now). */
async function caughtUp(pool: pg.Pool): Promise<boolean> {
  const { rows } = await pool.query<{ done: boolean }>(`SELECT judged_from >= now() - interval '21 minutes' AS done FROM ${SCHEMA}.callback_recording`);
  return rows[0]!.done;
}

async function measureHistory(adminUrl: string, models: number): Promise<HistoryFigures> {
  const database = await scratchDatabase(adminUrl);
  try {
    const { pool } = database;
    await writeHistory(pool, models);
    // The catch-up (a day a judgement) gives every READY of the history its verdict, as a leader running all along would have.
    let started = performance.now();
    let catchUpJudgements = 0;
    do {
      await classifyReconcilerRecoveries(pool, SCHEMA, DEFAULT_CALLBACK_GRACE_MS);
      catchUpJudgements++;
    } while (!(await caughtUp(pool)));
    const catchUpMs = performance.now() - started;

    const judgements: number[] = [];
    for (let i = 0; i < MEASURED_MINUTES * JUDGEMENTS_PER_MINUTE; i++) {
      started = performance.now();
      await classifyReconcilerRecoveries(pool, SCHEMA, DEFAULT_CALLBACK_GRACE_MS);
      judgements.push(performance.now() - started);
    }

    const lookups = async (tuneIds: number[]) => {
      const times: number[] = [];
      for (const tuneId of tuneIds) {
        started = performance.now();
        const rows = await selectModelsOfTune(pgExecutor(pool), DEFAULT_HOST_SCHEMA, SCHEMA, String(tuneId), null);
        times.push(performance.now() - started);
        if (models > 0 && rows.length !== 1) throw new Error(`tune ${tuneId}: ${rows.length} models found, 1 expected`);
      }
      return percentile(times, 0.5);
    };
    const sample = Array.from({ length: models === 0 ? 0 : LOOKUPS }, (_, k) => 100000 + Math.floor((k * models) / LOOKUPS));
    const noted = sample.filter((_, k) => k % 2 === 0);
    await noteTuneModels(pool, SCHEMA, noted.map((tuneId) => ({ id: `hist-${tuneId - 100000}`, remoteId: tuneId })));
    const notedLookupP50Ms = await lookups(noted);
    // Searched once in the app table (then noted): the first call is the cost of a tune discovery never saw.
    const unnotedLookupP50Ms = await lookups(sample.filter((_, k) => k % 2 === 1));

    const counts = await pool.query<{ events: number; callbacks: number }>(
      `SELECT (SELECT count(*)::int FROM ${SCHEMA}.events) AS events, (SELECT count(*)::int FROM ${SCHEMA}.callbacks) AS callbacks`,
    );
    return {
      models,
      ...counts.rows[0]!,
      catchUpJudgements,
      catchUpMs,
      judgingMsPerMinute: judgements.reduce((sum, ms) => sum + ms, 0) / MEASURED_MINUTES,
      judgingMaxMs: Math.max(...judgements),
      notedLookupP50Ms,
      unnotedLookupP50Ms,
    };
  } finally {
    await database.drop();
  }
}

export async function runHistory(adminUrl: string): Promise<SectionResult> {
  const empty = await measureHistory(adminUrl, 0);
  const full = await measureHistory(adminUrl, DAYS * 24 * MODELS_PER_HOUR);
  const row = (label: string, f: HistoryFigures) => [
    label,
    String(f.models),
    String(f.events),
    String(f.callbacks),
    `${f.catchUpJudgements} in ${fixedOrDash(f.catchUpMs, 0)}`,
    fixedOrDash(f.judgingMsPerMinute, 1),
    fixedOrDash(f.judgingMaxMs, 1),
    fixedOrDash(f.notedLookupP50Ms, 2),
    fixedOrDash(f.unnotedLookupP50Ms, 2),
  ];
  const text = [
    `Idle leader, nothing in flight: ${JUDGEMENTS_PER_MINUTE} lost-callback judgements a minute over ${MEASURED_MINUTES} minutes; a callback without &model= finding its model (p50 of ${LOOKUPS / 2} each).`,
    formatGrid([
      ['history', 'models', 'events', 'callbacks', 'catch-up judgements in ms', 'judging ms/min', 'max judgement ms', 'lookup noted ms', 'lookup app table ms'],
      row('none', empty),
      row(`${DAYS} days`, full),
    ]),
  ].join('\n');
  return {
    text,
    targets: [
      target(
        `idle with ${DAYS} days of history: judging ≤ ${TARGET_MS_PER_MINUTE} ms of database time a minute`,
        full.judgingMsPerMinute <= TARGET_MS_PER_MINUTE,
        `${full.judgingMsPerMinute.toFixed(1)} ms/min (empty history: ${empty.judgingMsPerMinute.toFixed(1)})`,
      ),
    ],
  };
}
