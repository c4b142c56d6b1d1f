import pLimit from 'p-limit';
import type pg from 'pg';
import type { AstriaClient, TuneResult } from '../astria/client.js';
import { isTuneId, type Observation } from '../astria/tune.js';
import type { Clock } from '../clock.js';
import {
  selectInFlightByTuneIds,
  selectInFlightPage,
  summarizeInFlight,
  type InFlightFilter,
} from '../db/inflight.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import { decide, type ModelRow, type ModelStatus } from '../status/rules.js';
import type { StatusService } from '../status/service.js';
import { MAX_LIST_LIMIT } from '../astria/client.js';
import { shouldContinueListScan, shouldStartListScan } from './plan.js';

export interface PassDeps {
  pool: pg.Pool;
  astria: AstriaClient;
  /** Absent in a dry run: nothing may be written. */
  service: StatusService | null;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
}

export interface PassOptions {
  stuckAfterMs: number;
  trainingTimeoutMs: number;
  modelIds?: string[] | null;
  /** Concurrent database writes (stay below the pool size). */
  writeConcurrency?: number;
  signal?: AbortSignal;
  onProgress?: (progress: PassProgress) => void;
}

export interface PassProgress {
  total: number;
  checked: number;
  transitioned: number;
  failed: number;
}

export interface PassReport {
  checked: number;
  transitioned: number;
  unchanged: number;
  failed: number;
  apiCalls: number;
  durationMs: number;
  transitions: { modelId: string; from: ModelStatus; to: ModelStatus }[];
  failures: { modelId: string; reason: string }[];
  dryRun: boolean;
  plan: { listPages: number; singleGets: number };
}

const MODEL_PAGE_SIZE = 500;

/**
 * One reconciliation pass: every selected in-flight model is observed once (list scan where it is
 * cheaper, single GETs for the rest), decided by the status rules and applied through the status
 * service. Astria failures are counted per model; database and auth errors abort the pass.
 */
export async function runPass(deps: PassDeps, options: PassOptions): Promise<PassReport> {
  const started = deps.clock.now();
  const callsBefore = deps.astria.calls;
  const filter: InFlightFilter = {
    stuckBefore: options.stuckAfterMs > 0 ? new Date(started - options.stuckAfterMs) : null,
    modelIds: options.modelIds?.length ? options.modelIds : null,
  };
  const summary = await summarizeInFlight(deps.pool, filter);
  if (!filter.modelIds) deps.metrics.inflightModels.set(summary.count);

  const report: PassReport = {
    checked: 0,
    transitioned: 0,
    unchanged: 0,
    failed: 0,
    apiCalls: 0,
    durationMs: 0,
    transitions: [],
    failures: [],
    dryRun: deps.service === null,
    plan: { listPages: 0, singleGets: 0 },
  };
  const seen = new Set<string>();
  const writes = pLimit(options.writeConcurrency ?? 8);
  const progress = () => options.onProgress?.({ total: summary.count, checked: report.checked, transitioned: report.transitioned, failed: report.failed });

  const settle = async (model: ModelRow, observation: Observation): Promise<void> => {
    const transition = decide(model, observation, new Date(deps.clock.now()), { trainingTimeoutMs: options.trainingTimeoutMs });
    const statusChange = transition !== null && transition.to !== transition.from;
    if (transition && deps.service) {
      const result = await writes(() => deps.service!.apply(transition, 'reconciler'));
      if (!result.applied) {
        deps.log.debug({ modelId: model.id, from: transition.from }, 'model changed meanwhile; left to the writer that won');
        report.unchanged += 1;
        return;
      }
    }
    if (statusChange) {
      report.transitioned += 1;
      report.transitions.push({ modelId: model.id, from: transition.from, to: transition.to });
      deps.log.info({ modelId: model.id, from: transition.from, to: transition.to, dryRun: report.dryRun }, 'model status reconciled');
    } else report.unchanged += 1;
  };

  const fail = (model: ModelRow, reason: string) => {
    report.failed += 1;
    report.failures.push({ modelId: model.id, reason });
    deps.log.warn({ modelId: model.id, reason }, 'could not check model');
  };

  const check = async (model: ModelRow, observe: () => Promise<TuneResult>): Promise<void> => {
    report.checked += 1;
    if (!isTuneId(model.trainingJobId)) fail(model, `trainingJobId "${model.trainingJobId}" is not an Astria tune id`);
    else {
      const result = await observe();
      if (result.kind === 'failed') fail(model, result.reason);
      else await settle(model, result.kind === 'tune' ? { kind: 'tune', tune: result.tune } : { kind: 'gone', tuneId: result.tuneId });
    }
    progress();
  };

  if (summary.oldestTuneId !== null && shouldStartListScan(summary.checkable)) {
    await listScan(deps, options, filter, summary.oldestTuneId, summary.checkable, seen, check, report);
  }

  // Whatever the list did not show: one GET each, a keyset page of models at a time.
  for (let afterId: string | null = null; !options.signal?.aborted; ) {
    const models = await selectInFlightPage(deps.pool, filter, afterId, MODEL_PAGE_SIZE);
    if (models.length === 0) break;
    afterId = models.at(-1)!.id;
    const unseen = models.filter((model) => !seen.has(model.id));
    await Promise.all(
      unseen.map((model) =>
        check(model, () => {
          report.plan.singleGets += 1;
          return deps.astria.getTune(model.trainingJobId!, options.signal);
        }),
      ),
    );
  }

  report.apiCalls = deps.astria.calls - callsBefore;
  report.durationMs = deps.clock.now() - started;
  deps.metrics.passDuration.observe(report.durationMs / 1000);
  return report;
}

