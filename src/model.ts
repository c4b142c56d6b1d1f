/**
 * What a model is to the rules and to the database code alike: its statuses, the row the rules read,
 * and the change they decide. Plain data, no behaviour, so both sides import it without importing each other.
 */
export const MODEL_STATUSES = ['UPLOADING', 'PROCESSING', 'TRAINING', 'READY', 'ERROR', 'DELETED'] as const;
export type ModelStatus = (typeof MODEL_STATUSES)[number];
/** Statuses in which a model is waiting on Astria ("in flight"): the ones the reconciler looks at. */
export const IN_FLIGHT_STATUSES: readonly ModelStatus[] = ['PROCESSING', 'TRAINING'];

/** The columns of `ai_models` the rules read. */
export interface ModelRow {
  id: string;
  userId: string;
  status: ModelStatus;
  progress: number;
  trainingJobId: string | null;
  errorMessage: string | null;
  estimatedTime: number | null;
  /** Null when the row's value is no time (`'infinity'`): then it never times out by it. */
  createdAt: Date | null;
  /**
   * The row's ERROR was set by this product: the latest event of our own log for it is that ERROR,
   * with the message the row still holds. Absent when unknown (counts as false).
   */
  ownError?: boolean;
}

/** Columns a transition writes; a column absent here is left as it is. */
export interface ModelChanges {
  progress?: number;
  estimatedTime?: number | null;
  trainedAt?: Date | null;
  modelUrl?: string | null;
  errorMessage?: string | null;
}

/**
 * What should happen to one model. `from` and `expected` are what the decision was made on: the write
 * is a compare-and-set on them (a retrain re-points `trainingJobId` without changing the status; an
 * app may replace an ERROR's message). `to === from` is a progress-only update.
 */
export interface Transition {
  modelId: string;
  userId: string;
  from: ModelStatus;
  to: ModelStatus;
  expected: { trainingJobId: string | null; errorMessage: string | null };
  changes: ModelChanges;
  /**
   * Astria's `trained_at` when it was implausible (before the tune's own `created_at`, or in the
   * future): `changes.trainedAt` is then the time the tune was observed, and the transition is no
   * sample of detection lag. Absent otherwise.
   */
  implausibleTrainedAt?: Date;
}

/** The columns of the updated row an event reports (what the compare-and-set returns). */
export interface UpdatedModel {
  id: string;
  userId: string;
  status: ModelStatus;
  progress: number;
  modelUrl: string | null;
  trainedAt: Date | null;
  errorMessage: string | null;
  estimatedTime: number | null;
}

/** A generation's statuses (the app's enum "GenerationStatus"). */
export const GENERATION_STATUSES = ['PENDING', 'PROCESSING', 'COMPLETED', 'FAILED'] as const;
export type GenerationStatus = (typeof GENERATION_STATUSES)[number];
/** Statuses in which a generation waits on Astria's prompt. */
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

/** The columns of the updated generation an event reports (what the compare-and-set returns). */
export interface UpdatedGeneration {
  id: string;
  userId: string;
  modelId: string | null;
  status: GenerationStatus;
  imageUrls: string[];
  completedAt: Date | null;
  errorMessage: string | null;
}
