import type pg from 'pg';
import type { AstriaClient } from '../astria/client.js';
import type { Clock } from '../clock.js';
import { executorFor } from '../db/drivers.js';
import { generationsTablePresent } from '../db/generations.js';
import { DEFAULT_HOST_SCHEMA, type HostSchema } from '../db/host-names.js';
import type { InFlightFilter, InFlightPage } from '../db/inflight.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { GenerationStatus } from '../status/generation-rules.js';
import type { ModelStatus } from '../status/rules.js';
import type { StatusService } from '../status/service.js';
import { DENSE_IDS_PER_PAGE } from './plan.js';
import { prompts, tunes, type HostRow, type ResourceKind, type StatusChange } from './resource.js';
import { InFlightIndex } from './inflight-index.js';
import { runRound } from './round.js';
import { OrphanMatcher, type OrphanOptions, type OrphanReport } from './orphans.js';
import type { ChangeWriter, Outcome } from './settle.js';

/** The kinds a pass may cover (`--kind`): models training tunes, generations waiting on prompts. */
export const ONCE_KINDS = ['tunes', 'prompts'] as const;
export type OnceKind = (typeof ONCE_KINDS)[number];

export interface OnceDeps {
  pool: pg.Pool;
  astria: AstriaClient;
  /** Absent in a dry run: nothing may be written. */
  service: StatusService | null;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
  /** The app's table and column names (RECONCILER_HOST_MAPPING); default vibephoto's. */
  host?: HostSchema;
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
  /** Default both. Prompts are skipped, without an error, when the app has no `generations` table. */
  kinds?: readonly OnceKind[];
}

export interface OnceProgress {
  /** The rows read so far (a pass reads and settles them a page of 2,000 at a time). */
  total: number;
  checked: number;
  transitioned: number;
  failed: number;
}

/**
 * What `--once --json` prints (with `interrupted`). The keys of the first release keep their meaning:
 * the models (tunes) of the pass, except `apiCalls` and `durationMs`, which are the whole pass (the two
 * kinds share one request budget). `prompts` is the generations' part, null when the pass did not cover
 * them (`--kind tunes`, or no `generations` table).
 */
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
  prompts: PromptPassReport | null;
}

/** The generations' part of a pass: the tunes' keys, by generation. */
export interface PromptPassReport {
  checked: number;
  transitioned: number;
  unchanged: number;
  failed: number;
  transitions: { generationId: string; from: GenerationStatus; to: GenerationStatus }[];
  failures: { generationId: string; reason: string }[];
  plan: { listPages: number; singleGets: number };
  stopped: string | null;
}


/** In-flight rows a pass reads and settles at a time: its memory is this many rows', whatever the backlog. */
const ROW_PAGE_SIZE = 2_000;

/** One kind's tally of a pass. */
interface KindTally {
  checked: number;
  transitioned: number;
  unchanged: number;
  failed: number;
  transitions: { id: string; from: string; to: string }[];
  failures: { id: string; reason: string }[];
  plan: { listPages: number; singleGets: number };
  stopped: string | null;
}

/**
 * `--once`: rounds of the engine per kind, in which every selected row is due, a page of 2,000 rows
 * each. The selected rows are read once (a row whose Astria id is no id of its kind is reported, never sent to
 * Astria), then their objects observed (list pages where cheaper, single GETs for the rest), decided
 * by the kind's rules and applied through the status service. Tunes go first, then prompts, on the
 * same client and so the same request budget. A row's failed GET or write is that row's failure; a
 * database error reading the rows and Astria's 401 are thrown.
 */
export async function reconcileOnce(deps: OnceDeps, options: OnceOptions): Promise<OnceReport> {
  const started = deps.clock.now();
  const callsBefore = deps.astria.calls;
  const kinds = options.kinds ?? ONCE_KINDS;
  const progress = { total: 0, checked: 0, transitioned: 0, failed: 0 };
  const onProgress = () => options.onProgress?.({ ...progress });
  const { service } = deps;
  const host = deps.host ?? DEFAULT_HOST_SCHEMA;

  // Models without a tune id are matched to their tunes first, so the round reconciles what was linked.
  const orphans =
    options.orphans && kinds.includes('tunes')
      ? await new OrphanMatcher(deps, { ...options.orphans, dryRun: service === null, modelIds: options.filter.modelIds, everyMs: 0 }).runIfDue(
          started,
          options.signal,
        )
      : null;
  const tuneTally = kinds.includes('tunes') ? await passOfKind(tunes(host), service, deps, options, progress, onProgress) : emptyTally();
  let promptTally: KindTally | null = null;
  if (kinds.includes('prompts')) {
    if (await generationsTablePresent(executorFor({ pool: deps.pool }), host)) {
      const writer: ChangeWriter<Parameters<StatusService['applyGeneration']>[0]> | null = service && {
        apply: (transition, source) => service.applyGeneration(transition, source),
      };
      promptTally = await passOfKind(prompts(host), writer, deps, options, progress, onProgress);
    } else deps.log.info('no generations table: prompts are not reconciled');
  }

  const report: OnceReport = {
    checked: tuneTally.checked,
    transitioned: tuneTally.transitioned,
    unchanged: tuneTally.unchanged,
    failed: tuneTally.failed,
    apiCalls: deps.astria.calls - callsBefore,
    durationMs: deps.clock.now() - started,
    transitions: tuneTally.transitions.map(({ id, from, to }) => ({ modelId: id, from: from as ModelStatus, to: to as ModelStatus })),
    failures: tuneTally.failures.map(({ id, reason }) => ({ modelId: id, reason })),
    dryRun: service === null,
    plan: tuneTally.plan,
    stopped: tuneTally.stopped,
    orphans,
    prompts: promptTally && {
      checked: promptTally.checked,
      transitioned: promptTally.transitioned,
      unchanged: promptTally.unchanged,
      failed: promptTally.failed,
      transitions: promptTally.transitions.map(({ id, from, to }) => ({ generationId: id, from: from as GenerationStatus, to: to as GenerationStatus })),
      failures: promptTally.failures.map(({ id, reason }) => ({ generationId: id, reason })),
      plan: promptTally.plan,
      stopped: promptTally.stopped,
    },
  };
  deps.metrics.passDuration.observe(report.durationMs / 1000);
  return report;
}

