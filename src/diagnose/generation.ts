import { isPromptId, type Prompt } from '../astria/prompt.js';
import type { DiagnosedGeneration } from '../db/diagnosis.js';
import { decideGeneration, GENERATION_IN_FLIGHT_STATUSES } from '../status/generation-rules.js';
import { redactCallback, settled, type DiagnosisKind } from './engine.js';
import { formatAgo, type AstriaView } from './types.js';

const iso = (date: Date | null | undefined) => (date ? date.toISOString() : null);
const IN_FLIGHT: readonly string[] = GENERATION_IN_FLIGHT_STATUSES;

/** Whether the generation rules read the prompt as failed (a failure field, or done without images): they alone know the shapes. */
function isFailed(prompt: Prompt): boolean {
  const probe = { id: '', userId: '', modelId: null, status: 'PENDING' as const, jobId: String(prompt.id), imageUrls: [], errorMessage: null, completedAt: null, createdAt: null, updatedAt: null };
  return decideGeneration(probe, { kind: 'prompt', prompt }, new Date(0), { generationTimeoutMs: Number.MAX_SAFE_INTEGER })?.to === 'FAILED';
}

function promptState(prompt: Prompt): AstriaView['state'] {
  if (prompt.trained_at && prompt.images.length > 0) return 'trained';
  if (isFailed(prompt)) return 'failed';
  return prompt.started_training_at ? 'training' : 'queued';
}

/**
 * `generations` rows and the Astria prompts they wait on. A prompt has no eta: a generation is
 * expected done by its last change, so it is overdue once unchanged for `RECONCILER_STUCK_AFTER`.
 */
export const generationKind: DiagnosisKind<DiagnosedGeneration, Prompt> = {
  name: 'generation',
  remoteName: 'prompt',
  remoteIdColumn: 'jobId',
  inFlightStatuses: GENERATION_IN_FLIGHT_STATUSES,
  doneStatus: 'COMPLETED',
  failedStatus: 'FAILED',
  runningCode: 'generating',
  work: 'generating',
  workNoun: 'generation',
  finished: 'finished the images',
  estimateName: 'its last change (updatedAt: a prompt has no eta)',
  findBy: "its text or time, among its tune's prompts",
  subject: (generation) => ({
    id: generation.id,
    status: generation.status,
    aiProvider: generation.aiProvider,
    remoteId: generation.jobId,
    errorMessage: generation.errorMessage,
    updatedAt: generation.updatedAt,
    expectedAt: generation.updatedAt,
  }),
  isRemoteId: isPromptId,
  view: (prompt) => ({
    state: promptState(prompt),
    id: prompt.id,
    tuneId: prompt.tune_id ?? null,
    createdAt: iso(prompt.created_at),
    startedTrainingAt: iso(prompt.started_training_at),
    eta: null,
    trainedAt: iso(prompt.trained_at),
    imageCount: prompt.images.length,
    status: prompt.status ?? null,
    userError: prompt.user_error ?? null,
    errorMessage: prompt.error_message ?? null,
    error: prompt.error ?? null,
    callback: typeof prompt.callback === 'string' ? redactCallback(prompt.callback) : null,
  }),
  ownVerdict(generation, { remoteId, updatedAt }, now, stuckAfterMs) {
    // The app saves the prompt id Astria answers with: a fresh row without one may still be being sent.
    if (remoteId === null && updatedAt !== null && IN_FLIGHT.includes(generation.status) && Date.parse(updatedAt) + stuckAfterMs >= Date.parse(now)) {
      return settled(
        'not_submitted',
        `status ${generation.status} without a prompt id, changed ${formatAgo(updatedAt, now)}: the app has not saved Astria's prompt id yet (it may still be sending it)`,
        'run diagnose again in a minute: one still without a prompt id after RECONCILER_STUCK_AFTER is an orphan',
      );
    }
    return null;
  },
  applyNow: (generation) => `astria-reconciler --once --kind prompts${generation.modelId === null ? '' : ` --model-id ${generation.modelId}`}`,
  describe(generation, now) {
    const ago = (at: string | null) => (at === null ? '-' : `${at} (${formatAgo(at, now)})`);
    return [
      `Generation ${generation.id} (user ${generation.userId}, model ${generation.modelId ?? '-'}), as the app sees it:`,
      `  status ${generation.status}  prompt ${generation.jobId ?? '-'}  aiProvider ${generation.aiProvider ?? '-'}  images ${generation.imageCount}`,
      `  completedAt ${ago(generation.completedAt)}  updatedAt ${ago(generation.updatedAt)}  createdAt ${ago(generation.createdAt)}`,
      ...(generation.errorMessage ? [`  errorMessage ${generation.errorMessage}`] : []),
    ];
  },
};
