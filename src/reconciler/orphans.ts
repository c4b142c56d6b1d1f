import type pg from 'pg';
import type { AstriaClient } from '../astria/client.js';
import { parseTimestamp, type Tune } from '../astria/tune.js';
import type { Clock } from '../clock.js';
import { TITLE_MODEL_ID } from '../config.js';
import { DEFAULT_HOST_SCHEMA, type HostSchema } from '../db/host-names.js';
import { linkOrphan, modelsHoldingTunes, selectOrphans, type OrphanRow } from '../db/orphans.js';
import { callbackUrlParams } from '../http/callback.js';
import type { Logger } from '../log.js';
import type { Metrics, OrphanOutcome } from '../metrics.js';

/**
 * Orphans: models training at Astria whose tune id the app never saved. Each is matched to its tune
 * on Astria's list, newest first, down to a little before the oldest orphan was created (the app
 * writes its row before it creates the tune): by the tune's callback URL naming the model
 * (`model=<id>`), else by the title the app gives its tunes (`ASTRIA_TUNE_TITLE`); a tune another model
 * already holds is no candidate (it is that model's training). One candidate: its
 * id is saved by compare-and-set, and the model is in flight like any other from then on. Several: none
 * is linked (saving the wrong tune would show someone else's training). No orphan: no call.
 */

export interface OrphanDeps {
  pool: pg.Pool;
  astria: AstriaClient;
  log: Logger;
  clock: Clock;
  metrics: Metrics;
  /** The app's table and column names (RECONCILER_HOST_MAPPING); default vibephoto's. */
  host?: HostSchema;
}

export interface OrphanOptions {
  /** `RECONCILER_ORPHAN_WINDOW`: rows created longer ago are left alone. */
  windowMs: number;
  /** `ASTRIA_TUNE_TITLE`; undefined = no title matching. */
  titleTemplate: string | undefined;
  /** True: nothing is written; the report says what would be linked. */
  dryRun: boolean;
  /** Only these models (an operator naming them); null = every orphan. */
  modelIds?: string[] | null;
  signal?: AbortSignal;
}

/** What one matching run found (`--once --json` prints it as `orphans`). */
export interface OrphanReport {
  /** Linked (or, in a dry run, would be). */
  linked: { modelId: string; tuneId: number }[];
  /** Several tunes matched: none was linked. */
  ambiguous: { modelId: string; tuneIds: number[] }[];
  /** No tune matched (yet: the tune may not be on Astria's list until the app's call completes). */
  unmatched: { modelId: string }[];
  /** The app saved a tune id (or changed the status) between our read and our write: ours was not written. */
  raced: number;
  listPages: number;
  /** Why the run could not see every tune it had to (a list page failed); nothing was linked or counted then. */
  incomplete: string | null;
}

/** How far below the oldest orphan's `createdAt` the list is read: the app's clock and Astria's may disagree. */
const CREATED_AT_SLACK_MS = 5 * 60_000;

