import { systemClock, type Clock } from '../clock.js';
import type { BroadcastTransport } from '../config.js';
import { executorFor, type Database, type SqlExecutor } from '../db/executor.js';
import { quoteIdentifier } from '../db/identifier.js';
import { DB_LOCK_TIMEOUT_MS, DB_STATEMENT_TIMEOUT_MS } from '../db/pool.js';
import type { Metrics } from '../metrics.js';
import {
  progressEvent,
  statusChangedEvent,
  type EventSource,
  type ModelEvent,
  type ModelStatusChangedEvent,
  type UpdatedModel,
} from './event.js';
import type { ModelChanges, Transition } from './rules.js';

export type ApplyResult =
  | { applied: true; event: ModelEvent }
  /** The row was no longer in `transition.from`: someone else applied a change first. Nothing written. */
  | { applied: false };

export interface StatusService {
  /**
   * Applies one transition: a compare-and-set on the status the decision was made from, the event row,
   * its NOTIFY and its outbox rows (http, redis), all in one transaction. Exactly one of any number of
   * racing callers wins.
   */
  apply(transition: Transition, source: EventSource): Promise<ApplyResult>;
}

/**
 * The app's side effect of a status change (a credit refund on `ERROR`, ...). It runs inside the
 * transition's transaction, after the compare-and-set won: once per transition, and rolled back with
 * it if it throws. Transitions another process applies (the sidecar) reach the app through the signed
 * `http` broadcast instead: dedupe those by `eventId` in the same transaction as the effect.
 */
export type TransitionHook = (event: ModelStatusChangedEvent, tx: SqlExecutor) => Promise<void>;

export interface StatusServiceOptions extends Database {
  /** Our own schema, holding the event log (default `astria_reconciler`). */
  schema?: string;
  /** NOTIFY channel (default `model_status_changed`). */
  channel?: string;
  /**
   * The transports of `BROADCAST` (default `['pg']`). `pg` NOTIFYs inside the write's transaction;
   * `http` and `redis` get a row in `<schema>.deliveries` in that same transaction, which a dispatcher
   * (`createDispatcher`) delivers at least once. Progress-only updates go to `pg` only: they are hints,
   * not part of the event log.
   */
  transports?: readonly BroadcastTransport[];
  clock?: Clock;
  metrics?: Metrics;
  onTransition?: TransitionHook;
  /** Where an implausible `trained_at` applied is reported. */
  log?: { warn(object: object, message: string): void };
}

/** Columns a transition may write, with the SQL that assigns a parameter to each. */
const COLUMN_ASSIGNMENTS: { [K in keyof Required<ModelChanges>]: (param: string) => string } = {
  // GREATEST: two racing writers can never move progress down.
  progress: (param) => `progress = GREATEST(progress, ${param}::int)`,
  estimatedTime: (param) => `"estimatedTime" = ${param}::int`,
  trainedAt: (param) => `"trainedAt" = (${param}::timestamptz AT TIME ZONE 'UTC')`,
  modelUrl: (param) => `"modelUrl" = ${param}::text`,
  errorMessage: (param) => `"errorMessage" = ${param}::text`,
};

const RETURNING = `RETURNING id, "userId", status::text AS status, progress, "modelUrl",
  ("trainedAt" AT TIME ZONE 'UTC') AS "trainedAt", "errorMessage", "estimatedTime"`;

export function createStatusService(options: StatusServiceOptions): StatusService {
  const schema = quoteIdentifier(options.schema ?? 'astria_reconciler');
  const channel = options.channel ?? 'model_status_changed';
  const clock = options.clock ?? systemClock;
  const transports = options.transports ?? ['pg'];
  const notify = transports.includes('pg');
  const outbox = transports.filter((transport) => transport !== 'pg');
  const db = executorFor(options);

  return {
    async apply(transition, source) {
      const now = new Date(clock.now());
      const result = await db.transaction(async (client) => {
        await boundWaits(client);
        const row = await compareAndSet(client, transition, now);
        if (!row) return null;
        const event =
          transition.to === transition.from
            ? progressEvent(row, source, now)
            : statusChangedEvent(row, transition.from, source, now);
        // The log's trained_at is what the detection lag is measured from: an implausible one is none.
        const seq =
          event.type === 'model_status_changed'
            ? await appendEvent(client, schema, event, transition.implausibleTrainedAt ? null : event.data.trainedAt, now)
            : null;
        // NOTIFY is queued until COMMIT: a rolled-back write sends nothing.
        if (notify) await client.execute('SELECT pg_notify($1::text, $2::text)', [channel, JSON.stringify(event)]);
        if (seq !== null && outbox.length > 0) await enqueueDeliveries(client, schema, seq, outbox);
        if (event.type === 'model_status_changed') await options.onTransition?.(event, client);
        return event;
      });
      if (!result) return { applied: false };
      const implausible = transition.implausibleTrainedAt;
      if (implausible) {
        const tuneId = transition.expected.trainingJobId;
        options.log?.warn(
          { modelId: transition.modelId, tuneId, trainedAt: implausible.toISOString(), observedAt: transition.changes.trainedAt?.toISOString() },
          `Astria tune ${tuneId}: trained_at ${implausible.toISOString()} is implausible (before the tune was created, or in the future); the model's trainedAt is when the tune was observed, and no detection lag is recorded`,
        );
      }
      if (result.type === 'model_status_changed') recordMetrics(options.metrics, result, source, now, !implausible);
      return { applied: true, event: result };
    },
  };
}

