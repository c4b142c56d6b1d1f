import { parseTimestamp, type Observation, type Tune } from '../astria/tune.js';
import type { ModelChanges, ModelRow, ModelStatus, Transition } from '../model.js';
import { safeText } from './sanitize.js';

export { MODEL_STATUSES, type ModelChanges, type ModelRow, type ModelStatus, type Transition } from '../model.js';

/** Statuses in which a model is waiting on Astria ("in flight"): the ones the reconciler looks at. */
export const IN_FLIGHT_STATUSES: readonly ModelStatus[] = ['PROCESSING', 'TRAINING'];

export interface RuleOptions {
  /** In flight longer than this (by `createdAt`) with no result → ERROR. */
  trainingTimeoutMs: number;
  /** An operator named this model (`--model-id`): any ERROR may heal to READY, not only our own. */
  healAnyError?: boolean;
}

const MAX_TRAINING_PROGRESS = 99;
/** Bytes of the message as JSON: it travels in every event and NOTIFY of the model. */
const MAX_ERROR_MESSAGE_BYTES = 1_000;
const MAX_INT = 2_147_483_647;
/** A `trained_at` this long before the tune's `created_at` is a wrong clock (1970, year 1), not a training. */
const TRAINED_BEFORE_CREATED_SLACK_MS = 60_000;
/** A `trained_at` this far past our clock is in the future: Astria's clock or the value is wrong. */
const TRAINED_IN_FUTURE_SLACK_MS = 5 * 60_000;

/**
 * Every status rule (what happens to a model on what Astria says), and the only place they live. Pure: the caller supplies the clock.
 * Returns null when the model should stay exactly as it is.
 */
export function decide(model: ModelRow, observation: Observation, now: Date, options: RuleOptions): Transition | null {
  const transition = (to: ModelStatus, changes: ModelChanges): Transition => ({
    modelId: model.id,
    userId: model.userId,
    from: model.status,
    to,
    expected: { trainingJobId: model.trainingJobId, errorMessage: model.errorMessage },
    changes,
  });
  const inFlight = IN_FLIGHT_STATUSES.includes(model.status);

  if (observation.kind === 'gone') {
    return inFlight
      ? transition('ERROR', { errorMessage: `Astria tune ${observation.tuneId} not found`, estimatedTime: null })
      : null;
  }

  const tune = observation.tune;
  if (tune.trained_at) {
    // ERROR → READY heals a false failure, but only one we reported (or an operator names): an ERROR
    // the app set ("Rejected by moderation") stays. READY, DELETED and UPLOADING are never touched.
    if (!inFlight && !(model.status === 'ERROR' && (model.ownError === true || options.healAnyError === true))) return null;
    // An implausible trained_at still means trained; what it cannot be is the model's trainedAt.
    const plausible = isPlausibleTrainedAt(tune, tune.trained_at, now);
    const ready = transition('READY', {
      progress: 100,
      trainedAt: plausible ? tune.trained_at : now,
      modelUrl: String(tune.id),
      errorMessage: null,
      estimatedTime: null,
    });
    return plausible ? ready : { ...ready, implausibleTrainedAt: tune.trained_at };
  }
  if (!inFlight) return null;

  const failure = failureMessage(tune);
  if (failure !== null) return transition('ERROR', { errorMessage: failure, estimatedTime: null });

  if (model.createdAt !== null && now.getTime() - model.createdAt.getTime() > options.trainingTimeoutMs) {
    return transition('ERROR', {
      errorMessage: `Training did not finish within ${formatHours(options.trainingTimeoutMs)} (Astria tune ${tune.id})`,
      estimatedTime: null,
    });
  }

  return stillTraining(model, tune, now, transition);
}

function stillTraining(
  model: ModelRow,
  tune: Tune,
  now: Date,
  transition: (to: ModelStatus, changes: ModelChanges) => Transition,
): Transition | null {
  const to: ModelStatus = model.status === 'PROCESSING' && tune.started_training_at ? 'TRAINING' : model.status;
  const changes: ModelChanges = {};
  const progress = estimateProgress(tune, now);
  if (progress !== null && progress > model.progress) changes.progress = progress;
  if (tune.eta) {
    // Clamped to the int column: an absurd eta must not fail the write.
    const minutesLeft = Math.min(MAX_INT, Math.max(0, Math.ceil((tune.eta.getTime() - now.getTime()) / 60_000)));
    if (minutesLeft !== model.estimatedTime) changes.estimatedTime = minutesLeft;
  }
  if (to === model.status && Object.keys(changes).length === 0) return null;
  return transition(to, changes);
}

