import type pg from 'pg';
import type { AstriaClient } from '../astria/client.js';
import { isPromptId, type Prompt } from '../astria/prompt.js';
import { isTuneId, type Tune } from '../astria/tune.js';
import { selectInFlightGenerationRefs } from '../db/generations.js';
import type { HostSchema } from '../db/host-names.js';
import { selectInFlightRefs, type InFlightFilter, type InFlightPage, type InFlightRef } from '../db/inflight.js';
import { decideGeneration, GENERATION_IN_FLIGHT_STATUSES, generationAfter, type GenerationRow, type GenerationTransition } from '../status/generation-rules.js';
import { decide, IN_FLIGHT_STATUSES, modelAfter, type ModelRow, type RuleOptions, type Transition } from '../status/rules.js';

/**
 * What the engine reconciles, described: one Astria object kind, the host table rows waiting on it,
 * and the rules between the two. The engine (observe.ts, settle.ts, round.ts) knows nothing else about
 * either side. Astria's ids are unique only within a kind (prompt 42 and tune 42 are different
 * objects): anything kept across kinds is keyed on (kind name, id).
 */
export interface ResourceKind<Row extends HostRow, Remote, Change extends StatusChange> {
  /** Names the kind in logs and keys ('tune'). */
  readonly name: string;
  /** Names the host row in logs and reports ('model'). */
  readonly rowName: string;
  /** The type of the event a status change of a row appends to the event log. */
  readonly eventType: string;
  /** The host statuses of a row waiting on Astria. */
  readonly inFlightStatuses: readonly string[];
  /**
   * Whether the daemon's looks after the first wait out the webhook's grace (`RECONCILER_STUCK_AFTER`):
   * a tune trains for many minutes past it, so the grace costs nothing; a prompt is done in about a
   * minute, within it, and waiting for a lost callback would be most of its life.
   */
  readonly waitsForWebhook: boolean;
  /** The host status of a row whose object failed or is gone. */
  readonly failedStatus: string;
  /** The text a row holds where it names its Astria object. */
  remoteIdOf(row: Row): string | null;
  /** The Astria id that text names, or null when it names none (it is never sent to Astria, and is that row's failure). */
  parseRemoteId(text: string): number | null;
  /** Why a row naming `text` cannot be checked. */
  badRemoteId(text: string): string;
  /** The id of an object Astria answered with. */
  idOf(remote: Remote): number;
  /** One page of Astria's list of the kind, newest first, below `beforeId` (null: from the newest), at most `limit` objects (default: Astria's most). */
  list(astria: AstriaClient, beforeId: number | null, signal?: AbortSignal, limit?: number): Promise<RemotePage<Remote>>;
  /** When Astria expects the object done (epoch ms; its `eta`), null when it does not say; absent: never said. */
  dueAtOf?(remote: Remote): number | null;
  /** When the row itself expects it done (epoch ms), given its `updatedAt`; null when it does not say; absent: rows never say. */
  estimatedDueAtOf?(row: Row, updatedAt: number): number | null;
  /** One object by its id (under `parentId` when it is known: a prompt's tune). */
  fetch(astria: AstriaClient, id: number, parentId: string | null, signal?: AbortSignal): Promise<RemoteResult<Remote>>;
  /** The rules: what should happen to a row given what Astria said (pure; `now` as an argument). */
  decide(row: Row, observation: RemoteObservation<Remote>, now: Date, options: RuleOptions): Change | null;
  /** The row as an applied change leaves it. */
  after(row: Row, change: Change): Row;
  /** The host table's in-flight rows, each with what the rules read (one statement): all, or a keyset page. */
  inFlight: {
    refs(pool: pg.Pool, filter: InFlightFilter, page?: InFlightPage): Promise<InFlightRef<Row>[]>;
  };
}

/** The columns of a host row the engine reads itself (the rules read the rest). */
export interface HostRow {
  id: string;
  status: string;
}

/** A decided change of a row; `to === from` updates progress only. */
export interface StatusChange {
  from: string;
  to: string;
}

/** What Astria said about one object: here it is, or it no longer exists (404). */
export type RemoteObservation<Remote> = { kind: 'seen'; remote: Remote } | { kind: 'gone'; id: number };

export type RemoteResult<Remote> = RemoteObservation<Remote> | { kind: 'failed'; reason: string };

export type RemotePage<Remote> =
  /** `nextBeforeId`: the cursor for the next page, null at the end of the list; `skipped`: elements that did not validate. */
  | { kind: 'page'; items: Remote[]; nextBeforeId: number | null; skipped: number }
  /** `endpointMissing`: the list itself answered 404, so the base URL is wrong and no 404 of an object can be trusted. */
  | { kind: 'failed'; reason: string; endpointMissing: boolean };

