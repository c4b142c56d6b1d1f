import { failureMessage } from '../astria/failure.js';
import type { PromptObservation } from '../astria/prompt.js';
import { isPlausibleCompletion } from './completion-time.js';
import { safeText } from './sanitize.js';

export const GENERATION_STATUSES = ['PENDING', 'PROCESSING', 'COMPLETED', 'FAILED'] as const;
export type GenerationStatus = (typeof GENERATION_STATUSES)[number];

/** Statuses in which a generation is waiting on Astria. */
export const GENERATION_IN_FLIGHT_STATUSES: readonly GenerationStatus[] = ['PENDING', 'PROCESSING'];

/** The columns of `generations` the rules read. */
export interface GenerationRow {
  id: string;
  userId: string;
  modelId: string | null;
  status: GenerationStatus;
  /** The Astria prompt id. */
  jobId: string | null;
  imageUrls: string[];
  errorMessage: string | null;
  completedAt: Date | null;
  /** Null when the row's value is no time (`'infinity'`): then it never times out by it. */
  createdAt: Date | null;
  updatedAt: Date | null;
  /**
   * The row's FAILED was set by this product: the latest event of our own log for it is that FAILED,
   * with the message the row still holds. Absent when unknown (counts as false).
   */
  ownFailure?: boolean;
}

/** Columns a transition writes; a column absent here is left as it is. */
export interface GenerationChanges {
  imageUrls?: string[];
  completedAt?: Date | null;
  errorMessage?: string | null;
}

/**
 * What should happen to one generation. `from` and `expected` are what the decision was made on: the
 * write is a compare-and-set on them (an app may resubmit under a new `jobId` without changing the
 * status, or replace a FAILED's message).
 */
export interface GenerationTransition {
  generationId: string;
  userId: string;
  modelId: string | null;
  from: GenerationStatus;
  to: GenerationStatus;
  expected: { jobId: string | null; errorMessage: string | null };
  changes: GenerationChanges;
  /**
   * COMPLETED only: Astria's `trained_at` could not be the time the images were done, so
   * `completedAt` is the time of the observation and the transition gives no lag sample.
   */
  completedAtObserved?: boolean;
}

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
