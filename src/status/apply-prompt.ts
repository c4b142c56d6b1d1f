import type { Prompt } from '../astria/prompt.js';
import { databaseClock, recordCallbackArrival } from '../db/callbacks.js';
import { executorFor } from '../db/drivers.js';
import type { Database } from '../db/executor.js';
import { latestEventIsOwnFailure } from '../db/events.js';
import { selectGenerationOfPrompt, selectGenerationsOfPrompt } from '../db/generations.js';
import { DEFAULT_HOST_SCHEMA, type HostSchema } from '../db/host-names.js';
import { DEFAULT_SCHEMA } from '../db/identifier.js';
import { isModelWriteFailure } from '../db/write-failure.js';
import { DEFAULT_TRAINING_TIMEOUT_MS, defaultService } from './apply-tune.js';
import type { EventSource } from './event.js';
import type { GenerationStatusChangedEvent } from './generation-event.js';
import { decideGeneration, type GenerationRow } from './generation-rules.js';
import type { StatusService } from './service.js';

export interface ApplyObservedPromptOptions extends Database {
  /** Default: a status service on the same database and schema, NOTIFY only (`transports: ['pg']`). */
  service?: StatusService;
  /** What Astria said about the prompt: one prompt of a callback body, or a prompt it returned. */
  prompt: Prompt;
  /** Default `webhook`: the app's route applying Astria's callback. */
  source?: EventSource;
  /** Default: the current time. */
  now?: Date;
  /** A generation in flight longer than this fails (default 24 h, as `RECONCILER_TRAINING_TIMEOUT`). */
  generationTimeoutMs?: number;
  /** Our own schema (default `astria_reconciler`). */
  schema?: string;
  /** The app's table, column and status names (`loadHostMapping`); default vibephoto's `ai_models` and `generations`. Give a `service` the same. */
  host?: HostSchema;
  /** Where a failure to record the callback's arrival is reported (it never fails the call). */
  log?: { warn(object: object, message: string): void };
}

export interface ApplyObservedPromptResult {
  /** Astria generations waiting on this prompt, in any status (0: the prompt is not ours). */
  matched: number;
  /** Events of the changes applied (none when nothing changed, or another writer got there first). */
  applied: GenerationStatusChangedEvent[];
  /** Generations whose write the database refused: each one's failure alone; the reconciler applies them later. */
  failed: { generationId: string; reason: string }[];
}

/** A compare-and-set that lost to another writer is decided again on the fresh row, a few times at most. */
const MAX_ATTEMPTS = 3;

/**
 * Applies what was learned about one prompt to the app's Astria generations of that prompt id (never
 * to a model: prompt ids and tune ids are separate sequences), through the generation rules and the
 * status service, as `applyObservedTune` does for a tune. With source `webhook` and a generation
 * matched, the callback's arrival is recorded as a prompt's.
 */
export async function applyObservedPrompt(options: ApplyObservedPromptOptions): Promise<ApplyObservedPromptResult> {
  const { prompt, source = 'webhook', now = new Date(), generationTimeoutMs = DEFAULT_TRAINING_TIMEOUT_MS } = options;
  const service = options.service ?? (await defaultService(options));
  const db = executorFor(options);
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const host = options.host ?? DEFAULT_HOST_SCHEMA;
  const receivedAt = source === 'webhook' ? await databaseClock(db) : null;
  const promptId = String(prompt.id);
  const rows = await selectGenerationsOfPrompt(db, host, promptId);
  const applied: GenerationStatusChangedEvent[] = [];
  const failed: ApplyObservedPromptResult['failed'] = [];
  for (const first of rows) {
    try {
      let generation: GenerationRow | undefined = first;
      for (let attempt = 1; generation && attempt <= MAX_ATTEMPTS; attempt++) {
        if (generation.status === 'FAILED') {
          generation = { ...generation, ownFailure: await latestEventIsOwnFailure(db, schema, 'prompt', generation.id, generation.errorMessage) };
        }
        const transition = decideGeneration(generation, { kind: 'prompt', prompt }, now, { generationTimeoutMs });
        if (!transition) break;
        const result = await service.applyGeneration(transition, source);
        if (result.applied) {
          applied.push(result.event);
          break;
        }
        generation = await selectGenerationOfPrompt(db, host, first.id, promptId);
      }
    } catch (error) {
      if (!isModelWriteFailure(error)) throw error;
      failed.push({ generationId: first.id, reason: (error as Error).message });
    }
  }
  if (receivedAt !== null && rows.length > 0) await recordCallbackArrival(db, schema, promptId, receivedAt, { applied: applied.length, refused: failed.length }, options.log, 'prompt');
  return { matched: rows.length, applied, failed };
}