/** Tunes → the host's models table (`ai_models`, or as `host` names it). */
export const tunes = (host: HostSchema): ResourceKind<ModelRow, Tune, Transition> => ({
  name: 'tune',
  waitsForWebhook: true,
  rowName: 'model',
  eventType: 'model_status_changed',
  inFlightStatuses: IN_FLIGHT_STATUSES,
  failedStatus: 'ERROR',
  remoteIdOf: (row) => row.trainingJobId,
  parseRemoteId: (text) => (isTuneId(text) ? Number(text) : null),
  badRemoteId: (text) => `trainingJobId "${text}" is not an Astria tune id`,
  idOf: (tune) => tune.id,
  dueAtOf: (tune) => tune.eta?.getTime() ?? null,
  // The app's `estimatedTime` is minutes left as of the row's last change (as `diagnose` reads it too).
  estimatedDueAtOf: (model, updatedAt) => (model.estimatedTime === null ? null : updatedAt + model.estimatedTime * 60_000),
  async list(astria, beforeId, signal, limit) {
    const page = await astria.listTunes({ beforeId, limit }, signal);
    if (page.kind === 'failed') return { kind: 'failed', reason: page.reason, endpointMissing: page.endpointMissing === true };
    return { kind: 'page', items: page.tunes, nextBeforeId: page.nextBeforeId, skipped: page.skipped };
  },
  async fetch(astria, id, _parentId, signal) {
    const result = await astria.getTune(String(id), signal);
    if (result.kind === 'tune') return { kind: 'seen', remote: result.tune };
    return result.kind === 'gone' ? { kind: 'gone', id } : result;
  },
  decide: (row, observation, now, options) =>
    decide(row, observation.kind === 'seen' ? { kind: 'tune', tune: observation.remote } : { kind: 'gone', tuneId: String(observation.id) }, now, options),
  after: modelAfter,
  inFlight: { refs: (pool, filter, page) => selectInFlightRefs(pool, host, filter, page) },
});

/**
 * Prompts → the host's generations table (`generations`, or as `host` names it). A prompt is fetched
 * as Astria documents it, `/tunes/:tune_id/prompts/:id`, when the generation's model names its tune,
 * else as `/prompts/:id` (Astria serves both); a 404 under the tune is asked again without it (the
 * model may have been retrained onto another tune since), so only the prompt's own 404 fails a
 * generation. A generation times out by the
 * same `RECONCILER_TRAINING_TIMEOUT` as a model (an image taking that long is lost), and an operator
 * naming a model heals its generations' false failures.
 */
export const prompts = (host: HostSchema): ResourceKind<GenerationRow, Prompt, GenerationTransition> => ({
  name: 'prompt',
  waitsForWebhook: false,
  rowName: 'generation',
  eventType: 'generation_status_changed',
  inFlightStatuses: GENERATION_IN_FLIGHT_STATUSES,
  failedStatus: 'FAILED',
  remoteIdOf: (row) => row.jobId,
  parseRemoteId: (text) => (isPromptId(text) ? Number(text) : null),
  badRemoteId: (text) => `jobId "${text}" is not an Astria prompt id`,
  idOf: (prompt) => prompt.id,
  async list(astria, beforeId, signal) {
    const page = await astria.listPrompts({ beforeId }, signal);
    if (page.kind === 'failed') return { kind: 'failed', reason: page.reason, endpointMissing: page.endpointMissing === true };
    return { kind: 'page', items: page.prompts, nextBeforeId: page.nextBeforeId, skipped: page.skipped };
  },
  async fetch(astria, id, parentId, signal) {
    let result = await astria.getPrompt(parentId, String(id), signal);
    if (result.kind === 'gone' && parentId !== null) result = await astria.getPrompt(null, String(id), signal);
    if (result.kind === 'prompt') return { kind: 'seen', remote: result.prompt };
    return result.kind === 'gone' ? { kind: 'gone', id } : result;
  },
  decide: (row, observation, now, options) =>
    decideGeneration(
      row,
      observation.kind === 'seen' ? { kind: 'prompt', prompt: observation.remote } : { kind: 'gone', promptId: String(observation.id) },
      now,
      { generationTimeoutMs: options.trainingTimeoutMs, healAnyFailure: options.healAnyError === true },
    ),
  after: generationAfter,
  inFlight: { refs: (pool, filter, page) => selectInFlightGenerationRefs(pool, host, filter, page) },
});
