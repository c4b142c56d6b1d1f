import { parseTimestamp, type Observation, type Tune } from '../astria/tune.js';
import { IN_FLIGHT_STATUSES, type ModelChanges, type ModelRow, type ModelStatus, type Transition } from '../model.js';
import { failureMessage } from '../astria/failure.js';
import { isPlausibleCompletion } from './completion-time.js';
import { safeText } from './sanitize.js';

export { IN_FLIGHT_STATUSES, MODEL_STATUSES, type ModelChanges, type ModelRow, type ModelStatus, type Transition } from '../model.js';

export interface RuleOptions {
  /** In flight longer than this (by `createdAt`) with no result → ERROR. */
  trainingTimeoutMs: number;
  /** An operator named this model (`--model-id`): any ERROR may heal to READY, not only our own. */
  healAnyError?: boolean;
}

const MAX_TRAINING_PROGRESS = 99;
/**
 * A progress-only write (the status unchanged) waits until the bar moved this many points: a
 * 20-minute training moves 5 points a minute, so its bar still moves about once a minute (the most a
 * model is written for progress) in at most 20 steps, and a longer training costs fewer writes.
 */
export const PROGRESS_STEP = 5;
/** Likewise for the minutes left (`estimatedTime`): a countdown written every minute is one write a minute per model. */
export const ESTIMATE_STEP_MINUTES = 5;
/** Bytes of the message as JSON: it travels in every event and NOTIFY of the model. */
const MAX_ERROR_MESSAGE_BYTES = 1_000;
const MAX_INT = 2_147_483_647;

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

  const failure = failureMessage(tune, 'Astria training');
  if (failure !== null) return transition('ERROR', { errorMessage: truncate(failure), estimatedTime: null });

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
  if (to === model.status && !worthAProgressWrite(model, changes)) return null;
  return transition(to, changes);
}

/** Whether a progress-only change moves what the app shows by a step at least (estimates appearing or going count). */
function worthAProgressWrite(model: ModelRow, changes: ModelChanges): boolean {
  if (changes.progress !== undefined && (changes.progress - model.progress >= PROGRESS_STEP || changes.progress === MAX_TRAINING_PROGRESS)) return true;
  if (changes.estimatedTime === undefined) return false;
  if (changes.estimatedTime === null || model.estimatedTime === null) return true;
  return Math.abs(changes.estimatedTime - model.estimatedTime) >= ESTIMATE_STEP_MINUTES || changes.estimatedTime === 0;
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
  // `created_at` is not declared by the tune schema: it passes through as Astria sent it.
  const createdAt = typeof tune.created_at === 'string' ? parseTimestamp(tune.created_at) : null;
  return isPlausibleCompletion(trainedAt, createdAt, now);
}

function truncate(text: string): string {
  return safeText(text, MAX_ERROR_MESSAGE_BYTES);
}

function formatHours(ms: number): string {
  const hours = ms / 3_600_000;
  return Number.isInteger(hours) ? `${hours}h` : `${Math.round(ms / 60_000)}m`;
}

/** The model as a transition applied to it leaves it (progress never moves down): what the next decision reads. */
export function modelAfter(model: ModelRow, transition: Transition): ModelRow {
  const { progress, estimatedTime, errorMessage } = transition.changes;
  return {
    ...model,
    status: transition.to,
    progress: progress === undefined ? model.progress : Math.max(model.progress, progress),
    estimatedTime: estimatedTime === undefined ? model.estimatedTime : estimatedTime,
    errorMessage: errorMessage === undefined ? model.errorMessage : errorMessage,
  };
}
