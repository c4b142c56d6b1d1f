import type { Writable } from 'node:stream';
import { operatorFilter } from '../db/inflight.js';
import { reconcileOnce, type OnceKind, type OnceProgress, type OnceReport } from '../reconciler/once.js';
import type { OrphanReport } from '../reconciler/orphans.js';
import type { Runtime } from './runtime.js';

export interface OnceOptions {
  modelIds: string[];
  /** Default both. */
  kinds?: readonly OnceKind[];
  stuckAfterMs: number;
  json: boolean;
  signal: AbortSignal;
  stdout: Writable;
  /** Where the live progress line goes; only when it is a terminal. */
  progressTo: (Writable & { isTTY?: boolean }) | null;
}

/** `--once`: one round in which every selected model is due, its report printed; exit code 3 when some models could not be checked. */
export async function runOnce(runtime: Runtime, options: OnceOptions): Promise<number> {
  const progressLine = options.progressTo?.isTTY ? createProgressLine(options.progressTo) : null;
  const report = await reconcileOnce(runtime, {
    filter: operatorFilter(runtime.clock.now(), options.stuckAfterMs, options.modelIds),
    trainingTimeoutMs: runtime.config.trainingTimeoutMs,
    concurrency: runtime.config.astria.concurrency,
    maxNotFoundShare: runtime.config.maxNotFoundShare,
    signal: options.signal,
    onProgress: progressLine?.update,
    orphans: { windowMs: runtime.config.orphanWindowMs, titleTemplate: runtime.config.tuneTitleTemplate },
    ...(options.kinds ? { kinds: options.kinds } : {}),
  });
  progressLine?.clear();
  const interrupted = options.signal.aborted;
  options.stdout.write(options.json ? `${JSON.stringify({ ...report, interrupted })}\n` : formatSummary(report, interrupted));
  const incomplete = report.failed > 0 || report.stopped !== null || (report.prompts !== null && (report.prompts.failed > 0 || report.prompts.stopped !== null));
  return incomplete || interrupted ? 3 : 0;
}

function formatSummary(report: OnceReport, interrupted: boolean): string {
  const lines: string[] = [];
  const seconds = (report.durationMs / 1000).toFixed(1);
  lines.push(
    `${report.dryRun ? 'Dry run: ' : ''}checked ${report.checked} in-flight model${report.checked === 1 ? '' : 's'} in ${seconds}s ` +
      `with ${report.apiCalls} Astria call${report.apiCalls === 1 ? '' : 's'} ` +
      `(${report.plan.listPages} list page${report.plan.listPages === 1 ? '' : 's'}, ${report.plan.singleGets} single GET${report.plan.singleGets === 1 ? '' : 's'})`,
  );
  lines.push(
    `  ${report.dryRun ? 'would transition' : 'transitioned'} ${report.transitioned}, unchanged ${report.unchanged}, could not check ${report.failed}`,
  );
  for (const { modelId, from, to } of report.transitions) lines.push(`  ${modelId}  ${from} → ${to}`);
  for (const { modelId, reason } of report.failures) lines.push(`  ${modelId}  not checked: ${reason}`);
  if (report.orphans) lines.push(...formatOrphans(report.orphans, report.dryRun));
  if (report.stopped) lines.push(`Pass stopped: ${report.stopped}`);
  if (report.failed > 0) lines.push('Some models could not be checked; it is safe to run again.');
  const generations = report.prompts;
  if (generations) {
    lines.push(
      `${report.dryRun ? 'Dry run: ' : ''}checked ${generations.checked} in-flight generation${generations.checked === 1 ? '' : 's'} ` +
        `(${generations.plan.listPages} list page${generations.plan.listPages === 1 ? '' : 's'}, ${generations.plan.singleGets} single GET${generations.plan.singleGets === 1 ? '' : 's'})`,
      `  ${report.dryRun ? 'would transition' : 'transitioned'} ${generations.transitioned}, unchanged ${generations.unchanged}, could not check ${generations.failed}`,
    );
    for (const { generationId, from, to } of generations.transitions) lines.push(`  ${generationId}  ${from} → ${to}`);
    for (const { generationId, reason } of generations.failures) lines.push(`  ${generationId}  not checked: ${reason}`);
    if (generations.stopped) lines.push(`Generations pass stopped: ${generations.stopped}`);
    if (generations.failed > 0) lines.push('Some generations could not be checked; it is safe to run again.');
  }
  if (interrupted) lines.push('Interrupted before the pass finished; it is safe to run again.');
  return `${lines.join('\n')}\n`;
}

/** Models without a tune id: shown only when there were some. */
function formatOrphans(orphans: OrphanReport, dryRun: boolean): string[] {
  const { linked, ambiguous, unmatched, raced, incomplete } = orphans;
  if (linked.length + ambiguous.length + unmatched.length + raced === 0 && incomplete === null) return [];
  const lines = [
    `Models without a tune id: ${dryRun ? 'would link' : 'linked'} ${linked.length}, ambiguous ${ambiguous.length}, unmatched ${unmatched.length}` +
      (raced > 0 ? `, saved by the app meanwhile ${raced}` : '') +
      ` (${orphans.listPages} list page${orphans.listPages === 1 ? '' : 's'})`,
  ];
  for (const { modelId, tuneId } of linked) lines.push(`  ${modelId}  → tune ${tuneId}`);
  for (const { modelId, tuneIds } of ambiguous) lines.push(`  ${modelId}  matches tunes ${tuneIds.join(', ')}: none linked`);
  if (incomplete !== null) lines.push(`  not matched: ${incomplete}`);
  return lines;
}

function createProgressLine(stream: Writable) {
  let lastWrite = 0;
  return {
    update(progress: OnceProgress) {
      const now = Date.now();
      if (now - lastWrite < 100 && progress.checked < progress.total) return;
      lastWrite = now;
      stream.write(`\r\x1b[Kchecked ${progress.checked}/${progress.total} · ${progress.transitioned} transitioned · ${progress.failed} failed`);
    },
    clear() {
      stream.write('\r\x1b[K');
    },
  };
}
