import type pg from 'pg';
import { PROMPT_ID_PATTERN } from '../astria/prompt.js';
import { TUNE_ID_PATTERN } from '../astria/tune.js';
import { GENERATION_IN_FLIGHT_STATUSES, IN_FLIGHT_STATUSES, type GenerationRow } from '../model.js';
import { RECOVERY, type CallbackKind } from './callbacks.js';
import { generationColumns, generationsTablePresent } from './generations.js';
import type { HostSchema, ModelColumn } from './host-names.js';
import { quoteIdentifier } from './identifier.js';
import { clientExecutor } from './pg-driver.js';

/**
 * The reads of `diagnose`, all in one read-only transaction, every timestamp read as UTC ISO text so
 * neither the process TZ nor the session time zone can shift one. `ai_models`' timestamp(3) columns
 * hold UTC wall-clock time; our own tables are timestamptz.
 */

/** A timestamptz as ISO text in UTC. */
const instant = (expression: string) => `to_char(${expression} AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`;

/** One `ai_models` row as the app sees it. */
export interface DiagnosedModel {
  id: string;
  userId: string;
  status: string;
  progress: number;
  aiProvider: string | null;
  trainingJobId: string | null;
  modelUrl: string | null;
  errorMessage: string | null;
  estimatedTime: number | null;
  trainedAt: string | null;
  createdAt: string | null;
  updatedAt: string | null;
}

/** The models table's row as `DiagnosedModel`: ids as text, the canonical status, a column the app lacks as null. */
function modelSelect({ models }: HostSchema): string {
  const optional = (column: ModelColumn, type: string) => `${models.or(column, `NULL::${type}`)} AS "${column}"`;
  const time = (column: ModelColumn) => `${models.has(column) ? instant(models.instant(column)) : 'NULL::text'} AS "${column}"`;
  return `SELECT ${models.text('id')} AS id, ${models.text('userId')} AS "userId", ${models.status()} AS status, ${optional('progress', 'int')},
       ${optional('aiProvider', 'text')}, ${models.text('trainingJobId')} AS "trainingJobId", ${optional('modelUrl', 'text')},
       ${optional('errorMessage', 'text')}, ${optional('estimatedTime', 'int')}, ${time('trainedAt')}, ${time('createdAt')}, ${time('updatedAt')}
  FROM ${models.sql}`;
}

/**
 * One `generations` row as the app sees it: its image URLs counted, not printed (they may be signed,
 * and are the user's). Read with the reconciler's own column list, timestamps as UTC ISO text.
 */
export interface DiagnosedGeneration {
  id: string;
  userId: string;
  modelId: string | null;
  status: string;
  aiProvider: string | null;
  jobId: string | null;
  imageCount: number;
  errorMessage: string | null;
  completedAt: string | null;
  createdAt: string | null;
  updatedAt: string | null;
}

/** A row of `generations` as `GENERATION_COLUMNS` reads it, with its provider. */
type GenerationColumns = GenerationRow & { aiProvider: string | null };

/** The object whose records are read: a model (its tune's callbacks) or a generation (its prompt's). */
export interface RecordedObject {
  kind: CallbackKind;
  /** The row's id (`ai_models.id`, `generations.id`). */
  id: string;
  /** The Astria id its callbacks are recorded under; null: none saved. */
  remoteId: string | null;
}

/** Which column of our event log names the row an event of each kind changed. */
const EVENT_OWNER: Record<CallbackKind, string> = { tune: 'model_id', prompt: 'generation_id' };

export interface TransitionRecord {
  seq: string;
  eventId: string;
  from: string;
  to: string;
  source: string;
  occurredAt: string;
  trainedAt: string | null;
  /** Seconds from Astria's `trained_at` to this write (a model's READY, a generation's COMPLETED). */
  lagSeconds: number | null;
  /** The leader's verdict on a reconciler READY or COMPLETED ('lost' or 'late'), when it gave one. */
  callbackOutcome: string | null;
}

export interface CallbackArrival {
  receivedAt: string;
  /** The process that received it (`host/pid`); null when recorded before receivers were. */
  receiver: string | null;
  /** Rows whose change it applied, and whose write the database refused; null when recorded before answers were. */
  applied: number | null;
  refused: number | null;
}

export interface DeliveryRecord {
  eventSeq: string;
  eventId: string;
  toStatus: string;
  transport: string;
  attempts: number;
  queuedAt: string;
  nextAttemptAt: string;
  deliveredAt: string | null;
  deadAt: string | null;
  lastError: string | null;
  /** When the dispatcher first and last tried it (null: not yet, or tried before attempt times were recorded). */
  firstAttemptAt: string | null;
  lastAttemptAt: string | null;
}

