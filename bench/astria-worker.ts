/**
 * A simulated Astria in a process of its own, so the process measuring the reconciler's CPU counts the
 * reconciler alone. Forked by `bench/inflight-scale.ts`: it receives an `AstriaJob` over IPC, adds the
 * account's tunes, answers with the URL, and serves until its parent disconnects.
 */
import { startSimulatedAstria } from '../dev/simulated-astria.js';

export interface AstriaJob {
  apiKey: string;
  /** Tunes of the account, oldest first. */
  tunes: number;
  /** Every this many tunes one is training (the app's in-flight models); the others trained long ago. */
  trainingEvery: number;
  /** Epoch ms the trainings are timed from. */
  start: number;
}

export interface AstriaReady {
  url: string;
  /** The ids of the tunes training. */
  training: number[];
}

const MINUTE = 60_000;
const TRAINING_MS = 40 * MINUTE;

process.once('message', (message) => {
  void serve(message as AstriaJob).catch((error: unknown) => {
    console.error(error);
    process.exit(1);
  });
});

async function serve(job: AstriaJob): Promise<void> {
  const astria = await startSimulatedAstria({ apiKey: job.apiKey });
  const training: number[] = [];
  const tunes = astria.addTunes(job.tunes, (index) => {
    if (index % job.trainingEvery !== 0) return { startedTrainingAt: new Date(job.start - 3 * 24 * 60 * MINUTE), trainedAt: new Date(job.start - 3 * 24 * 60 * MINUTE + TRAINING_MS) };
    // Started over the last ten minutes, so the bars move and progress writes fall in every round.
    const startedTrainingAt = new Date(job.start - (index % 10) * MINUTE);
    return { startedTrainingAt, eta: new Date(startedTrainingAt.getTime() + TRAINING_MS) };
  });
  tunes.forEach((tune, index) => index % job.trainingEvery === 0 && training.push(tune.id));
  process.send!({ url: astria.url, training } satisfies AstriaReady);
  process.once('disconnect', () => void astria.close().then(() => process.exit(0)));
}
