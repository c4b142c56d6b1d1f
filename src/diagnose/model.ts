import { isTuneId, parseTimestamp, type Tune } from '../astria/tune.js';
import type { DiagnosedModel } from '../db/diagnosis.js';
import { decide, IN_FLIGHT_STATUSES, type ModelStatus } from '../status/rules.js';
import { redactCallback, settled, type DiagnosisKind } from './engine.js';
import { formatAgo, type AstriaView } from './types.js';

const iso = (date: Date | null | undefined) => (date ? date.toISOString() : null);

/** Whether the status rules read the (untrained) tune as failed: they alone know Astria's failure shapes. */
function isFailed(tune: Tune): boolean {
  const probe = { id: '', userId: '', status: 'TRAINING' as ModelStatus, progress: 0, trainingJobId: String(tune.id), errorMessage: null, estimatedTime: null, createdAt: null };
  return decide(probe, { kind: 'tune', tune }, new Date(0), { trainingTimeoutMs: Number.MAX_SAFE_INTEGER })?.to === 'ERROR';
}

function tuneState(tune: Tune): AstriaView['state'] {
  if (tune.trained_at) return 'trained';
  if (isFailed(tune)) return 'failed';
  return tune.started_training_at ? 'training' : 'queued';
}

/** `ai_models` rows and the tunes they train. */
export const modelKind: DiagnosisKind<DiagnosedModel, Tune> = {
  name: 'model',
  remoteName: 'tune',
  remoteIdColumn: 'trainingJobId',
  inFlightStatuses: IN_FLIGHT_STATUSES,
  doneStatus: 'READY',
  failedStatus: 'ERROR',
  runningCode: 'training',
  work: 'training',
  workNoun: 'training',
  finished: 'finished training',
  estimateName: "the app's estimate (updatedAt + estimatedTime)",
  findBy: 'title or time',
  subject: (model) => ({
    id: model.id,
    status: model.status,
    aiProvider: model.aiProvider,
    remoteId: model.trainingJobId,
    errorMessage: model.errorMessage,
    updatedAt: model.updatedAt,
    expectedAt: model.updatedAt ? new Date(Date.parse(model.updatedAt) + (model.estimatedTime ?? 0) * 60_000).toISOString() : null,
  }),
  isRemoteId: isTuneId,
  view: (tune) => ({
    state: tuneState(tune),
    id: tune.id,
    title: typeof tune.title === 'string' ? tune.title : null,
    createdAt: typeof tune.created_at === 'string' ? iso(parseTimestamp(tune.created_at)) : null,
    startedTrainingAt: iso(tune.started_training_at),
    eta: iso(tune.eta),
    trainedAt: iso(tune.trained_at),
    status: tune.status ?? null,
    errorMessage: tune.error_message ?? null,
    error: tune.error ?? null,
    callback: typeof tune.callback === 'string' ? redactCallback(tune.callback) : null,
  }),
  ownVerdict(model) {
    if (model.status === 'DELETED') return settled('deleted', 'the model is DELETED: nothing is waiting on it', 'nothing to do');
    if (model.status === 'UPLOADING') {
      return settled('not_submitted', `status UPLOADING since ${model.updatedAt}: the app has not sent the training to Astria yet`, "look at the app's upload step; the reconciler waits for PROCESSING or TRAINING with a tune id");
    }
    return null;
  },
  applyNow: (model) => `astria-reconciler --once --model-id ${model.id}`,
  describe(model, now) {
    const ago = (at: string | null) => (at === null ? '-' : `${at} (${formatAgo(at, now)})`);
    return [
      `Model ${model.id} (user ${model.userId}), as the app sees it:`,
      `  status ${model.status}  progress ${model.progress}%  tune ${model.trainingJobId ?? '-'}  aiProvider ${model.aiProvider ?? '-'}  estimatedTime ${model.estimatedTime === null ? '-' : `${model.estimatedTime} min`}`,
      `  trainedAt ${ago(model.trainedAt)}  updatedAt ${ago(model.updatedAt)}  createdAt ${ago(model.createdAt)}`,
      ...(model.errorMessage ? [`  errorMessage ${model.errorMessage}`] : []),
    ];
  },
};