/** Matches the orphans to tunes and links those with exactly one candidate. Throws what the client throws (Astria's 401, the signal's reason). */
export async function linkOrphans(deps: OrphanDeps, options: OrphanOptions): Promise<OrphanReport> {
  const report: OrphanReport = { linked: [], ambiguous: [], unmatched: [], raced: 0, listPages: 0, incomplete: null };
  const orphans = await selectOrphans(deps.pool, deps.host ?? DEFAULT_HOST_SCHEMA, options.windowMs, options.modelIds ?? null);
  if (orphans.length === 0) return report;

  const byId = new Map(orphans.map((orphan) => [orphan.id, orphan]));
  const byTitle = new Map(options.titleTemplate === undefined ? [] : orphans.map((orphan) => [titleOf(options.titleTemplate!, orphan.id), orphan.id]));
  const byCallback = new Map<string, Set<number>>();
  const byTitleMatch = new Map<string, Set<number>>();
  const add = (candidates: Map<string, Set<number>>, modelId: string, tuneId: number) => {
    const set = candidates.get(modelId) ?? new Set<number>();
    candidates.set(modelId, set.add(tuneId));
  };
  const stopBelow = Math.min(...orphans.map((orphan) => orphan.createdAt)) - CREATED_AT_SLACK_MS;

  for (let beforeId: number | null = null; ; ) {
    const page = await deps.astria.listTunes({ beforeId }, options.signal);
    if (page.kind === 'failed') {
      report.incomplete = page.reason;
      deps.log.warn({ reason: page.reason, orphans: orphans.length }, 'tune list failed; orphans are matched next time');
      return report;
    }
    report.listPages += 1;
    let oldestOnPage = Infinity;
    for (const tune of page.tunes) {
      const modelId = callbackModelId(tune);
      if (modelId !== null && byId.has(modelId)) add(byCallback, modelId, tune.id);
      const titled = typeof tune.title === 'string' ? byTitle.get(tune.title) : undefined;
      if (titled !== undefined) add(byTitleMatch, titled, tune.id);
      const createdAt = typeof tune.created_at === 'string' ? parseTimestamp(tune.created_at) : null;
      if (createdAt !== null) oldestOnPage = Math.min(oldestOnPage, createdAt.getTime());
    }
    // Paging ends on an empty page (a short one may be Astria's own page size), or below the orphans' time.
    if (page.nextBeforeId === null || oldestOnPage < stopBelow) break;
    beforeId = page.nextBeforeId;
  }

  const matched = [...byCallback.values(), ...byTitleMatch.values()].flatMap((tuneIds) => [...tuneIds]);
  const holders = await modelsHoldingTunes(deps.pool, deps.host ?? DEFAULT_HOST_SCHEMA, [...new Set(matched)]);
  const free = (modelId: string, tuneIds: Set<number> | undefined) => {
    const left = [...(tuneIds ?? [])].filter((tuneId) => {
      const holder = holders.get(tuneId);
      if (holder !== undefined) deps.log.warn({ modelId, tuneId, heldBy: holder }, 'tune matching a model without a tune id belongs to another model; not linked');
      return holder === undefined;
    });
    return left.length > 0 ? left : null;
  };
  for (const orphan of orphans) {
    // The callback URL names the model outright; the title is the app's convention, tried only without it.
    const candidates = free(orphan.id, byCallback.get(orphan.id)) ?? free(orphan.id, byTitleMatch.get(orphan.id)) ?? [];
    if (candidates.length === 0) report.unmatched.push({ modelId: orphan.id });
    else if (candidates.length > 1) {
      report.ambiguous.push({ modelId: orphan.id, tuneIds: candidates.sort((a, b) => b - a) });
      deps.log.warn({ modelId: orphan.id, tuneIds: candidates }, 'model without a tune id matches several tunes; none linked');
    } else await link(deps, options, orphan, candidates[0]!, report);
  }
  return report;
}

async function link(deps: OrphanDeps, options: OrphanOptions, orphan: OrphanRow, tuneId: number, report: OrphanReport): Promise<void> {
  if (!options.dryRun && !(await linkOrphan(deps.pool, deps.host ?? DEFAULT_HOST_SCHEMA, orphan.id, tuneId, orphan.status))) {
    report.raced += 1;
    deps.log.info({ modelId: orphan.id, tuneId }, 'model got its tune id (or a new status) from the app meanwhile; not linked');
    return;
  }
  report.linked.push({ modelId: orphan.id, tuneId });
  if (!options.dryRun) deps.log.info({ modelId: orphan.id, tuneId }, 'model without a tune id linked to its tune');
}

/** The `model` parameter of the tune's callback URL, or null. The URL carries the webhook's secret: it is never logged. */
function callbackModelId(tune: Tune): string | null {
  if (typeof tune.callback !== 'string' || !URL.canParse(tune.callback)) return null;
  return callbackUrlParams(new URL(tune.callback).searchParams).modelId ?? null;
}

function titleOf(template: string, modelId: string): string {
  return template.replaceAll(TITLE_MODEL_ID, modelId);
}

/**
 * The orphans' matching as a loop runs it: every `everyMs`, each model's outcome counted in
 * `orphans_total` when it is new for that model (a model unmatched for hours counts once, not at
 * every run). A run that could not see every tune counts nothing.
 */
export class OrphanMatcher {
  private counted = new Map<string, OrphanOutcome>();
  private nextAt = 0;

  constructor(
    private readonly deps: OrphanDeps,
    private readonly options: Omit<OrphanOptions, 'signal'> & { everyMs: number },
  ) {}

  /** Runs when due; returns the run's report, null when none was due. */
  async runIfDue(now: number, signal?: AbortSignal): Promise<OrphanReport | null> {
    if (now < this.nextAt) return null;
    this.nextAt = now + this.options.everyMs;
    const report = await linkOrphans(this.deps, { ...this.options, signal });
    if (report.incomplete === null) this.count(report);
    return report;
  }

  /** A follower forgets: a new leader matches at once. */
  forget(): void {
    this.nextAt = 0;
  }

  private count(report: OrphanReport): void {
    const outcomes = new Map<string, OrphanOutcome>();
    for (const { modelId } of report.linked) outcomes.set(modelId, 'linked');
    for (const { modelId } of report.ambiguous) outcomes.set(modelId, 'ambiguous');
    for (const { modelId } of report.unmatched) outcomes.set(modelId, 'unmatched');
    for (const [modelId, outcome] of outcomes) if (this.counted.get(modelId) !== outcome) this.deps.metrics.orphans.inc({ outcome });
    this.counted = outcomes;
  }
}