/**
 * A row the app keeps locked (an idle interactive transaction) costs that model one lock timeout, not
 * the pass; SET LOCAL so the bound holds whoever's pool this runs on, and ends with the transaction.
 */
async function boundWaits(client: SqlExecutor): Promise<void> {
  // One statement each: a driver that prepares statements (Prisma's) refuses two in one.
  await client.execute(`SET LOCAL lock_timeout = '${DB_LOCK_TIMEOUT_MS}ms'`);
  await client.execute(`SET LOCAL statement_timeout = '${DB_STATEMENT_TIMEOUT_MS}ms'`);
}

/**
 * `UPDATE ... WHERE id = $1 AND status = $from AND "trainingJobId" = $expected ...`: zero rows means
 * another writer got there first (a status change, a retrain onto another tune, a new error message).
 * A status change stamps `updatedAt` (Prisma's `@updatedAt` lives in the client, not the database);
 * a progress-only update leaves it, so it keeps meaning "last status change".
 */
async function compareAndSet(client: SqlExecutor, transition: Transition, now: Date): Promise<UpdatedModel | null> {
  const params: unknown[] = [transition.modelId, transition.from, transition.expected.trainingJobId, transition.expected.errorMessage];
  const param = (value: unknown) => `$${params.push(value)}`;
  const assignments: string[] = [];
  if (transition.to !== transition.from) {
    // The enum's value by its label, whatever the enum type is named: a parameter typed `text` (Prisma
    // before 7 types every string so) is not assignable to an enum column.
    assignments.push(
      `status = (SELECT label FROM unnest(enum_range(status)) AS label WHERE label::text = ${param(transition.to)}::text)`,
      `"updatedAt" = (${param(now.toISOString())}::timestamptz AT TIME ZONE 'UTC')`,
    );
  }
  for (const [column, value] of Object.entries(transition.changes) as [keyof ModelChanges, unknown][]) {
    if (value === undefined) continue;
    assignments.push(COLUMN_ASSIGNMENTS[column](param(value instanceof Date ? value.toISOString() : value)));
  }
  if (assignments.length === 0) return null;
  const rows = await client.query<UpdatedModel>(
    `UPDATE ai_models SET ${assignments.join(', ')}
      WHERE id = $1::text AND status::text = $2::text AND "trainingJobId" IS NOT DISTINCT FROM $3::text AND "errorMessage" IS NOT DISTINCT FROM $4::text
      ${RETURNING}`,
    params,
  );
  return rows[0] ?? null;
}

/**
 * Appends the event to the log; returns its `seq` (the order deliveries follow). `trainedAt` is
 * Astria's `trained_at` the detection lag is measured from, null when there is none to trust.
 */
async function appendEvent(client: SqlExecutor, schema: string, event: ModelStatusChangedEvent, trainedAt: string | null, now: Date): Promise<string> {
  const rows = await client.query<{ seq: string }>(
    `INSERT INTO ${schema}.events
       (event_id, model_id, user_id, from_status, to_status, source, payload, trained_at, occurred_at)
     VALUES ($1::uuid, $2::text, $3::text, $4::text, $5::text, $6::text, $7::jsonb, $8::timestamptz, $9::timestamptz)
     RETURNING seq`,
    [
      event.eventId,
      event.modelId,
      event.userId,
      event.previousStatus,
      event.status,
      event.source,
      JSON.stringify(event),
      trainedAt,
      now.toISOString(),
    ],
  );
  return rows[0]!.seq;
}

/** One pending delivery per asynchronous transport, committed (or rolled back) with the event. */
async function enqueueDeliveries(client: SqlExecutor, schema: string, seq: string, transports: BroadcastTransport[]): Promise<void> {
  await client.execute(
    `INSERT INTO ${schema}.deliveries (event_seq, transport) SELECT $1::bigint, unnest($2::text[])`,
    [seq, transports],
  );
}

function recordMetrics(metrics: Metrics | undefined, event: ModelStatusChangedEvent, source: EventSource, now: Date, lagSample: boolean): void {
  if (!metrics) return;
  metrics.transitions.inc({ to: event.status, source });
  if (lagSample && source === 'reconciler' && event.status === 'READY' && event.data.trainedAt) {
    metrics.detectionLag.observe(Math.max(0, (now.getTime() - Date.parse(event.data.trainedAt)) / 1000));
  }
}
