import type pg from 'pg';
import { AstriaAuthError, createAstriaClient } from '../astria/client.js';
import { isTuneId } from '../astria/tune.js';
import { systemClock } from '../clock.js';
import type { Config } from '../config.js';
import { withDiagnosisReader, type DiagnosisReader } from '../db/diagnosis.js';
import type { Logger } from '../log.js';
import { createMetrics } from '../metrics.js';
import { diagnoseModel, type AstriaLookup } from '../diagnose/model.js';
import { formatAgo, type Diagnosis, type Verdict } from '../diagnose/types.js';
import type { DiagnoseCommand } from './args.js';

const EXIT = { settled: 0, usage: 2, broken: 3 } as const;

/** `diagnose` asks Astria when a key is configured and `--no-astria` is not given. */
export function diagnoseAsksAstria(command: DiagnoseCommand, env: Record<string, string | undefined>): boolean {
  return command.id !== null && !command.noAstria && Boolean(env.ASTRIA_API_KEY || env.ASTRIA_API_KEY_FILE);
}

interface Context {
  reader: DiagnosisReader;
  config: Config;
  /** One GET of the tune; null when Astria is not asked. */
  askAstria: ((tuneId: string) => Promise<AstriaLookup>) | null;
}

/**
 * One kind of object `diagnose` knows, in lookup order: the first kind that finds the id wins. Models
 * come first (by model id, then by tune id); generations (image prompts, by id or Astria prompt id)
 * after, when the app has a `generations` table. Each kind has its own verdict codes.
 */
interface SubjectKind {
  /** What an id of this kind looks like, for the "no such id" message. */
  describe: string;
  find(context: Context, id: string): Promise<Diagnosis[]>;
}

const modelKind: SubjectKind = {
  describe: 'a model id (ai_models.id) or a tune id (digits: ai_models.trainingJobId)',
  async find(context, id) {
    const byId = await context.reader.modelById(id);
    const models = byId ? [byId] : isTuneId(id) ? await context.reader.modelsByTuneId(id) : [];
    const diagnoses: Diagnosis[] = [];
    for (const model of models) {
      const records = await context.reader.records(model);
      const asks = context.askAstria !== null && model.aiProvider === 'astria' && isTuneId(model.trainingJobId);
      const astria = asks ? await context.askAstria!(model.trainingJobId!) : null;
      diagnoses.push(
        diagnoseModel({
          model,
          records,
          astria,
          now: context.reader.now,
          stuckAfterMs: context.config.stuckAfterMs,
          callbackGraceMs: context.config.callbackGraceMs,
        }),
      );
    }
    return diagnoses;
  },
};

const GENERATION_VERDICTS: Record<string, Omit<Verdict, 'message'>> = {
  COMPLETED: { code: 'generation_completed', next: "nothing on our side is wrong: look at the browser's stream", broken: false },
  FAILED: { code: 'generation_failed', next: 'nothing to recover; the user retries the generation', broken: false },
};

/** Generations: the row only, read-only; their callbacks and events are not recorded by this product yet. */
const generationKind: SubjectKind = {
  describe: 'a generation id or an Astria prompt id (generations.jobId)',
  async find(context, id) {
    const rows = (await context.reader.generation(id)) ?? [];
    return rows.map((row) => {
      const status = String(row.status ?? 'unknown');
      const known = GENERATION_VERDICTS[status];
      const verdict: Verdict = known
        ? { ...known, message: `generation ${String(row.id)} is ${status}` }
        : {
            code: 'generation_in_flight',
            message: `generation ${String(row.id)} is ${status} (prompt ${String(row.jobId ?? '-')}); this version records no prompt callbacks to judge it by`,
            next: `ask Astria about prompt ${String(row.jobId ?? '-')}`,
            broken: false,
          };
      return { kind: 'generation' as const, id: String(row.id), now: context.reader.now, row, astria: null, timeline: [], verdict };
    });
  },
};

const KINDS: SubjectKind[] = [modelKind, generationKind];

/**
 * `diagnose <id>` and `diagnose --stuck`: reads everything in one read-only transaction, asks Astria
 * once per model (unless `--no-astria`), prints the diagnosis and returns the exit code: 0 healthy or
 * settled, 3 a link broken, 2 an id that names nothing.
 */