/** Everything our schema recorded about one model or generation. */
export interface DiagnosisRecords {
  transitions: TransitionRecord[];
  /** Arrivals of Astria's callback for the row's tune or prompt (recorded per Astria object). */
  callbacks: CallbackArrival[];
  deliveries: DeliveryRecord[];
  /** When callbacks began to be recorded (null: never, or our schema is missing). */
  callbackRecordingSince: string | null;
}

/** Which of our tables exist: a database the sidecar never ran on has none. */
export interface OwnTables {
  events: boolean;
  deliveries: boolean;
  callbacks: boolean;
  callbackOutcomes: boolean;
  callbackRecording: boolean;
  /** Callback arrivals name their receiver and what they changed. */
  callbackAnswers: boolean;
  /** Deliveries hold their first and last attempt times. */
  deliveryAttemptTimes: boolean;
  /** The app has a `generations` table (image prompts). */
  generations: boolean;
}

/** A `diagnose --stuck` candidate. */
export interface StuckCandidate {
  kind: 'model' | 'generation';
  id: string;
}

export interface DiagnosisReader {
  /** The database's clock, read once: every age and "ago" is measured from it. */
  readonly now: string;
  readonly tables: OwnTables;
  modelById(id: string): Promise<DiagnosedModel | null>;
  modelsByTuneId(tuneId: string): Promise<DiagnosedModel[]>;
  /** None when the app has no `generations` table. */
  generationById(id: string): Promise<DiagnosedGeneration | null>;
  generationsByPromptId(promptId: string): Promise<DiagnosedGeneration[]>;
  records(object: RecordedObject): Promise<DiagnosisRecords>;
  /** For an id that names nothing: ids of either kind it may be a piece of, and the events our log holds for it. */
  nearMisses(id: string): Promise<{ similar: StuckCandidate[]; loggedEvents: Record<StuckCandidate['kind'], number> }>;
  /** `diagnose --stuck`'s candidates of these kinds, newest first (at most `limit`). */
  stuckCandidates(options: { stuckAfterMs: number; limit: number; kinds: readonly StuckCandidate['kind'][] }): Promise<StuckCandidate[]>;
}

/**
 * Runs `work` in a read-only transaction on one connection (`diagnose` writes nothing, whatever it
 * finds), rolled back at the end either way. The caller has checked that `ai_models` is there.
 */
export async function withDiagnosisReader<T>(pool: pg.Pool, schema: string, host: HostSchema, work: (reader: DiagnosisReader) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN READ ONLY');
    const reader = await createReader(client, schema, host);
    return await work(reader);
  } finally {
    await client.query('ROLLBACK').catch(() => (broken = true));
    client.release(broken);
  }
}

