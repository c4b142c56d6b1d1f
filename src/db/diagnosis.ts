import type pg from 'pg';
import { TUNE_ID_PATTERN } from '../astria/tune.js';
import { IN_FLIGHT_STATUSES } from '../model.js';
import { quoteLiteral, type HostSchema, type ModelColumn } from './host-names.js';
import { quoteIdentifier } from './identifier.js';

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

export interface TransitionRecord {
  seq: string;
  eventId: string;
  from: string;
  to: string;
  source: string;
  occurredAt: string;
  trainedAt: string | null;
  /** Seconds from Astria's `trained_at` to this write (READY only). */
  lagSeconds: number | null;
  /** The leader's verdict on a reconciler READY ('lost' or 'late'), when it gave one. */
  callbackOutcome: string | null;
}

export interface CallbackArrival {
  receivedAt: string;
  /** The process that received it (`host/pid`); null when recorded before receivers were. */
  receiver: string | null;
  /** Models whose change it applied, and whose write the database refused; null when recorded before answers were. */
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

/** Everything our schema recorded about one model. */
export interface ModelRecords {
  transitions: TransitionRecord[];
  /** Arrivals of Astria's callback for the model's tune (recorded per tune). */
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
}

export interface DiagnosisReader {
  /** The database's clock, read once: every age and "ago" is measured from it. */
  readonly now: string;
  readonly tables: OwnTables;
  modelById(id: string): Promise<DiagnosedModel | null>;
  modelsByTuneId(tuneId: string): Promise<DiagnosedModel[]>;
  records(model: DiagnosedModel): Promise<ModelRecords>;
  /** For an id that names nothing: model ids it may be a piece of, and whether our event log knows it. */
  nearMisses(id: string): Promise<{ similarModelIds: string[]; loggedEvents: number }>;
  /** The ids of `diagnose --stuck`'s candidates, newest first (at most `limit`). */
  stuckCandidates(options: { stuckAfterMs: number; limit: number }): Promise<string[]>;
  /** The generation (image prompt) table, when the app has one: a row by id or Astria prompt id. */
  generation(id: string): Promise<Record<string, unknown>[] | null>;
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
  const { rows } = await client.query<OwnTables & { now: string }>(
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
  const { now, ...tables } = rows[0]!;

  const selectModels = async (where: string, params: unknown[]) => (await client.query<DiagnosedModel>(`${modelSelect(host)} WHERE ${where} ORDER BY "updatedAt" DESC, id`, params)).rows;

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

    async records(model) {
      const transitions = !tables.events
        ? []
        : (
            await client.query<TransitionRecord>(
              `SELECT e.seq::text AS seq, e.event_id::text AS "eventId", e.from_status AS "from", e.to_status AS "to", e.source,
                      ${instant('e.recorded_at')} AS "occurredAt", ${instant('e.trained_at')} AS "trainedAt",
                      CASE WHEN e.to_status = 'READY' AND e.trained_at IS NOT NULL
                           THEN round(extract(epoch FROM e.recorded_at - e.trained_at)::numeric, 3)::float8 END AS "lagSeconds",
                      ${tables.callbackOutcomes ? `(SELECT o.outcome FROM ${schema}.callback_outcomes o WHERE o.event_seq = e.seq)` : 'NULL::text'} AS "callbackOutcome"
                 FROM ${schema}.events e
                WHERE e.model_id = $1::text AND e.kind = 'tune'
                ORDER BY e.seq`,
              [model.id],
            )
          ).rows;
      const callbacks =
        !tables.callbacks || model.trainingJobId === null
          ? []
          : (
              await client.query<CallbackArrival>(
                `SELECT ${instant('received_at')} AS "receivedAt",
                        ${tables.callbackAnswers ? 'receiver, applied, refused' : 'NULL::text AS receiver, NULL::int AS applied, NULL::int AS refused'}
                   FROM ${schema}.callbacks WHERE tune_id = $1::text AND kind = 'tune' ORDER BY received_at, id`,
                [model.trainingJobId],
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
                WHERE e.model_id = $1::text AND e.kind = 'tune'
                ORDER BY d.event_seq, d.transport`,
              [model.id],
            )
          ).rows;
      const recording = tables.callbackRecording
        ? (await client.query<{ since: string }>(`SELECT ${instant('started_at')} AS since FROM ${schema}.callback_recording`)).rows[0]?.since ?? null
        : null;
      return { transitions, callbacks, deliveries, callbackRecordingSince: recording };
    },

    async nearMisses(id) {
      // A pasted id cut short, or with something stuck to it: model ids it is a piece of, or that are a piece of it.
      const similar = await client.query<{ id: string }>(
        `SELECT id FROM (SELECT ${models.text('id')} AS id FROM ${models.sql}) AS model
          WHERE length($1::text) >= 4 AND (starts_with(id, $1::text) OR (length(id) >= 4 AND starts_with($1::text, id)))
          ORDER BY id LIMIT 3`,
        [id],
      );
      const logged = tables.events
        ? (await client.query<{ n: number }>(`SELECT count(*)::int AS n FROM ${schema}.events WHERE model_id = $1::text AND kind = 'tune'`, [id])).rows[0]!.n
        : 0;
      return { similarModelIds: similar.rows.map((row) => row.id), loggedEvents: logged };
    },

    async stuckCandidates({ stuckAfterMs, limit }) {
      // In flight past the app's own estimate (updatedAt + estimatedTime) plus the grace; no tune id;
      // a tune id Astria cannot have; or a broadcast delivery parked, or failing (its last try failed).
      const deliveryTrouble = tables.deliveries
        ? `UNION ALL
           SELECT e.model_id AS id, max(coalesce(d.dead_at, d.queued_at)) AS at
             FROM ${schema}.deliveries d JOIN ${schema}.events e ON e.seq = d.event_seq
            WHERE d.delivered_at IS NULL
              AND (d.dead_at IS NOT NULL OR d.last_error IS NOT NULL)
            GROUP BY e.model_id`
        : '';
      // Without `updatedAt` a model's age is its `createdAt`'s (or none: then only a bad tune id makes it a candidate).
      const updatedAt = models.has('updatedAt') ? models.instant('updatedAt') : models.utc('createdAt');
      const { rows } = await client.query<{ id: string }>(
        `SELECT id FROM (
           SELECT ${models.text('id')} AS id, ${updatedAt} AS at FROM ${models.sql}
            WHERE ${[models.statusIn(IN_FLIGHT_STATUSES), ...models.astriaRows()].join(' AND ')}
              AND (${models.col('trainingJobId')} IS NULL OR ${models.text('trainingJobId')} !~ '${TUNE_ID_PATTERN}'
                   OR ${updatedAt} + coalesce(${models.or('estimatedTime', 'NULL::int')}, 0) * interval '1 minute'
                      + $1 * interval '1 millisecond' < now())
           ${deliveryTrouble}
         ) candidates
         GROUP BY id ORDER BY max(at) DESC NULLS LAST, id LIMIT $2`,
        [stuckAfterMs, limit],
      );
      return rows.map((row) => row.id);
    },

    async generation(id) {
      const table = await client.query<{ found: boolean }>(
        `SELECT EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass(${quoteLiteral(generations.sql)}) AND attname = ${quoteLiteral(generations.columns.jobId!)} AND NOT attisdropped) AS found`,
      );
      if (!table.rows[0]?.found) return null;
      // Read whole as JSON: the table is the app's, and only its id, jobId and status are relied upon.
      const { rows } = await client.query<{ row: Record<string, unknown> }>(
        `SELECT to_jsonb(g) AS row FROM ${generations.sql} g WHERE ${generations.col('id', 'g')}::text = $1::text OR ${generations.col('jobId', 'g')}::text = $1::text ORDER BY ${generations.col('id', 'g')}::text LIMIT 10`,
        [id],
      );
      return rows.map((row) => row.row);
    },
  };
}