/**
 * Pages `GET /tunes` newest first down to the oldest in-flight tune, settling each page's models while
 * the next page is fetched. Stops early when the plan says single GETs are now cheaper.
 */
async function listScan(
  deps: PassDeps,
  options: PassOptions,
  filter: InFlightFilter,
  oldestTuneId: number,
  checkable: number,
  seen: Set<string>,
  check: (model: ModelRow, observe: () => Promise<TuneResult>) => Promise<void>,
  report: PassReport,
): Promise<void> {
  const settling: Promise<void>[] = [];
  // A write that fails (database gone) ends the scan; it is rethrown once the other writes settle.
  let writeError: unknown;
  let beforeId: number | null = null;
  let newestId: number | null = null;
  while (!options.signal?.aborted && writeError === undefined) {
    const page = await deps.astria.listTunes({ beforeId, limit: MAX_LIST_LIMIT }, options.signal);
    if (page.kind === 'failed') {
      deps.log.warn({ reason: page.reason }, 'tune list failed; falling back to single GETs');
      break;
    }
    report.plan.listPages += 1;
    if (page.nextBeforeId === null) break;
    newestId ??= Math.max(...page.tunes.map((tune) => tune.id), page.nextBeforeId);
    const tunes = new Map(page.tunes.filter((tune) => tune.id >= oldestTuneId).map((tune) => [tune.id, tune]));
    const models = await selectInFlightByTuneIds(deps.pool, filter, [...tunes.keys()]);
    for (const model of models) {
      if (seen.has(model.id)) continue;
      seen.add(model.id);
      const tune = tunes.get(Number(model.trainingJobId))!;
      settling.push(check(model, async () => ({ kind: 'tune', tune })).catch((error: unknown) => void (writeError ??= error)));
    }
    beforeId = page.nextBeforeId;
    const scan = { pages: report.plan.listPages, newestId, nextBeforeId: beforeId, oldestTuneId, unseenModels: checkable - seen.size };
    if (!shouldContinueListScan(scan)) break;
  }
  await Promise.all(settling);
  if (writeError !== undefined) throw writeError;
}
