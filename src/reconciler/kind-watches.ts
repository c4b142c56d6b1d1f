import type pg from 'pg';
import type { AstriaClient } from '../astria/client.js';
import type { Prompt } from '../astria/prompt.js';
import type { Tune } from '../astria/tune.js';
import type { Clock } from '../clock.js';
import { executorFor } from '../db/drivers.js';
import { generationsTablePresent } from '../db/generations.js';
import { DEFAULT_HOST_SCHEMA, type HostSchema } from '../db/host-names.js';
import { noteTuneModels, type TuneModel } from '../db/tune-models.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { GenerationRow, GenerationTransition, ModelRow, Transition } from '../model.js';
import type { StatusService } from '../status/service.js';
import { prompts, tunes } from './resource.js';
import { InFlightWatch, type WatchOptions } from './watch.js';

export interface KindWatchesDeps {
  pool: pg.Pool;
  astria: AstriaClient;
  service: StatusService;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
  /** The app's table and column names (RECONCILER_HOST_MAPPING); default vibephoto's. */
  host?: HostSchema;
}

type AnyWatch = InFlightWatch<ModelRow, Tune, Transition> | InFlightWatch<GenerationRow, Prompt, GenerationTransition>;

/**
 * The leader's watches, one per kind, all on the same client (one request budget): the models'
 * tunes always; the generations' prompts beside them once the first leader iteration has found the
 * app's `generations` table (without one, prompts are simply off), each kind on its own cadence
 * (`RECONCILER_OBSERVE_EVERY`, `RECONCILER_OBSERVE_PROMPTS_EVERY`). Discovery of the models keeps the
 * tune → model lookup table of our schema.
 */
export class KindWatches {
  readonly tunes: InFlightWatch<ModelRow, Tune, Transition>;
  /** Undefined until looked for; null when the app has no `generations` table. */
  private prompts: InFlightWatch<GenerationRow, Prompt, GenerationTransition> | null | undefined;
  private readonly host: HostSchema;

  constructor(
    private readonly deps: KindWatchesDeps,
    private readonly options: WatchOptions & { schema: string; observePromptsEveryMs: number },
  ) {
    this.host = deps.host ?? DEFAULT_HOST_SCHEMA;
    const discovered = (rows: readonly TuneModel[]) => noteTuneModels(deps.pool, options.schema, rows, deps.log);
    this.tunes = new InFlightWatch(tunes(this.host), { ...deps, writer: deps.service, discovered }, { ...options, onInFlight: (count) => deps.metrics.inflightModels.set(count) });
  }

  /** Looks for the app's `generations` table once. */
  async detect(): Promise<void> {
    if (this.prompts !== undefined) return;
    const { deps } = this;
    if (await generationsTablePresent(executorFor({ pool: deps.pool }), this.host)) {
      const writer = { apply: (transition: GenerationTransition, source: 'reconciler') => deps.service.applyGeneration(transition, source) };
      this.prompts = new InFlightWatch(prompts(this.host), { ...deps, writer }, { ...this.options, observeEveryMs: this.options.observePromptsEveryMs });
      deps.log.info('generations table found: prompts are reconciled beside tunes');
    } else {
      this.prompts = null;
      deps.log.info('no generations table: prompts are not reconciled');
    }
  }

  get all(): AnyWatch[] {
    return this.prompts ? [this.tunes, this.prompts] : [this.tunes];
  }
}
