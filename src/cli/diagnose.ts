import type pg from 'pg';
import { AstriaAuthError, createAstriaClient, type AstriaClient } from '../astria/client.js';
import { isPromptId, type Prompt } from '../astria/prompt.js';
import { isTuneId, type Tune } from '../astria/tune.js';
import { systemClock } from '../clock.js';
import type { Config } from '../config.js';
import { withDiagnosisReader, type DiagnosedGeneration, type DiagnosedModel, type DiagnosisReader, type StuckCandidate } from '../db/diagnosis.js';
import type { Logger } from '../log.js';
import { createMetrics } from '../metrics.js';
import type { OnceKind } from '../reconciler/once.js';
import { diagnose, type AstriaLookup, type DiagnosisKind, type Subject } from '../diagnose/engine.js';
import { generationKind } from '../diagnose/generation.js';
import { modelKind } from '../diagnose/model.js';
import { formatAgo, type Diagnosis } from '../diagnose/types.js';
import type { DiagnoseCommand } from './args.js';

const EXIT = { settled: 0, usage: 2, broken: 3 } as const;

/** `diagnose` asks Astria when a key is configured and `--no-astria` is not given. */
export function diagnoseAsksAstria(command: DiagnoseCommand, env: Record<string, string | undefined>): boolean {
  return command.id !== null && !command.noAstria && Boolean(env.ASTRIA_API_KEY || env.ASTRIA_API_KEY_FILE);
}

interface Context {
  reader: DiagnosisReader;
  config: Config;
  /** Null when Astria is not asked. */
  astria: AstriaClient | null;
}

/** One diagnosis, with what its human form prints beyond the diagnosis itself. */
interface Found {
  diagnosis: Diagnosis;
  /** The row as the app sees it, for people. */
  rowLines: string[];
  /** The row read through its kind's description. */
  subject: Subject;
  remoteName: string;
}

/** A kind `diagnose` looks ids up in: the kind's description, and how its rows and Astria objects are read. */
interface SubjectKind {
  name: Diagnosis['kind'];
  /** Its `--kind`. */
  option: OnceKind;
  /** What an id of this kind looks like, for the "no such id" message. */
  idsLookLike: string;
  /** The rows an id names (by the row's id, or by its Astria id), each diagnosed. */
  find(context: Context, id: string): Promise<Found[]>;
  /** One row by its id, judged from the database alone (`--stuck`). */
  byId(context: Context, id: string): Promise<Found | null>;
}

interface SubjectSpec<Row, Remote> {
  kind: DiagnosisKind<Row, Remote>;
  option: OnceKind;
  idsLookLike: string;
  byId(reader: DiagnosisReader, id: string): Promise<Row | null>;
  /** Rows naming this Astria id; asked only with an id that can be one. */
  byRemoteId(reader: DiagnosisReader, id: string): Promise<Row[]>;
  /** One GET of the row's Astria object. */
  fetch(astria: AstriaClient, row: Row, reader: DiagnosisReader): Promise<AstriaLookup<Remote>>;
}

function subjectKind<Row extends NonNullable<Diagnosis['row']>, Remote>(spec: SubjectSpec<Row, Remote>): SubjectKind {
  const { kind } = spec;
  const judge = async ({ reader, config, astria }: Context, row: Row, asksAstria: boolean): Promise<Found> => {
    const subject = kind.subject(row);
    const records = await reader.records({ kind: kind.remoteName, id: subject.id, remoteId: subject.remoteId });
    const asks = asksAstria && astria !== null && subject.aiProvider === 'astria' && kind.isRemoteId(subject.remoteId);
    const lookup = asks ? await askAstria(() => spec.fetch(astria, row, reader)) : null;
    const diagnosis = diagnose(kind, { row, records, astria: lookup, now: reader.now, stuckAfterMs: config.stuckAfterMs, callbackGraceMs: config.callbackGraceMs });
    return { diagnosis, rowLines: kind.describe(row, reader.now), subject, remoteName: kind.remoteName };
  };
  return {
    name: kind.name,
    option: spec.option,
    idsLookLike: spec.idsLookLike,
    async find(context, id) {
      const byId = await spec.byId(context.reader, id);
      const rows = byId ? [byId] : kind.isRemoteId(id) ? await spec.byRemoteId(context.reader, id) : [];
      const found: Found[] = [];
      for (const row of rows) found.push(await judge(context, row, true));
      return found;
    },
    async byId(context, id) {
      const row = await spec.byId(context.reader, id);
      return row ? judge(context, row, false) : null;
    },
  };
}

/** Astria's answer; a refused key is an answer too (the diagnosis says Astria was unavailable, and why). */
async function askAstria<Remote>(get: () => Promise<AstriaLookup<Remote>>): Promise<AstriaLookup<Remote>> {
  try {
    return await get();
  } catch (error) {
    if (error instanceof AstriaAuthError) return { kind: 'failed', reason: error.message };
    throw error;
  }
}

