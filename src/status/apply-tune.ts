import type { Tune } from '../astria/tune.js';
import { databaseClock, recordCallbackArrival } from '../db/callbacks.js';
import { executorFor } from '../db/drivers.js';
import { latestEventIsOwnFailure } from '../db/events.js';
import type { Database } from '../db/executor.js';
import { selectModelOfTune, selectModelsOfTune } from '../db/models.js';
import { DEFAULT_HOST_SCHEMA, type HostSchema } from '../db/host-names.js';
import { DEFAULT_SCHEMA } from '../db/identifier.js';
import { ensureOwnSchema } from '../db/own-schema.js';
import { isModelWriteFailure } from '../db/write-failure.js';
import type { EventSource, ModelEvent } from './event.js';
import { decide, type ModelRow } from './rules.js';
import { createStatusService, type StatusService } from './service.js';

/** `RECONCILER_TRAINING_TIMEOUT`'s default, for library callers that name none. */
export const DEFAULT_TRAINING_TIMEOUT_MS = 24 * 3_600_000;

export interface ApplyObservedTuneOptions extends Database {
  /** Default: a status service on the same database and schema, NOTIFY only (`transports: ['pg']`). */
  service?: StatusService;
  /** What Astria said about the tune: a callback body, or a tune it returned. */
  tune: Tune;
  /** Default `webhook`: the app's route applying Astria's callback. */
  source?: EventSource;
  /** Default: the current time. */
  now?: Date;
  /** Default 24 h, as `RECONCILER_TRAINING_TIMEOUT`. */
  trainingTimeoutMs?: number;
  /** Our own schema, whose event log tells an ERROR we set from one the app set (default `astria_reconciler`). */
  schema?: string;
  /** The app's table, column and status names (`loadHostMapping`); default vibephoto's `ai_models` and `generations`. Give a `service` the same. */
  host?: HostSchema;
  /** Only this model (the callback URL's `model`); null or absent = every model training the tune. */
  modelId?: string | null;
  /** Where a failure to record the callback's arrival, and an implausible `trained_at`, are reported (neither fails the call). */
  log?: { warn(object: object, message: string): void };
}

export interface ApplyObservedTuneResult {
  /** Astria models training this tune (0: the tune is not ours). */
  matched: number;
  /** Events of the changes applied (none when nothing changed, or another writer got there first). */
  applied: ModelEvent[];
  /** Models whose write the database refused (a row the app holds locked, ...): each one's failure alone; the reconciler applies them later. */
  failed: { modelId: string; reason: string }[];
}

/** A compare-and-set that lost to another writer is decided again on the fresh row, a few times at most. */
const MAX_ATTEMPTS = 3;

/**
 * Applies what was learned about one tune to every Astria model training it, through the status rules
 * and the status service: the path of Astria's callback (the daemon's webhook, or the app's own route).
 * Models in any status are read; the rules decide (READY and DELETED are never left, ERROR may heal to
 * READY). When another writer changed a model between our read and our write (the compare-and-set
 * lost), the model is read again and decided again, so a callback racing a progress poll is not lost.
 * A write the database refuses for one model (a row lock held past the lock timeout) is that model's
 * failure; the others are applied. With source `webhook` and a model matched, the callback's arrival
 * is recorded (lost vs late callbacks), whichever process received it.
 */
export async function applyObservedTune(options: ApplyObservedTuneOptions): Promise<ApplyObservedTuneResult> {
  const { tune, source = 'webhook', now = new Date(), trainingTimeoutMs = DEFAULT_TRAINING_TIMEOUT_MS } = options;
  const service = options.service ?? (await defaultService(options));
  const db = executorFor(options);
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const host = options.host ?? DEFAULT_HOST_SCHEMA;
  const receivedAt = source === 'webhook' ? await databaseClock(db) : null;
  const rows = await selectModelsOfTune(db, host, schema, String(tune.id), options.modelId ?? null, options.log);
  const applied: ModelEvent[] = [];
  const failed: ApplyObservedTuneResult['failed'] = [];
  for (const first of rows) {
    try {
      let model: ModelRow | undefined = first;
      for (let attempt = 1; model && attempt <= MAX_ATTEMPTS; attempt++) {
        if (model.status === 'ERROR') model = { ...model, ownError: await latestEventIsOwnFailure(db, schema, 'tune', model.id, model.errorMessage) };
        const transition = decide(model, { kind: 'tune', tune }, now, { trainingTimeoutMs });
        if (!transition) break;
        const result = await service.apply(transition, source);
        if (result.applied) {
          applied.push(result.event);
          break;
        }
        // Re-pointed to another tune meanwhile (a retrain): this tune no longer says anything about it.
        model = await selectModelOfTune(db, host, first.id, String(tune.id));
      }
    } catch (error) {
      if (!isModelWriteFailure(error)) throw error;
      failed.push({ modelId: first.id, reason: (error as Error).message });
    }
  }
  // The leader judges a reconciler READY lost only once the grace after it is over, so recording the
  // arrival after the writes loses no race, and an unknown tune leaves nothing behind.
  if (receivedAt !== null && rows.length > 0) {
    await recordCallbackArrival(db, schema, tune.id, receivedAt, { applied: applied.length, refused: failed.length }, options.log);
  }
  return { matched: rows.length, applied, failed };
}

/** Our schema, ensured once per database object and schema name (a no-op read once it exists). */
const ensured = new WeakMap<object, Map<string, Promise<void>>>();

/**
 * The service a library caller gets without passing one: on the same database and schema, NOTIFY only,
 * with our schema created first if the sidecar never ran there (the minimal call, `{ pool, tune }`, must work on a
 * fresh database). A failed attempt is forgotten, so the next callback tries again.
 */
export async function defaultService(options: Database & { schema?: string; host?: HostSchema; log?: ApplyObservedTuneOptions['log'] }): Promise<StatusService> {
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const host = options.host ?? DEFAULT_HOST_SCHEMA;
  // Built first: it refuses neither-or-both databases with a clear message.
  const service = createStatusService({ pool: options.pool, prisma: options.prisma, schema, host, log: options.log });
  const database: object = (options.pool ?? options.prisma)!;
  let schemas = ensured.get(database);
  if (!schemas) ensured.set(database, (schemas = new Map()));
  let ready = schemas.get(schema);
  if (!ready) {
    ready = ensureOwnSchema(options.pool ? { pool: options.pool } : { prisma: options.prisma }, schema, host);
    schemas.set(schema, ready);
    ready.catch(() => schemas.delete(schema));
  }
  await ready;
  return service;
}