/** Share of the time from `started_training_at` to `eta` already elapsed, as 0–99. */
function estimateProgress(tune: Tune, now: Date): number | null {
  if (!tune.started_training_at || !tune.eta) return null;
  const total = tune.eta.getTime() - tune.started_training_at.getTime();
  if (total <= 0) return null;
  const elapsed = now.getTime() - tune.started_training_at.getTime();
  return Math.max(0, Math.min(MAX_TRAINING_PROGRESS, Math.floor((elapsed / total) * 100)));
}

function isPlausibleTrainedAt(tune: Tune, trainedAt: Date, now: Date): boolean {
  if (trainedAt.getTime() > now.getTime() + TRAINED_IN_FUTURE_SLACK_MS) return false;
  // `created_at` is not declared by the tune schema: it passes through as Astria sent it.
  const createdAt = typeof tune.created_at === 'string' ? parseTimestamp(tune.created_at) : null;
  return createdAt === null || trainedAt.getTime() >= createdAt.getTime() - TRAINED_BEFORE_CREATED_SLACK_MS;
}

/** `status` values that mean the training ended without a model, and how the message says it. */
const FAILED_STATUSES: ReadonlyMap<string, string> = new Map([
  ['failed', 'failed'],
  ['error', 'failed'],
  ['cancelled', 'was cancelled'],
  ['canceled', 'was cancelled'],
]);

/**
 * Astria documents no failure shape; these are the ones seen in the wild: `status` failed / error /
 * cancelled / canceled, or a non-empty `user_error`, `error_message` or `error` (a string, or an
 * object with a message). The first readable of those three is the reason shown to the user.
 */
function failureMessage(tune: Tune): string | null {
  const detail = describe(tune.user_error) ?? describe(tune.error_message) ?? describe(tune.error);
  // Astria documents no `status`: one that is not a string says nothing the rules can read.
  const verb = typeof tune.status === 'string' ? FAILED_STATUSES.get(tune.status.trim().toLowerCase()) : undefined;
  if (verb === undefined && detail === null) return null;
  return truncate(`Astria training ${verb ?? 'failed'}${detail ? `: ${detail}` : ''}`);
}

/** Fields of an error object that hold its message, in the order they are looked at. */
const MESSAGE_FIELDS = ['message', 'error', 'detail'] as const;
/** How deep an error object's message fields are followed (`{"error": {"message": ...}}` is two). */
const MAX_MESSAGE_DEPTH = 3;

/**
 * A failure field as text for people: a string as it is; an object by its message (`message`,
 * `error` or `detail`, themselves strings or objects), else as compact JSON of what it holds. Null
 * when it says nothing: absent, blank, a number or boolean, or an object or array holding only nulls,
 * blanks and empty ones (`{"message": null}` is a serializer's "no error", not a failure).
 */
function describe(value: unknown, depth = 0): string | null {
  if (typeof value === 'string') return value.trim() || null;
  if (!value || typeof value !== 'object') return null;
  if (!Array.isArray(value) && depth < MAX_MESSAGE_DEPTH) {
    for (const field of MESSAGE_FIELDS) {
      const message = describe((value as Record<string, unknown>)[field], depth + 1);
      if (message !== null) return message;
    }
  }
  const content = withoutBlanks(value, 0);
  if (content === undefined) return null;
  try {
    return JSON.stringify(content);
  } catch {
    return 'unreadable error detail'; // nested too deep to print
  }
}

/** Deeper than this, a value is kept whole: printing it is JSON.stringify's problem (or its failure). */
const MAX_PRUNE_DEPTH = 20;

/** `value` without nulls, blank strings and the objects and arrays left empty by their removal; undefined when nothing is left. */
function withoutBlanks(value: unknown, depth: number): unknown {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return value.trim() ? value : undefined;
  if (typeof value !== 'object' || depth >= MAX_PRUNE_DEPTH) return value;
  if (Array.isArray(value)) {
    const items = value.map((item) => withoutBlanks(item, depth + 1)).filter((item) => item !== undefined);
    return items.length > 0 ? items : undefined;
  }
  const entries = Object.entries(value)
    .map(([key, item]) => [key, withoutBlanks(item, depth + 1)] as const)
    .filter(([, item]) => item !== undefined);
  return entries.length > 0 ? Object.fromEntries(entries) : undefined;
}

function truncate(text: string): string {
  return safeText(text, MAX_ERROR_MESSAGE_BYTES);
}

function formatHours(ms: number): string {
  const hours = ms / 3_600_000;
  return Number.isInteger(hours) ? `${hours}h` : `${Math.round(ms / 60_000)}m`;
}