const models = subjectKind<DiagnosedModel, Tune>({
  kind: modelKind,
  option: 'tunes',
  idsLookLike: 'a model id (ai_models.id) or a tune id (digits: ai_models.trainingJobId)',
  byId: (reader, id) => reader.modelById(id),
  byRemoteId: (reader, id) => reader.modelsByTuneId(id),
  async fetch(astria, model) {
    const result = await astria.getTune(model.trainingJobId!);
    return result.kind === 'tune' ? { kind: 'found', remote: result.tune } : result.kind === 'gone' ? { kind: 'gone' } : result;
  },
});

const generations = subjectKind<DiagnosedGeneration, Prompt>({
  kind: generationKind,
  option: 'prompts',
  idsLookLike: 'a generation id (generations.id) or a prompt id (digits: generations.jobId)',
  byId: (reader, id) => reader.generationById(id),
  byRemoteId: (reader, id) => reader.generationsByPromptId(id),
  // `GET /tunes/:tune_id/prompts/:id` when the generation's model names its tune, else `GET /prompts/:id`.
  async fetch(astria, generation, reader) {
    const model = generation.modelId === null ? null : await reader.modelById(generation.modelId);
    const tuneId = model && isTuneId(model.trainingJobId) ? model.trainingJobId : null;
    const result = await astria.getPrompt(tuneId, generation.jobId!);
    return result.kind === 'prompt' ? { kind: 'found', remote: result.prompt } : result.kind === 'gone' ? { kind: 'gone' } : result;
  },
});

/**
 * The kinds, in the order their diagnoses print. Every kind is looked in: an id names rows of one
 * kind (model and generation ids are the app's own, unique in practice), but a number may be both a
 * tune id and a prompt id (separate sequences at Astria), and then both are shown; `--kind` picks one.
 */
const KINDS: readonly SubjectKind[] = [models, generations];

/**
 * `diagnose <id>` and `diagnose --stuck`: reads everything in one read-only transaction, asks Astria
 * once per row (unless `--no-astria`), prints the diagnoses and returns the exit code: 0 healthy or
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
  const kinds = KINDS.filter((kind) => command.kinds.includes(kind.option));
  try {
    return await withDiagnosisReader(pool, config.schema, config.host, async (reader) => {
      const context: Context = { reader, config, astria };
      if (command.id === null) return stuck(context, kinds, command, options.stdout);
      const found: Found[] = [];
      for (const kind of kinds) found.push(...(await kind.find(context, command.id)));
      if (found.length === 0) {
        const unknown = await unknownId(context, kinds, command.id);
        options.stdout.write(command.json ? `${toJson(unknown)}\n` : formatDiagnosis(unknown));
        return EXIT.usage;
      }
      const names = new Set(found.map((f) => f.diagnosis.kind));
      if (names.size > 1 && !command.json) {
        const counted = [...names].map((name) => `${found.filter((f) => f.diagnosis.kind === name).length} ${name}(s)`).join(' and ');
        options.stdout.write(`"${command.id}" names ${counted} (tune ids and prompt ids are separate sequences): each diagnosed below; --kind tunes or --kind prompts shows one\n\n`);
      }
      for (const f of found) options.stdout.write(command.json ? `${toJson(f.diagnosis)}\n` : formatDiagnosis(f.diagnosis, f.rowLines, f.remoteName));
      return found.some((f) => f.diagnosis.verdict.broken) ? EXIT.broken : EXIT.settled;
    });
  } finally {
    await astria?.close();
  }
}

/** The verdict on an id no kind found, with the kind it most likely is. */
async function unknownId(context: Context, kinds: readonly SubjectKind[], id: string): Promise<Diagnosis> {
  const { reader } = context;
  const { similar, loggedEvents } = await reader.nearMisses(id);
  const looked = (name: Diagnosis['kind']) => kinds.some((kind) => kind.name === name);
  const hints: string[] = [];
  if (looked('model') && loggedEvents.model > 0) hints.push(`our event log holds ${loggedEvents.model} event(s) for a model "${id}": the row was deleted from ai_models`);
  if (looked('generation') && loggedEvents.generation > 0) hints.push(`our event log holds ${loggedEvents.generation} event(s) for a generation "${id}": the row was deleted from generations`);
  const close = similar.filter((candidate) => looked(candidate.kind));
  if (close.length > 0) hints.push(`ids close to it: ${close.map((candidate) => `${candidate.kind} ${candidate.id}`).join(', ')}`);
  if (isTuneId(id) || isPromptId(id)) {
    const nobody = [
      ...(looked('model') ? [`no model trains tune ${id}`] : []),
      ...(!looked('generation') ? [] : reader.tables.generations ? [`no generation waits on prompt ${id}`] : ['this database has no generations table, so it is no prompt of ours either']),
    ];
    hints.push(`digits are a tune id or a prompt id: ${nobody.join('; ')}; Astria's prompt ids and tune ids are separate sequences`);
  } else if (hints.length === 0) {
    hints.push(`it looks like a model or generation id (tune and prompt ids are digits): check it was copied whole, and that DATABASE_URL names the app's database`);
  }
  return {
    kind: close[0]?.kind ?? kinds[0]!.name,
    id,
    now: reader.now,
    row: null,
    astria: null,
    timeline: [],
    verdict: {
      code: 'unknown_id',
      message: `nothing has id "${id}": looked for ${kinds.map((kind) => kind.idsLookLike).join('; and ')}`,
      next: hints.join('; '),
      broken: false,
    },
  };
}