function emptyTally(): KindTally {
  return { checked: 0, transitioned: 0, unchanged: 0, failed: 0, transitions: [], failures: [], plan: { listPages: 0, singleGets: 0 }, stopped: null };
}

/** One kind's rounds: its selected rows read once, a page at a time, their objects observed, each row settled; the not-found guard judges each page's 404s. */
async function passOfKind<Row extends HostRow, Remote, Change extends StatusChange>(
  kind: ResourceKind<Row, Remote, Change>,
  writer: ChangeWriter<Change> | null,
  deps: OnceDeps,
  options: OnceOptions,
  progress: OnceProgress,
  onProgress: () => void,
): Promise<KindTally> {
  const { filter } = options;
  const tally = emptyTally();
  const record = (rowId: string, outcome: Outcome) => {
    tally.checked += 1;
    progress.checked += 1;
    if (outcome.kind === 'observed' && outcome.to !== outcome.from) {
      tally.transitioned += 1;
      progress.transitioned += 1;
      tally.transitions.push({ id: rowId, from: outcome.from, to: outcome.to });
    } else if (outcome.kind === 'failed' || outcome.kind === 'unobserved') {
      tally.failed += 1;
      progress.failed += 1;
      tally.failures.push({ id: rowId, reason: outcome.reason });
      // A failed write was logged by the write itself.
      if (outcome.kind === 'unobserved') deps.log.warn({ [`${kind.rowName}Id`]: rowId, reason: outcome.reason }, `could not check ${kind.rowName}`);
    } else tally.unchanged += 1;
    onProgress();
  };

  // A round per keyset page of rows, newest Astria id first: the pass holds one page's rows, and each
  // page's list walk starts about where the one before ended (a page of the list read twice at most).
  let total = 0;
  let idsPerPage = DENSE_IDS_PER_PAGE;
  for (let after: InFlightPage['after'] = null; ; ) {
    const refs = await kind.inFlight.refs(deps.pool, filter, { limit: ROW_PAGE_SIZE, after });
    total += refs.length;
    progress.total += refs.length;
    const rows = new InFlightIndex<Row>();
    for (const ref of refs) {
      const remoteId = kind.parseRemoteId(ref.remoteId);
      if (remoteId !== null) {
        rows.add({ row: ref.row, remoteId, parentRemoteId: ref.parentRemoteId ?? null });
        continue;
      }
      const reason = kind.badRemoteId(ref.remoteId);
      deps.log.warn({ [`${kind.rowName}Id`]: ref.id, reason }, `could not check ${kind.rowName}`);
      record(ref.id, { kind: 'failed', reason });
    }
    const round = await runRound(kind, { ...deps, writer }, {
      items: rows.remoteIds().map((id) => ({ id, weight: 1 })),
      rows,
      // Failed rows are selected only when an operator names them.
      rules: { trainingTimeoutMs: options.trainingTimeoutMs, healAnyError: filter.includeError },
      idsPerPage,
      concurrency: options.concurrency,
      maxNotFoundShare: options.maxNotFoundShare ?? 0.5,
      listPages: options.plan !== 'single-gets',
      signal: options.signal,
      onOutcome: (row, outcome) => record(row.id, outcome),
    });
    idsPerPage = round.idsPerPage;
    tally.plan.listPages += round.listPages;
    tally.plan.singleGets += round.singleGets;
    tally.stopped = round.incomplete !== null ? `${round.incomplete}; no ${kind.rowName} was checked` : (round.notFoundRefused?.reason ?? null);
    if (round.listFailed !== null) deps.log.warn({ reason: round.listFailed }, `${kind.name} list failed; falling back to single GETs`);
    const last = refs.at(-1);
    if (tally.stopped || round.interrupted || refs.length < ROW_PAGE_SIZE || !last) break;
    after = { remoteId: last.remoteId, id: last.id };
  }
  if (!filter.modelIds && kind.name === tunes.name) deps.metrics.inflightModels.set(total);
  if (tally.stopped) deps.log.error({ kind: kind.name, reason: tally.stopped }, 'pass stopped');
  return tally;
}
