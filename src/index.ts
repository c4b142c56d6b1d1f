/**
 * astria-reconciler as a library: the status rules and the status service the daemon uses, so the
 * app's own webhook route applies Astria's callbacks through exactly the same code (compare-and-set,
 * event log, broadcast) instead of a copy of it.
 */
export {
  createStatusService,
  type ApplyResult,
  type StatusService,
  type StatusChangedEvent,
  type StatusServiceOptions,
  type TransitionHook,
} from './status/service.js';
export type { Database, PrismaLike, PrismaRawClient, SqlExecutor } from './db/executor.js';
export {
  applyObservedTune,
  type ApplyObservedTuneOptions,
  type ApplyObservedTuneResult,
} from './status/apply-tune.js';
export {
  applyObservedPrompt,
  type ApplyObservedPromptOptions,
  type ApplyObservedPromptResult,
} from './status/apply-prompt.js';
export {
  generationStatusChangedEventSchema,
  type GenerationStatusChangedEvent,
} from './status/generation-event.js';
export {
  decide,
  IN_FLIGHT_STATUSES,
  MODEL_STATUSES,
  type ModelChanges,
  type ModelRow,
  type ModelStatus,
  type RuleOptions,
  type Transition,
} from './status/rules.js';
export {
  EVENT_SOURCES,
  modelProgressEventSchema,
  modelStatusChangedEventSchema,
  type EventSource,
  type ModelEvent,
  type ModelProgressEvent,
  type ModelStatusChangedEvent,
} from './status/event.js';
export { isTuneId, tuneSchema, type Observation, type Tune } from './astria/tune.js';
export { parseCallbackBody, type CallbackBody } from './astria/callback-body.js';
export { promptSchema, type Prompt } from './astria/prompt.js';
export { ensureOwnSchema } from './db/own-schema.js';
export { DEFAULT_HOST_SCHEMA, hostSchemaFromMapping, loadHostMapping, type HostMapping, type HostSchema } from './db/host-names.js';
export { assertHostTable } from './db/host-check.js';
export {
  acceptAstriaCallback,
  callbackUrlParams,
  MAX_CALLBACK_BODY_BYTES,
  type CallbackDeps,
  type CallbackRequest,
  type CallbackResponse,
} from './http/callback.js';
export type { BroadcastTransport } from './config.js';
export {
  createBroadcastVerifier,
  createMemoryReplayStore,
  DEFAULT_SIGNATURE_TOLERANCE_MS,
  signBody,
  standardWebhookHeaders,
  verifySignature,
  type BroadcastVerification,
  type BroadcastVerifier,
  type BroadcastVerifierOptions,
  type HeadersLike,
  type ReplayStore,
  type StandardWebhookHeaders,
} from './broadcast/signature.js';
