import { systemClock, type Clock } from '../clock.js';
import type { BroadcastTransport } from '../config.js';
import { enqueueDeliveries } from '../db/deliveries.js';
import { executorFor } from '../db/drivers.js';
import { appendEvent, notifyEvent, notifyEvents } from '../db/events.js';
import type { Database, SqlExecutor } from '../db/executor.js';
import { compareAndSetGeneration } from '../db/generations.js';
import { compareAndSetModel, updateModelsProgress } from '../db/models.js';
import { DEFAULT_HOST_SCHEMA, type HostSchema } from '../db/host-names.js';
import { DEFAULT_SCHEMA } from '../db/identifier.js';
import { boundLocalWaits } from '../db/transaction.js';
import type { Metrics } from '../metrics.js';
import {
  progressEvent,
  statusChangedEvent,
  type EventSource,
  type ModelEvent,
  type ModelStatusChangedEvent,
} from './event.js';
import { generationStatusChangedEvent, type GenerationStatusChangedEvent } from './generation-event.js';
import type { GenerationTransition } from './generation-rules.js';
import type { Transition } from './rules.js';

export type ApplyResult<Event = ModelEvent> =
  | { applied: true; event: Event }
  /** The row was no longer in `transition.from`: someone else applied a change first. Nothing written. */
  | { applied: false };

/** A status change of either kind the event log holds: a model's or a generation's. */
export type StatusChangedEvent = ModelStatusChangedEvent | GenerationStatusChangedEvent;

export interface StatusService {
  /**
   * Applies one transition: a compare-and-set on the status the decision was made from, the event row,
   * its NOTIFY and its outbox rows (http, redis), all in one transaction. Exactly one of any number of
   * racing callers wins.
   */
  apply(transition: Transition, source: EventSource): Promise<ApplyResult>;
  /** The same for a generation: its compare-and-set, its `generation_status_changed` event, the same channel and outbox. */
  applyGeneration(transition: GenerationTransition, source: EventSource): Promise<ApplyResult<GenerationStatusChangedEvent>>;
  /**
   * Many models' progress-only transitions (`to === from`) in one transaction: each a compare-and-set,
   * progress never moving down, a row another transaction holds locked skipped rather than waited for;
   * each applied one NOTIFYs its `model_progress` as `apply` would (none enters the event log or the
   * outbox). Whether each was applied, in order.
   */
  applyProgress(transitions: readonly Transition[], source: EventSource): Promise<boolean[]>;
}

/**
 * The app's side effect of a status change (a credit refund on a model's `ERROR` or a generation's
 * `FAILED`, storing a generation's images, ...). It receives both kinds of event: switch on
 * `event.type` (`model_status_changed`, `generation_status_changed`). It runs inside the transition's
 * transaction, after the compare-and-set won: once per transition, and rolled back with it if it
 * throws. Transitions another process applies (the sidecar) reach the app through the signed `http`
 * broadcast instead: dedupe those by `eventId` in the same transaction as the effect.
 */
export type TransitionHook = (event: StatusChangedEvent, tx: SqlExecutor) => Promise<void>;

export interface StatusServiceOptions extends Database {
  /** Our own schema, holding the event log (default `astria_reconciler`). */
  schema?: string;
  /** The app's table, column and status names (`loadHostMapping`); default vibephoto's `ai_models` and `generations`. */
  host?: HostSchema;
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

export function createStatusService(options: StatusServiceOptions): StatusService {
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const host = options.host ?? DEFAULT_HOST_SCHEMA;
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
        await boundLocalWaits(client);
        const row = await compareAndSetModel(client, host, transition, now);
        if (!row) return null;
        const event =
          transition.to === transition.from
            ? progressEvent(row, source, now)
            : statusChangedEvent(row, transition.from, source, now);
        const seq = event.type === 'model_status_changed' ? await appendEvent(client, schema, eventRecord(event, transition, now)) : null;
        if (notify) await notifyEvent(client, channel, event);
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

    async applyProgress(transitions, source) {
      if (transitions.some((transition) => transition.to !== transition.from)) throw new Error('applyProgress takes progress-only transitions');
      const now = new Date(clock.now());
      const updated = await db.transaction(async (client) => {
        await boundLocalWaits(client);
        const rows = await updateModelsProgress(client, host, transitions);
        if (notify) await notifyEvents(client, channel, rows.map((row) => progressEvent(row, source, now)));
        return new Set(rows.map((row) => row.id));
      });
      return transitions.map((transition) => updated.has(transition.modelId));
    },

    async applyGeneration(transition, source) {
      const now = new Date(clock.now());
      const event = await db.transaction(async (client) => {
        await boundLocalWaits(client);
        const row = await compareAndSetGeneration(client, host, transition, now);
        // A generation has no progress: a write that changes no status is never decided.
        if (!row) return null;
        const changed = generationStatusChangedEvent(row, transition.from, source, now);
        const seq = await appendEvent(client, schema, {
          kind: 'prompt',
          eventId: changed.eventId,
          generationId: row.id,
          remoteId: transition.expected.jobId,
          modelId: row.modelId,
          userId: row.userId,
          fromStatus: changed.previousStatus,
          toStatus: changed.status,
          source,
          payload: changed,
          trainedAt: transition.completedAtObserved ? null : changed.data.completedAt,
          occurredAt: now,
        });
        if (notify) await notifyEvent(client, channel, changed);
        if (outbox.length > 0) await enqueueDeliveries(client, schema, seq, outbox);
        await options.onTransition?.(changed, client);
        return changed;
      });
      if (!event) return { applied: false };
      recordGenerationMetrics(options.metrics, event, now, !transition.completedAtObserved);
      return { applied: true, event };
    },
  };
}

/** The event as the log stores it. */
function eventRecord(event: ModelStatusChangedEvent, transition: Transition, now: Date) {
  return {
    eventId: event.eventId,
    modelId: event.modelId,
    userId: event.userId,
    fromStatus: event.previousStatus,
    toStatus: event.status,
    source: event.source,
    payload: event,
    // The log's trained_at is what the detection lag is measured from: an implausible one is none.
    trainedAt: transition.implausibleTrainedAt ? null : event.data.trainedAt,
    occurredAt: now,
  };
}

function recordMetrics(metrics: Metrics | undefined, event: ModelStatusChangedEvent, source: EventSource, now: Date, lagSample: boolean): void {
  if (!metrics) return;
  metrics.transitions.inc({ to: event.status, source });
  if (lagSample && source === 'reconciler' && event.status === 'READY' && event.data.trainedAt) {
    metrics.detectionLag.observe(secondsSince(event.data.trainedAt, now));
  }
}

/** A generation's: its own series (the models' keep their meaning on dashboards and alerts). */
function recordGenerationMetrics(metrics: Metrics | undefined, event: GenerationStatusChangedEvent, now: Date, lagSample: boolean): void {
  if (!metrics) return;
  metrics.generationTransitions.inc({ to: event.status, source: event.source });
  if (lagSample && event.source === 'reconciler' && event.status === 'COMPLETED' && event.data.completedAt) {
    metrics.generationDetectionLag.observe(secondsSince(event.data.completedAt, now));
  }
}

function secondsSince(timestamp: string, now: Date): number {
  return Math.max(0, (now.getTime() - Date.parse(timestamp)) / 1000);
}