export async function runDiagnose(
  pool: pg.Pool,
  config: Config,
  command: DiagnoseCommand,
  options: { askAstria: boolean; log: Logger; stdout: NodeJS.WritableStream },
): Promise<number> {
  const astria = options.askAstria
    ? createAstriaClient({
        ...config.astria,
        log: options.log,
        metrics: createMetrics(),
        clock: systemClock,
        // An operator waits at the terminal: one retry, not the daemon's patience.
        retry: { attempts: 2, baseDelayMs: 500, maxDelayMs: 2_000 },
      })
    : null;
  const askAstria = astria
    ? async (tuneId: string): Promise<AstriaLookup> => {
        try {
          const result = await astria.getTune(tuneId);
          return result.kind === 'tune' ? result : result.kind === 'gone' ? { kind: 'gone' } : { kind: 'failed', reason: result.reason };
        } catch (error) {
          if (error instanceof AstriaAuthError) return { kind: 'failed', reason: error.message };
          throw error;
        }
      }
    : null;
  try {
    return await withDiagnosisReader(pool, config.schema, config.host, async (reader) => {
      const context: Context = { reader, config, askAstria };
      if (command.id === null) return stuck(context, command, options.stdout);
      for (const kind of KINDS) {
        const diagnoses = await kind.find(context, command.id);
        if (diagnoses.length === 0) continue;
        for (const diagnosis of diagnoses) options.stdout.write(command.json ? `${toJson(diagnosis)}\n` : formatDiagnosis(diagnosis));
        return diagnoses.some((diagnosis) => diagnosis.verdict.broken) ? EXIT.broken : EXIT.settled;
      }
      const unknown = await unknownId(context, command.id);
      options.stdout.write(command.json ? `${toJson(unknown)}\n` : formatDiagnosis(unknown));
      return EXIT.usage;
    });
  } finally {
    await astria?.close();
  }
}

/** The verdict on an id no kind found, with the kind it most likely is. */
async function unknownId(context: Context, id: string): Promise<Diagnosis> {
  const { similarModelIds, loggedEvents } = await context.reader.nearMisses(id);
  const hints: string[] = [];
  if (loggedEvents > 0) hints.push(`our event log holds ${loggedEvents} event(s) for a model "${id}": the row was deleted from ai_models`);
  if (similarModelIds.length > 0) hints.push(`model ids close to it: ${similarModelIds.join(', ')}`);
  if (isTuneId(id)) {
    const prompts = (await context.reader.generation(id)) === null ? ' (this database has no generations table, so it is no prompt of ours either)' : '';
    hints.push(`digits are a tune id or a prompt id: no model trains tune ${id}${prompts}; Astria's prompt ids and tune ids are separate sequences`);
  } else if (hints.length === 0) {
    hints.push(`it looks like a model id (tune and prompt ids are digits): check it was copied whole, and that DATABASE_URL names the app's database`);
  }
  return {
    kind: 'model',
    id,
    now: context.reader.now,
    row: null,
    astria: null,
    timeline: [],
    verdict: {
      code: 'unknown_id',
      message: `nothing has id "${id}": looked for ${KINDS.map((kind) => kind.describe).join('; then ')}`,
      next: hints.join('; '),
      broken: false,
    },
  };
}

