import type { Tune } from '../astria/tune.js';
import { executorFor, type Database } from '../db/executor.js';
import type { EventSource, ModelEvent } from './event.js';
import { decide, type ModelRow } from './rules.js';
import type { StatusService } from './service.js';

export interface ApplyObservedTuneOptions extends Database {
  service: StatusService;
  /** What Astria said about the tune: a callback body, or a tune it returned. */
  tune: Tune;
  source: EventSource;
  now: Date;
  trainingTimeoutMs: number;
}

export interface ApplyObservedTuneResult {
  /** Astria models training this tune (0: the tune is not ours). */
  matched: number;
  /** Events of the changes applied (none when nothing changed, or another writer got there first). */
  applied: ModelEvent[];
}

const MODEL_COLUMNS = `id, "userId", status::text AS status, progress, "trainingJobId", "estimatedTime",
  ("createdAt" AT TIME ZONE 'UTC') AS "createdAt"`;

/** A compare-and-set that lost to another writer is decided again on the fresh row, a few times at most. */
const MAX_ATTEMPTS = 3;

/**
 * Applies what was learned about one tune to every Astria model training it, through the status rules
 * and the status service: the path of Astria's callback (the daemon's webhook, or the app's own route).
 * Models in any status are read; the rules decide (READY and DELETED are never left, ERROR may heal to
 * READY). When another writer changed a model between our read and our write (the compare-and-set
 * lost), the model is read again and decided again, so a callback racing a progress poll is not lost.
 */
export async function applyObservedTune(options: ApplyObservedTuneOptions): Promise<ApplyObservedTuneResult> {
  const { service, tune, source, now, trainingTimeoutMs } = options;
  const db = executorFor(options);
  const rows = await db.query<ModelRow>(
    `SELECT ${MODEL_COLUMNS} FROM ai_models WHERE "aiProvider" = 'astria' AND "trainingJobId" = $1 ORDER BY id`,
    [String(tune.id)],
  );
  const applied: ModelEvent[] = [];
  for (const first of rows) {
    let model: ModelRow | undefined = first;
    for (let attempt = 1; model && attempt <= MAX_ATTEMPTS; attempt++) {
      const transition = decide(model, { kind: 'tune', tune }, now, { trainingTimeoutMs });
      if (!transition) break;
      const result = await service.apply(transition, source);
      if (result.applied) {
        applied.push(result.event);
        break;
      }
      model = (await db.query<ModelRow>(`SELECT ${MODEL_COLUMNS} FROM ai_models WHERE id = $1`, [first.id]))[0];
    }
  }
  return { matched: rows.length, applied };
}
