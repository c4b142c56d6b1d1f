import { failureMessage } from '../astria/failure.js';
import type { PromptObservation } from '../astria/prompt.js';
import { isPlausibleCompletion } from './completion-time.js';
import { safeText } from './sanitize.js';
import { GENERATION_IN_FLIGHT_STATUSES, type GenerationChanges, type GenerationRow, type GenerationStatus, type GenerationTransition } from '../model.js';

export {
  GENERATION_IN_FLIGHT_STATUSES,
  GENERATION_STATUSES,
  type GenerationChanges,
  type GenerationRow,
  type GenerationStatus,
  type GenerationTransition,
} from '../model.js';

export interface GenerationRuleOptions {
  /** In flight longer than this (by `createdAt`) with no result → FAILED. */
  generationTimeoutMs: number;
  /** An operator named this generation: any FAILED may heal to COMPLETED, not only our own. */
  healAnyFailure?: boolean;
}

/** Bytes of the message as JSON: it travels in every event and NOTIFY of the generation. */
const MAX_ERROR_MESSAGE_BYTES = 1_000;
/** Bytes of one image URL as JSON: a real one is about a hundred; the bound only keeps a row writable. */
const MAX_IMAGE_URL_BYTES = 4_096;
const ACTIVITY = 'Astria image generation';

/**
 * Every status rule of a generation, and the only place they live. Pure: the caller supplies the clock.
 * Returns null when the generation should stay exactly as it is.
 *
 * A prompt done without images (Astria's safety filter removes every flagged image, and a prompt may
 * end with none) is FAILED, not COMPLETED: the user has nothing to see, and FAILED is the status on
 * which the app refunds the credits and the gallery stops waiting. Should Astria later show images for
 * it, our own FAILED heals to COMPLETED as any false failure does.
 */
export function decideGeneration(
  row: GenerationRow,
  observation: PromptObservation,
  now: Date,
  options: GenerationRuleOptions,
): GenerationTransition | null {
  const transition = (to: GenerationStatus, changes: GenerationChanges, completedAtObserved?: boolean): GenerationTransition => ({
    generationId: row.id,
    userId: row.userId,
    modelId: row.modelId,
    from: row.status,
    to,
    expected: { jobId: row.jobId, errorMessage: row.errorMessage },
    changes,
    ...(completedAtObserved === undefined ? {} : { completedAtObserved }),
  });
  const fail = (message: string) => transition('FAILED', { errorMessage: safeText(message, MAX_ERROR_MESSAGE_BYTES) });
  const inFlight = GENERATION_IN_FLIGHT_STATUSES.includes(row.status);

  if (observation.kind === 'gone') return inFlight ? fail(`Astria prompt ${observation.promptId} not found`) : null;

  const prompt = observation.prompt;
  if (prompt.trained_at && prompt.images.length > 0) {
    // FAILED → COMPLETED heals a false failure, but only one we reported (or an operator names): a
    // FAILED the app set stays. COMPLETED is never touched.
    if (!inFlight && !(row.status === 'FAILED' && (row.ownFailure === true || options.healAnyFailure === true))) return null;
    const plausible = isPlausibleCompletion(prompt.trained_at, prompt.created_at, now);
    return transition(
      'COMPLETED',
      {
        imageUrls: prompt.images.map((url) => safeText(url, MAX_IMAGE_URL_BYTES)),
        completedAt: plausible ? prompt.trained_at : now,
        errorMessage: null,
      },
      !plausible,
    );
  }
  if (!inFlight) return null;

  const failure = failureMessage(prompt, ACTIVITY);
  if (failure !== null) return fail(`${failure} (Astria prompt ${prompt.id})`);
  if (prompt.trained_at) return fail(`Astria returned no images for prompt ${prompt.id} (its safety filter may have removed them)`);

  if (row.createdAt !== null && now.getTime() - row.createdAt.getTime() > options.generationTimeoutMs) {
    return fail(`Image generation did not finish within ${formatDuration(options.generationTimeoutMs)} (Astria prompt ${prompt.id})`);
  }
  return row.status === 'PENDING' && prompt.started_training_at ? transition('PROCESSING', {}) : null;
}

function formatDuration(ms: number): string {
  const hours = ms / 3_600_000;
  return Number.isInteger(hours) ? `${hours}h` : `${Math.round(ms / 60_000)}m`;
}

/** The generation as a transition applied to it leaves it: what the next decision reads. */
export function generationAfter(row: GenerationRow, transition: GenerationTransition): GenerationRow {
  const { imageUrls, completedAt, errorMessage } = transition.changes;
  return {
    ...row,
    status: transition.to,
    imageUrls: imageUrls ?? row.imageUrls,
    completedAt: completedAt === undefined ? row.completedAt : completedAt,
    errorMessage: errorMessage === undefined ? row.errorMessage : errorMessage,
  };
}
