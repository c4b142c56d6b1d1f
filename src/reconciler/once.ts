import type pg from 'pg';
import type { AstriaClient } from '../astria/client.js';
import type { Clock } from '../clock.js';
import type { InFlightFilter } from '../db/inflight.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { ModelStatus } from '../status/rules.js';
import type { StatusService } from '../status/service.js';
import { DENSE_IDS_PER_PAGE, type PagePlanItem } from './plan.js';
import { tunes } from './resource.js';
import { runRound } from './round.js';
import { OrphanMatcher, type OrphanOptions, type OrphanReport } from './orphans.js';
import type { Outcome } from './settle.js';

export interface OnceDeps {
  pool: pg.Pool;
  astria: AstriaClient;
  /** Absent in a dry run: nothing may be written. */
  service: StatusService | null;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
}

export interface OnceOptions {
  /** Which models: in flight (optionally only these ids, optionally ERROR too), stuck for this long. */
  filter: InFlightFilter;
  trainingTimeoutMs: number;
  /** Astria requests in flight at once. */
  concurrency: number;
  /** `single-gets` skips the list pages (benchmarks compare the two). */
  plan?: 'auto' | 'single-gets';
  /**
   * Aborting stops the round: no new check starts, and Astria calls under way or queued (budget waits,
   * retries) are cut short; database writes under way finish.
   */
  signal?: AbortSignal;
  /** `RECONCILER_MAX_NOT_FOUND_SHARE` (default 0.5). */
  maxNotFoundShare?: number;
  onProgress?: (progress: OnceProgress) => void;
  /** Match models without a tune id to their tunes first (the named models only, when the filter names some). */
  orphans?: Pick<OrphanOptions, 'windowMs' | 'titleTemplate'>;
}

export interface OnceProgress {
  total: number;
  checked: number;
  transitioned: number;
  failed: number;
}

/** What `--once --json` prints (with `interrupted`). */
export interface OnceReport {
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
  /** Why the round stopped before applying everything it saw (a wrong endpoint), null when it did not. */
  stopped: string | null;
  /** Models without a tune id matched before the round (null when not asked); in a dry run, what would be linked. */
  orphans: OrphanReport | null;
}

/** Keyset page of in-flight rows read at a time: only their Astria ids are kept for the round. */
const ROW_PAGE_SIZE = 2_000;

/**
 * `--once`: one round of the engine in which every selected model is due. The selected rows are read
 * in keyset pages (a model whose `trainingJobId` is no tune id is reported, never sent to Astria), then
 * their tunes observed (list pages where cheaper, single GETs for the rest), decided by the status
 * rules and applied through the status service. A model's failed GET or write is that model's
 * failure; a database error reading the rows and Astria's 401 are thrown.
 */
export async function reconcileOnce(deps: OnceDeps, options: OnceOptions): Promise<OnceReport> {
  const { filter } = options;
  const started = deps.clock.now();
  const callsBefore = deps.astria.calls;
  const report: OnceReport = {
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
    stopped: null,
    orphans: null,
  };
  if (options.orphans) {
    const matcher = new OrphanMatcher(deps, { ...options.orphans, dryRun: deps.service === null, modelIds: filter.modelIds, everyMs: 0 });
    report.orphans = await matcher.runIfDue(started, options.signal);
  }
  let total = 0;
  const record = (modelId: string, outcome: Outcome) => {
    report.checked += 1;
    if (outcome.kind === 'observed' && outcome.to !== outcome.from) {
      report.transitioned += 1;
      report.transitions.push({ modelId, from: outcome.from as ModelStatus, to: outcome.to as ModelStatus });
    } else if (outcome.kind === 'failed' || outcome.kind === 'unobserved') {
      report.failed += 1;
      report.failures.push({ modelId, reason: outcome.reason });
      // A failed write was logged by the write itself.
      if (outcome.kind === 'unobserved') deps.log.warn({ modelId, reason: outcome.reason }, 'could not check model');
    } else report.unchanged += 1;
    options.onProgress?.({ total, checked: report.checked, transitioned: report.transitioned, failed: report.failed });
  };

  const due = new Set<number>();
  for (let afterId: string | null = null; ; ) {
    const page = await tunes.inFlight.refs(deps.pool, filter, afterId, ROW_PAGE_SIZE);
    total += page.length;
    for (const ref of page) {
      const tuneId = tunes.parseRemoteId(ref.remoteId);
      if (tuneId !== null) {
        due.add(tuneId);
        continue;
      }
      const reason = tunes.badRemoteId(ref.remoteId);
      deps.log.warn({ modelId: ref.id, reason }, 'could not check model');
      record(ref.id, { kind: 'failed', reason });
    }
    if (page.length < ROW_PAGE_SIZE) break;
    afterId = page.at(-1)!.id;
  }
  if (!filter.modelIds) deps.metrics.inflightModels.set(total);
  const items: PagePlanItem[] = [...due].map((id) => ({ id, weight: 1 }));
  due.clear();

  const round = await runRound(tunes, { ...deps, writer: deps.service }, {
    items,
    filter,
    // ERROR models are selected only when an operator names them.
    rules: { trainingTimeoutMs: options.trainingTimeoutMs, healAnyError: filter.includeError },
    idsPerPage: DENSE_IDS_PER_PAGE,
    concurrency: options.concurrency,
    maxNotFoundShare: options.maxNotFoundShare ?? 0.5,
    listPages: options.plan !== 'single-gets',
    signal: options.signal,
    onOutcome: (row, outcome) => record(row.id, outcome),
  });
  report.plan = { listPages: round.listPages, singleGets: round.singleGets };
  report.stopped = round.incomplete !== null ? `${round.incomplete}; no model was checked` : (round.notFoundRefused?.reason ?? null);
  if (round.listFailed !== null) deps.log.warn({ reason: round.listFailed }, 'tune list failed; falling back to single GETs');
  if (report.stopped) deps.log.error({ reason: report.stopped }, 'pass stopped');
  report.apiCalls = deps.astria.calls - callsBefore;
  report.durationMs = deps.clock.now() - started;
  deps.metrics.passDuration.observe(report.durationMs / 1000);
  return report;
}