async function createReader(client: pg.PoolClient, schemaName: string, host: HostSchema): Promise<DiagnosisReader> {
  const { models, generations } = host;
  const schema = quoteIdentifier(schemaName);
  const { rows } = await client.query<Omit<OwnTables, 'generations'> & { now: string }>(
    `SELECT ${instant('now()')} AS now,
            to_regclass($1) IS NOT NULL AS events,
            EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($2) AND attname = 'dead_at' AND NOT attisdropped) AS deliveries,
            to_regclass($3) IS NOT NULL AS callbacks,
            to_regclass($4) IS NOT NULL AS "callbackOutcomes",
            to_regclass($5) IS NOT NULL AS "callbackRecording",
            EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($3) AND attname = 'receiver' AND NOT attisdropped) AS "callbackAnswers",
            EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass($2) AND attname = 'first_attempt_at' AND NOT attisdropped) AS "deliveryAttemptTimes"`,
    [`${schema}.events`, `${schema}.deliveries`, `${schema}.callbacks`, `${schema}.callback_outcomes`, `${schema}.callback_recording`],
  );
  const { now, ...own } = rows[0]!;
  const tables: OwnTables = { ...own, generations: await generationsTablePresent(clientExecutor(client), host) };

  const selectModels = async (where: string, params: unknown[]) => (await client.query<DiagnosedModel>(`${modelSelect(host)} WHERE ${where} ORDER BY "updatedAt" DESC, id`, params)).rows;
  const selectGenerations = async (where: string, params: unknown[]) =>
    !tables.generations
      ? []
      : (
          await client.query<GenerationColumns>(
            `SELECT * FROM (SELECT ${generationColumns(generations)}, ${generations.or('aiProvider', 'NULL::text')} AS "aiProvider" FROM ${generations.sql}) AS generation
              WHERE ${where} ORDER BY "updatedAt" DESC NULLS LAST, id`,
            params,
          )
        ).rows.map(
          ({ imageUrls, completedAt, createdAt, updatedAt, ...row }): DiagnosedGeneration => ({
            ...row,
            imageCount: imageUrls.length,
            completedAt: completedAt?.toISOString() ?? null,
            createdAt: createdAt?.toISOString() ?? null,
            updatedAt: updatedAt?.toISOString() ?? null,
          }),
        );

  return {
    now,
    tables,

    async modelById(id) {
      // Compared as text: an operator's id that the column's type cannot hold names no model, and aborts nothing.
      return (await selectModels(`${models.text('id')} = $1::text`, [id]))[0] ?? null;
    },

    modelsByTuneId(tuneId) {
      return selectModels(`${models.text('trainingJobId')} = $1::text`, [tuneId]);
    },

    async generationById(id) {
      return (await selectGenerations('id = $1::text', [id]))[0] ?? null;
    },

    generationsByPromptId(promptId) {
      return selectGenerations(`"jobId" = $1::text`, [promptId]);
    },

    async records(object) {
      const owner = EVENT_OWNER[object.kind];
      const transitions = !tables.events
        ? []
        : (
            await client.query<TransitionRecord>(
              `SELECT e.seq::text AS seq, e.event_id::text AS "eventId", e.from_status AS "from", e.to_status AS "to", e.source,
                      ${instant('e.recorded_at')} AS "occurredAt", ${instant('e.trained_at')} AS "trainedAt",
                      CASE WHEN ${RECOVERY} AND e.trained_at IS NOT NULL
                           THEN round(extract(epoch FROM e.recorded_at - e.trained_at)::numeric, 3)::float8 END AS "lagSeconds",
                      ${tables.callbackOutcomes ? `(SELECT o.outcome FROM ${schema}.callback_outcomes o WHERE o.event_seq = e.seq)` : 'NULL::text'} AS "callbackOutcome"
                 FROM ${schema}.events e
                WHERE e.${owner} = $1::text AND e.kind = $2::text
                ORDER BY e.seq`,
              [object.id, object.kind],
            )
          ).rows;
      const callbacks =
        !tables.callbacks || object.remoteId === null
          ? []
          : (
              await client.query<CallbackArrival>(
                `SELECT ${instant('received_at')} AS "receivedAt",
                        ${tables.callbackAnswers ? 'receiver, applied, refused' : 'NULL::text AS receiver, NULL::int AS applied, NULL::int AS refused'}
                   FROM ${schema}.callbacks WHERE tune_id = $1::text AND kind = $2::text ORDER BY received_at, id`,
                [object.remoteId, object.kind],
              )
            ).rows;
      const deliveries = !tables.deliveries
        ? []
        : (
            await client.query<DeliveryRecord>(
              `SELECT d.event_seq::text AS "eventSeq", e.event_id::text AS "eventId", e.to_status AS "toStatus", d.transport, d.attempts,
                      ${instant('GREATEST(d.queued_at, e.recorded_at)')} AS "queuedAt", ${instant('d.next_attempt_at')} AS "nextAttemptAt",
                      ${instant('d.delivered_at')} AS "deliveredAt", ${instant('d.dead_at')} AS "deadAt", d.last_error AS "lastError",
                      ${tables.deliveryAttemptTimes ? `${instant('d.first_attempt_at')} AS "firstAttemptAt", ${instant('d.last_attempt_at')} AS "lastAttemptAt"` : 'NULL::text AS "firstAttemptAt", NULL::text AS "lastAttemptAt"'}
                 FROM ${schema}.deliveries d JOIN ${schema}.events e ON e.seq = d.event_seq
                WHERE e.${owner} = $1::text AND e.kind = $2::text
                ORDER BY d.event_seq, d.transport`,
              [object.id, object.kind],
            )
          ).rows;
      const recording = tables.callbackRecording
        ? (await client.query<{ since: string }>(`SELECT ${instant('started_at')} AS since FROM ${schema}.callback_recording`)).rows[0]?.since ?? null
        : null;
      return { transitions, callbacks, deliveries, callbackRecordingSince: recording };
    },

    async nearMisses(id) {
      // A pasted id cut short, or with something stuck to it: ids it is a piece of, or that are a piece of it.
      const piece = (table: HostSchema['models'] | HostSchema['generations']) =>
        `SELECT id FROM (SELECT ${table.text('id')} AS id FROM ${table.sql}) AS candidate
          WHERE length($1::text) >= 4 AND (starts_with(id, $1::text) OR (length(id) >= 4 AND starts_with($1::text, id)))
          ORDER BY id LIMIT 3`;
      const similar: StuckCandidate[] = (await client.query<{ id: string }>(piece(models), [id])).rows.map((row) => ({ kind: 'model', id: row.id }));
      if (tables.generations) similar.push(...(await client.query<{ id: string }>(piece(generations), [id])).rows.map((row) => ({ kind: 'generation' as const, id: row.id })));
      const logged = tables.events
        ? (
            await client.query<{ model: number; generation: number }>(
              `SELECT count(*) FILTER (WHERE kind = 'tune' AND model_id = $1::text)::int AS model,
                      count(*) FILTER (WHERE kind = 'prompt' AND generation_id = $1::text)::int AS generation
                 FROM ${schema}.events WHERE model_id = $1::text OR generation_id = $1::text`,
              [id],
            )
          ).rows[0]!
        : { model: 0, generation: 0 };
      return { similar, loggedEvents: logged };
    },

    async stuckCandidates({ stuckAfterMs, limit, kinds }) {
      const params: unknown[] = [];
      const param = (value: unknown) => `$${params.push(value)}`;
      const sources: string[] = [];
      // Models: in flight past the app's own estimate (updatedAt + estimatedTime) plus the grace; no
      // tune id; or a tune id Astria cannot have. Without `updatedAt` a model's age is its `createdAt`'s.
      if (kinds.includes('model')) {
        const updatedAt = models.has('updatedAt') ? models.instant('updatedAt') : models.utc('createdAt');
        sources.push(`SELECT 'model' AS kind, ${models.text('id')} AS id, ${updatedAt} AS at FROM ${models.sql}
            WHERE ${[models.statusIn(IN_FLIGHT_STATUSES), ...models.astriaRows()].join(' AND ')}
              AND (${models.col('trainingJobId')} IS NULL OR ${models.text('trainingJobId')} !~ '${TUNE_ID_PATTERN}'
                   OR ${updatedAt} + coalesce(${models.or('estimatedTime', 'NULL::int')}, 0) * interval '1 minute'
                      + ${param(stuckAfterMs)} * interval '1 millisecond' < now())`);
      }
      // Generations have no estimate: in flight unchanged for longer than the grace (with a prompt id
      // or without: a fresh one is still being sent), or with a prompt id Astria cannot have.
      if (kinds.includes('generation') && tables.generations) {
        const updatedAt = generations.has('updatedAt') ? generations.instant('updatedAt') : generations.utc('createdAt');
        sources.push(`SELECT 'generation' AS kind, ${generations.text('id')} AS id, ${updatedAt} AS at FROM ${generations.sql}
            WHERE ${[generations.statusIn(GENERATION_IN_FLIGHT_STATUSES), ...generations.astriaRows()].join(' AND ')}
              AND (${generations.text('jobId')} !~ '${PROMPT_ID_PATTERN}' OR ${updatedAt} + ${param(stuckAfterMs)} * interval '1 millisecond' < now())`);
      }
      // Either kind: a broadcast delivery of one of its events parked, or failing (its last try failed).
      if (tables.deliveries) {
        const eventKinds = kinds.map((kind): CallbackKind => (kind === 'model' ? 'tune' : 'prompt'));
        sources.push(`SELECT CASE e.kind WHEN 'prompt' THEN 'generation' ELSE 'model' END AS kind,
                 CASE e.kind WHEN 'prompt' THEN e.generation_id ELSE e.model_id END AS id, max(coalesce(d.dead_at, d.queued_at)) AS at
             FROM ${schema}.deliveries d JOIN ${schema}.events e ON e.seq = d.event_seq
            WHERE d.delivered_at IS NULL AND (d.dead_at IS NOT NULL OR d.last_error IS NOT NULL) AND e.kind = ANY(${param(eventKinds)}::text[])
            GROUP BY 1, 2`);
      }
      if (sources.length === 0) return [];
      const { rows } = await client.query<StuckCandidate>(
        `SELECT kind, id FROM (${sources.join(' UNION ALL ')}) candidates
          WHERE id IS NOT NULL
          GROUP BY kind, id ORDER BY max(at) DESC NULLS LAST, kind, id LIMIT ${param(limit)}`,
        params,
      );
      return rows;
    },
  };
}