/** `--stuck`: in flight past the eta plus RECONCILER_STUCK_AFTER, or with a broken link, newest first. Database only: Astria is not asked. */
async function stuck(context: Context, command: DiagnoseCommand, stdout: NodeJS.WritableStream): Promise<number> {
  const ids = await context.reader.stuckCandidates({ stuckAfterMs: context.config.stuckAfterMs, limit: command.limit + 1 });
  const listed: Diagnosis[] = [];
  for (const id of ids.slice(0, command.limit)) {
    const model = await context.reader.modelById(id);
    if (!model) continue; // a deleted model whose delivery is parked: nothing a user waits on
    const records = await context.reader.records(model);
    const diagnosis = diagnoseModel({ model, records, astria: null, now: context.reader.now, stuckAfterMs: context.config.stuckAfterMs, callbackGraceMs: context.config.callbackGraceMs });
    if (diagnosis.verdict.broken) listed.push(diagnosis);
  }
  const more = ids.length > command.limit;
  if (command.json) {
    const items = listed.map((d) => ({ id: d.id, status: (d.row as { status: string }).status, updatedAt: (d.row as { updatedAt: string | null }).updatedAt, code: d.verdict.code, message: d.verdict.message }));
    stdout.write(`${JSON.stringify({ now: context.reader.now, limit: command.limit, more, items })}\n`);
  } else if (listed.length === 0) {
    stdout.write('nothing stuck: no model in flight past its eta plus RECONCILER_STUCK_AFTER, no broken link found in the database\n');
  } else {
    for (const d of listed) {
      const row = d.row as { status: string; trainingJobId: string | null; updatedAt: string | null };
      stdout.write(`${d.verdict.code.padEnd(16)}  ${d.id}  ${row.status}  tune ${row.trainingJobId ?? '-'}  updated ${row.updatedAt ? formatAgo(row.updatedAt, d.now) : '-'}  ${d.verdict.message}\n`);
    }
    if (more) stdout.write(`(more not shown: raise --limit, now ${command.limit})\n`);
  }
  return listed.length > 0 ? EXIT.broken : EXIT.settled;
}

function toJson(diagnosis: Diagnosis): string {
  const { broken: _broken, ...verdict } = diagnosis.verdict;
  return JSON.stringify({ kind: diagnosis.kind, id: diagnosis.id, now: diagnosis.now, row: diagnosis.row, astria: diagnosis.astria, timeline: diagnosis.timeline, verdict });
}

function formatDiagnosis(d: Diagnosis): string {
  const lines: string[] = [];
  if (d.row && d.kind === 'model') {
    const row = d.row as Record<string, unknown>;
    const ago = (at: unknown) => (typeof at === 'string' ? `${at} (${formatAgo(at, d.now)})` : '-');
    lines.push(
      `Model ${d.id} (user ${String(row.userId)}), as the app sees it:`,
      `  status ${String(row.status)}  progress ${String(row.progress)}%  tune ${String(row.trainingJobId ?? '-')}  aiProvider ${String(row.aiProvider ?? '-')}  estimatedTime ${row.estimatedTime === null ? '-' : `${String(row.estimatedTime)} min`}`,
      `  trainedAt ${ago(row.trainedAt)}  updatedAt ${ago(row.updatedAt)}  createdAt ${ago(row.createdAt)}`,
    );
    if (row.errorMessage) lines.push(`  errorMessage ${String(row.errorMessage)}`);
  } else if (d.row) {
    lines.push(`Generation ${d.id}:`, `  ${JSON.stringify(d.row)}`);
  }
  if (d.astria) {
    const a = d.astria;
    if (a.reason) lines.push(`Astria: ${a.state}: ${a.reason}`);
    else {
      const failure = [a.status, a.errorMessage, a.error].filter((v) => v !== null && v !== undefined).map((v) => (typeof v === 'string' ? v : JSON.stringify(v)));
      lines.push(
        `Astria's view of tune ${a.id}: ${a.state}${failure.length > 0 ? ` (${failure.join(': ')})` : ''}`,
        `  created_at ${a.createdAt ?? '-'}  started_training_at ${a.startedTrainingAt ?? '-'}  eta ${a.eta ?? '-'}  trained_at ${a.trainedAt ?? '-'}`,
      );
      if (a.callback) lines.push(`  callback ${a.callback}`);
    }
  } else if (d.row && d.kind === 'model') {
    lines.push(`Astria: not asked (no ASTRIA_API_KEY, --no-astria, or not an Astria tune)`);
  }
  if (d.timeline.length > 0) {
    lines.push(`Timeline (UTC, oldest first; Astria's times by Astria's clock, the rest by ours):`);
    for (const entry of d.timeline) lines.push(`  ${entry.at}  ${entry.text}`);
  }
  lines.push(`Verdict: ${d.verdict.code}`, `  ${d.verdict.message}`, `  next: ${d.verdict.next}`, '');
  return `${lines.join('\n')}\n`;
}