/** `--stuck`: in flight past the eta plus RECONCILER_STUCK_AFTER, or with a broken link, newest first. Database only: Astria is not asked. */
async function stuck(context: Context, kinds: readonly SubjectKind[], command: DiagnoseCommand, stdout: NodeJS.WritableStream): Promise<number> {
  const candidates: StuckCandidate[] = await context.reader.stuckCandidates({
    stuckAfterMs: context.config.stuckAfterMs,
    limit: command.limit + 1,
    kinds: kinds.map((kind) => kind.name),
  });
  const listed: Found[] = [];
  for (const candidate of candidates.slice(0, command.limit)) {
    // A deleted row whose delivery is parked: nothing a user waits on.
    const found = await kinds.find((kind) => kind.name === candidate.kind)!.byId(context, candidate.id);
    if (found?.diagnosis.verdict.broken) listed.push(found);
  }
  const more = candidates.length > command.limit;
  if (command.json) {
    const items = listed.map(({ diagnosis: d, subject }) => ({ kind: d.kind, id: d.id, status: subject.status, updatedAt: subject.updatedAt, code: d.verdict.code, message: d.verdict.message }));
    stdout.write(`${JSON.stringify({ now: context.reader.now, limit: command.limit, more, items })}\n`);
  } else if (listed.length === 0) {
    stdout.write(`nothing stuck: no ${kinds.map((kind) => kind.name).join(' or ')} in flight past its eta plus RECONCILER_STUCK_AFTER, no broken link found in the database\n`);
  } else {
    for (const { diagnosis: d, subject, remoteName } of listed) {
      const { status, remoteId, updatedAt } = subject;
      stdout.write(
        `${d.verdict.code.padEnd(17)}  ${d.kind.padEnd(10)}  ${d.id}  ${status}  ${remoteName} ${remoteId ?? '-'}  updated ${updatedAt ? formatAgo(updatedAt, d.now) : '-'}  ${d.verdict.message}\n`,
      );
    }
    if (more) stdout.write(`(more not shown: raise --limit, now ${command.limit})\n`);
  }
  return listed.length > 0 ? EXIT.broken : EXIT.settled;
}

function toJson(diagnosis: Diagnosis): string {
  const { broken: _broken, ...verdict } = diagnosis.verdict;
  return JSON.stringify({ kind: diagnosis.kind, id: diagnosis.id, now: diagnosis.now, row: diagnosis.row, astria: diagnosis.astria, timeline: diagnosis.timeline, verdict });
}

function formatDiagnosis(d: Diagnosis, rowLines: string[] = [], remoteName = ''): string {
  const lines = [...rowLines];
  if (d.astria) {
    const a = d.astria;
    if (a.reason) lines.push(`Astria: ${a.state}: ${a.reason}`);
    else {
      const failure = [a.status, a.userError, a.errorMessage, a.error].filter((v) => v !== null && v !== undefined).map((v) => (typeof v === 'string' ? v : JSON.stringify(v)));
      lines.push(
        `Astria's view of ${remoteName} ${a.id}${a.tuneId ? ` (tune ${a.tuneId})` : ''}: ${a.state}${failure.length > 0 ? ` (${failure.join(': ')})` : ''}`,
        `  created_at ${a.createdAt ?? '-'}  started_training_at ${a.startedTrainingAt ?? '-'}  eta ${a.eta ?? '-'}  trained_at ${a.trainedAt ?? '-'}${a.imageCount === undefined ? '' : `  images ${a.imageCount}`}`,
      );
      if (a.callback) lines.push(`  callback ${a.callback}`);
    }
  } else if (d.row) {
    lines.push(`Astria: not asked (no ASTRIA_API_KEY, --no-astria, or not an Astria ${remoteName})`);
  }
  if (d.timeline.length > 0) {
    lines.push(`Timeline (UTC, oldest first; Astria's times by Astria's clock, the rest by ours):`);
    for (const entry of d.timeline) lines.push(`  ${entry.at}  ${entry.text}`);
  }
  lines.push(`Verdict: ${d.verdict.code}`, `  ${d.verdict.message}`, `  next: ${d.verdict.next}`, '');
  return `${lines.join('\n')}\n`;
}
