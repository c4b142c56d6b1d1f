import type { DiagnosisRecords, TransitionRecord } from '../db/diagnosis.js';
import { formatAgo, formatSpan, type AstriaView, type Diagnosis, type TimelineEntry, type Verdict } from './types.js';

/** A callback this long before a write of ours, or after it, belongs to it (arrival and write race). */
const CALLBACK_MATCH_MS = 60_000;

/** What Astria said about the row's object, when asked. */
export type AstriaLookup<Remote> = { kind: 'found'; remote: Remote } | { kind: 'gone' } | { kind: 'failed'; reason: string };

/** The columns of a row every verdict reads, whatever its kind. */
export interface Subject {
  id: string;
  status: string;
  aiProvider: string | null;
  /** The Astria id the row names (`trainingJobId`, `jobId`); null: none saved. */
  remoteId: string | null;
  errorMessage: string | null;
  updatedAt: string | null;
  /** When the app expects Astria done with it (ISO): past it plus `RECONCILER_STUCK_AFTER`, it is overdue. */
  expectedAt: string | null;
}

/**
 * One kind of object `diagnose` judges, described: its row, its Astria object, its statuses and the
 * words its verdicts use. The chain (Astria, callback or reconciler, our write, its broadcast) and its
 * verdicts are the engine's, one for every kind.
 */
export interface DiagnosisKind<Row, Remote> {
  name: Diagnosis['kind'];
  /** Astria's object of the kind, as the callbacks table records it. */
  remoteName: 'tune' | 'prompt';
  /** The row's column naming it. */
  remoteIdColumn: string;
  inFlightStatuses: readonly string[];
  /** The status a callback applies (what the reconciler recovers), and the failure. */
  doneStatus: string;
  failedStatus: string;
  /** The verdict code of a row Astria is still working on, within its estimate. */
  runningCode: string;
  /** Astria's work on it, as `Astria still …` and `Astria started …` read ('training'). */
  work: string;
  /** The work as a noun, as `the … failed` reads ('training'). */
  workNoun: string;
  /** Astria done with it, as `Astria …` reads ('finished training'). */
  finished: string;
  /** Where `expectedAt` comes from, in words. */
  estimateName: string;
  /** How an operator finds the Astria object of a row that lost its id. */
  findBy: string;
  subject(row: Row): Subject;
  isRemoteId(text: string | null): boolean;
  /** Astria's view of an object it returned: its state, timestamps and failure fields. */
  view(remote: Remote): AstriaView;
  /** Verdicts on statuses of this kind alone (a model UPLOADING or DELETED), before the chain is followed. */
  ownVerdict(row: Row, subject: Subject, now: string, stuckAfterMs: number): Verdict | null;
  /** The command that applies what Astria says about the row now. */
  applyNow(row: Row): string;
  /** The row as the app sees it, for people: a heading and its columns. */
  describe(row: Row, now: string): string[];
}

export interface DiagnosisInput<Row, Remote> {
  row: Row;
  records: DiagnosisRecords;
  /** What Astria said (null: not asked). */
  astria: AstriaLookup<Remote> | null;
  /** The database's clock, ISO. */
  now: string;
  stuckAfterMs: number;
  callbackGraceMs: number;
}

/** What every verdict reads: the description, the row read through it, Astria's view and the matched arrivals. */
interface Case<Row, Remote> {
  kind: DiagnosisKind<Row, Remote>;
  row: Row;
  subject: Subject;
  records: DiagnosisRecords;
  view: AstriaView | null;
  arrivals: ArrivalMatch[];
  now: string;
  stuckAfterMs: number;
  callbackGraceMs: number;
}

const ms = (iso: string) => Date.parse(iso);
const plural = (n: number, word: string) => `${n} ${n === 1 ? word : word.replace(/y$/, 'ie') + 's'}`;

/** The callback URL without its query's values: the `secret` travels there. */
export function redactCallback(url: string): string {
  try {
    const parsed = new URL(url);
    const names = [...new Set(parsed.searchParams.keys())];
    return `${parsed.origin}${parsed.pathname}${names.length > 0 ? `?${names.map((name) => `${name}=…`).join('&')}` : ''}`;
  } catch {
    return '(not a URL)';
  }
}

function astriaView<Row, Remote>(kind: DiagnosisKind<Row, Remote>, lookup: AstriaLookup<Remote> | null, subject: Subject): AstriaView | null {
  if (lookup === null) return null;
  if (lookup.kind === 'failed') return { state: 'unavailable', reason: lookup.reason };
  if (lookup.kind === 'gone') return { state: 'gone', reason: `Astria has no ${kind.remoteName} ${subject.remoteId} (HTTP 404)` };
  return kind.view(lookup.remote);
}

/** The timeline, oldest first: Astria's timestamps, callback arrivals, our transitions and deliveries. */
function timeline<Row, Remote>(c: Case<Row, Remote>): TimelineEntry[] {
  const { kind, view } = c;
  const entries: TimelineEntry[] = [];
  if (view?.createdAt) entries.push({ at: view.createdAt, kind: 'astria_created', text: `Astria created ${kind.remoteName} ${view.id}` });
  if (view?.startedTrainingAt) entries.push({ at: view.startedTrainingAt, kind: 'astria_started', text: `Astria started ${kind.work}` });
  if (view?.trainedAt) entries.push({ at: view.trainedAt, kind: 'astria_finished', text: `Astria ${kind.finished} (trained_at)` });
  for (const arrival of c.arrivals) {
    const by = arrival.receiver === null ? '' : ` at ${arrival.receiver}`;
    const refused = arrival.refused ? `; the database refused ${plural(arrival.refused, 'write')} (the reconciler applies them)` : '';
    entries.push({
      at: arrival.receivedAt,
      kind: 'callback_arrived',
      text: `callback for ${kind.remoteName} ${c.subject.remoteId} arrived${by}; ${arrival.applied ? `applied ${arrival.applied.from} -> ${arrival.applied.to}` : 'changed nothing'}${refused}`,
      applied: arrival.applied !== null,
      receiver: arrival.receiver,
      refused: arrival.refused,
    });
  }
  for (const t of c.records.transitions) {
    const lag = t.lagSeconds === null ? '' : `, ${formatSpan(t.lagSeconds * 1000)} after Astria finished`;
    entries.push({
      at: t.occurredAt,
      kind: 'transition',
      text: `${t.from} -> ${t.to} applied by the ${t.source}${lag}`,
      eventId: t.eventId,
      source: t.source,
      from: t.from,
      to: t.to,
      lagSeconds: t.lagSeconds,
    });
  }
  for (const d of c.records.deliveries) {
    const state = d.deliveredAt ? 'delivered' : d.deadAt ? 'dead' : 'pending';
    // Attempt times are recorded; a delivery tried before they were falls back to what bounds them.
    const firstTry = d.firstAttemptAt ?? (d.attempts > 0 ? d.queuedAt : null);
    const lastTry = d.lastAttemptAt ?? d.deliveredAt ?? d.deadAt;
    const tries = firstTry === null ? '' : firstTry === lastTry || lastTry === null ? ` (tried ${firstTry})` : ` (first try ${firstTry}, last ${lastTry})`;
    const detail =
      state === 'delivered'
        ? `delivered at ${d.deliveredAt}`
        : state === 'dead'
          ? `dead since ${d.deadAt}: ${d.lastError ?? 'no error recorded'}`
          : d.lastError
            ? `pending, next try ${d.nextAttemptAt}; last error: ${d.lastError}`
            : 'pending, not tried yet';
    entries.push({
      at: d.queuedAt,
      kind: 'delivery',
      text: `${d.transport} delivery of the ${d.toStatus} event: ${plural(d.attempts, 'attempt')}${tries}, ${detail}`,
      transport: d.transport,
      eventId: d.eventId,
      attempts: d.attempts,
      firstTry,
      lastTry: lastTry ?? null,
      state,
      lastError: d.lastError,
    });
  }
  // Equal instants keep the chain's order: Astria, the callback, our write, its delivery.
  const rank: Record<TimelineEntry['kind'], number> = { astria_created: 0, astria_started: 1, astria_finished: 2, callback_arrived: 3, transition: 4, delivery: 5 };
  return entries.sort((a, b) => a.at.localeCompare(b.at) || rank[a.kind] - rank[b.kind]);
}

interface ArrivalMatch {
  receivedAt: string;
  /** The process that received it, when recorded. */
  receiver: string | null;
  /** Writes of it the database refused, when recorded. */
  refused: number | null;
  applied: TransitionRecord | null;
}

/**
 * Which arrival applied which webhook transition: the webhook transition of this row written within
 * a minute after it. An arrival that recorded it applied nothing claims none (its process said so);
 * one recorded before arrivals said what they changed claims by time alone.
 */
function matchArrivals(records: DiagnosisRecords): ArrivalMatch[] {
  const unclaimed = records.transitions.filter((t) => t.source === 'webhook');
  return records.callbacks.map(({ receivedAt, receiver, applied: appliedCount, refused }) => {
    const index =
      appliedCount === 0 ? -1 : unclaimed.findIndex((t) => ms(t.occurredAt) >= ms(receivedAt) - 1_000 && ms(t.occurredAt) - ms(receivedAt) <= CALLBACK_MATCH_MS);
    const applied = index === -1 ? null : unclaimed.splice(index, 1)[0]!;
    return { receivedAt, receiver, refused, applied };
  });
}

export const settled = (code: string, message: string, next: string): Verdict => ({ code, message, next, broken: false });
const broken = (code: string, message: string, next: string): Verdict => ({ code, message, next, broken: true });

/** The verdict: the first link of the chain that broke (Astria, callback or reconciler, our write, its delivery). */
function verdictOf<Row, Remote>(c: Case<Row, Remote>): Verdict {
  const { kind, subject, records, now } = c;
  const { remoteName, remoteIdColumn } = kind;
  const remoteId = subject.remoteId;
  if (subject.aiProvider !== 'astria') {
    return settled('not_ours', `not ours: aiProvider is ${subject.aiProvider ?? 'NULL'}, not astria`, `look at the ${subject.aiProvider ?? 'other'} integration; the reconciler never touches this row`);
  }
  const own = kind.ownVerdict(c.row, subject, now, c.stuckAfterMs);
  if (own) return own;
  const inFlight = kind.inFlightStatuses.includes(subject.status);
  if (inFlight && remoteId === null) {
    return broken(
      'orphan',
      `no ${remoteName} id saved (an orphan): status ${subject.status}, ${remoteIdColumn} NULL, so nothing can ask Astria about it`,
      `find the ${remoteName} in Astria's dashboard (by ${kind.findBy}), then save its id in ${remoteIdColumn}; check that the app saves Astria's answer before anything can fail`,
    );
  }
  if (inFlight && !kind.isRemoteId(remoteId)) {
    return broken(
      `invalid_${remoteName}_id`,
      `the row's ${remoteName} id "${String(remoteId).slice(0, 40)}" is not an Astria ${remoteName} id (digits only)`,
      `check what the app writes to ${remoteIdColumn}: it must be the id of the ${remoteName} Astria returned`,
    );
  }
  const linkVerdict = inFlight ? inFlightVerdict(c) : settledVerdict(c);
  if (linkVerdict.broken) return linkVerdict;
  const delivery = deliveryVerdict(records, now);
  if (delivery) return delivery;
  const deliveries = records.deliveries;
  if (deliveries.length === 0) return linkVerdict;
  const queued = deliveries.filter((d) => d.deliveredAt === null).length;
  const lastDelivered = deliveries.map((d) => d.deliveredAt).filter((at): at is string => at !== null).sort().at(-1);
  const suffix = queued > 0 ? `; ${plural(queued, 'delivery')} queued, not tried yet` : `; every delivery of its events done by ${lastDelivered}`;
  return { ...linkVerdict, message: linkVerdict.message + suffix };
}

function inFlightVerdict<Row, Remote>(c: Case<Row, Remote>): Verdict {
  const { kind, subject, view, now, stuckAfterMs } = c;
  const remote = `${kind.remoteName} ${subject.remoteId}`;
  if (view?.state === 'gone') {
    return broken(
      `${kind.remoteName}_gone`,
      `Astria has no ${remote} (HTTP 404), yet the row is ${subject.status}`,
      `the reconciler marks it ${kind.failedStatus} on its next pass (is the sidecar running?); check the app saved the right ${kind.remoteName} id`,
    );
  }
  if (view?.state === 'trained' || view?.state === 'failed') {
    const finishedAt = view.trainedAt;
    const after = finishedAt ? c.arrivals.filter((a) => ms(a.receivedAt) >= ms(finishedAt) - CALLBACK_MATCH_MS) : c.arrivals;
    const callbackPart = after.length > 0 ? `a callback arrived at ${after[after.length - 1]!.receivedAt} but changed nothing` : `no callback arrived for ${remote}`;
    const what =
      view.state === 'trained' ? `Astria ${kind.finished}${finishedAt ? ` at ${finishedAt} (${formatAgo(finishedAt, now)})` : ''}` : `Astria reports the ${kind.workNoun} failed`;
    // Just finished: the callback, or the reconciler's next look, is a few seconds away.
    if (finishedAt && ms(now) - ms(finishedAt) < CALLBACK_MATCH_MS) {
      return settled('finishing', `${what}: the callback or the reconciler applies it within seconds`, 'run diagnose again in a minute');
    }
    return broken(
      'not_applied',
      `${what}, but the row is still ${subject.status}: ${callbackPart}, and the reconciler has not applied it`,
      `check that the sidecar runs (its /readyz, its log) and reaches Astria; ${kind.applyNow(c.row)} applies it now`,
    );
  }
  // Past the estimate: Astria's eta when it gave one, else the app's own.
  const eta = view?.eta ?? subject.expectedAt;
  const etaSource = view?.eta ? "Astria's eta" : kind.estimateName;
  const asked = view === null ? ' (Astria not asked)' : view.state === 'unavailable' ? ` (Astria unavailable: ${view.reason})` : '';
  if (eta !== null && ms(eta) + stuckAfterMs < ms(now)) {
    return broken(
      'overdue',
      `still ${subject.status} ${formatSpan(ms(now) - ms(eta))} past ${etaSource} (${eta}), beyond RECONCILER_STUCK_AFTER${asked}`,
      view?.state === 'training' || view?.state === 'queued'
        ? `Astria itself is still at it: ask Astria about ${remote}`
        : `run diagnose with ASTRIA_API_KEY to see Astria's view; ${kind.applyNow(c.row)} applies whatever Astria says`,
    );
  }
  const etaText = view?.eta ? (ms(view.eta) > ms(now) ? ` (eta in ${formatSpan(ms(view.eta) - ms(now))})` : ` (eta ${view.eta})`) : '';
  return settled(
    kind.runningCode,
    view && view.state !== 'unavailable' ? `Astria still ${view.state === 'queued' ? 'queued' : kind.work}${etaText}: nothing is late yet` : `in flight (${subject.status}), within its estimate${asked}`,
    'wait: the callback or the reconciler applies the result when Astria finishes',
  );
}

function settledVerdict<Row, Remote>(c: Case<Row, Remote>): Verdict {
  const { kind, subject, records, view, now, callbackGraceMs } = c;
  const status = subject.status;
  const last = [...records.transitions].reverse().find((t) => t.to === status);
  if (status === kind.failedStatus && view?.state === 'trained') {
    return broken(
      'false_error',
      `the row is ${status} ("${subject.errorMessage ?? ''}") but Astria ${kind.finished} ${kind.remoteName} ${subject.remoteId} at ${view.trainedAt}`,
      `${kind.applyNow(c.row)} heals it to ${kind.doneStatus}`,
    );
  }
  if (!last) {
    return settled('settled_unlogged', `${status} was not written through the status service (no event in our log; or the log was pruned)`, "nothing to recover; a change the app writes itself reaches no broadcast: look at the app's own write");
  }
  if (status === kind.failedStatus) {
    return settled('failed', `failed: ${subject.errorMessage ?? 'no message'} (applied by the ${last.source} at ${last.occurredAt})`, `nothing on our side is wrong; the user retries the ${kind.workNoun}`);
  }
  if (last.source === 'webhook') {
    return settled('callback_applied', `Astria's callback arrived and applied ${last.from} -> ${last.to} at ${last.occurredAt}`, "nothing on our side is wrong: look at the browser's stream");
  }
  // The reconciler applied it: was the callback lost, or only late?
  const lag = last.lagSeconds === null ? '' : ` ${formatSpan(last.lagSeconds * 1000)} after Astria finished`;
  const arrival = c.arrivals.find((a) => ms(a.receivedAt) >= ms(last.occurredAt) - CALLBACK_MATCH_MS && ms(a.receivedAt) <= ms(last.occurredAt) + callbackGraceMs);
  if (last.callbackOutcome === 'late' || arrival) {
    return settled('callback_late_recovered', `the reconciler applied ${last.to}${lag}; Astria's callback came later${arrival ? ` (${arrival.receivedAt})` : ''}`, 'nothing to fix: the callback works, it was slower than the reconciler');
  }
  const graceOver = ms(last.occurredAt) + callbackGraceMs <= ms(now);
  const unrecorded = records.callbackRecordingSince === null || ms(last.occurredAt) < ms(records.callbackRecordingSince);
  const why = unrecorded
    ? 'callbacks were not recorded yet then'
    : graceOver
      ? `no arrival recorded for ${kind.remoteName} ${subject.remoteId} within ${Math.round(callbackGraceMs / 60_000)}m of the write`
      : `none arrived yet; RECONCILER_CALLBACK_GRACE runs until ${new Date(ms(last.occurredAt) + callbackGraceMs).toISOString()}`;
  return settled(
    'callback_lost_recovered',
    `callback never arrived (${why}); the reconciler applied ${last.to}${lag}`,
    `check the callback URL the app sends when it creates the ${kind.remoteName} (host reachable from the internet, ?secret= matching WEBHOOK_SECRET)`,
  );
}

/** A delivery parked, or failing, for any of the row's events. */
function deliveryVerdict(records: DiagnosisRecords, now: string): Verdict | null {
  const dead = records.deliveries.filter((d) => d.deadAt !== null && d.deliveredAt === null);
  if (dead.length > 0) {
    const d = dead[dead.length - 1]!;
    return broken(
      'delivery_dead',
      `applied and broadcast, ${d.transport} delivery of the ${d.toStatus} event dead since ${d.deadAt} after ${plural(d.attempts, 'attempt')} (${d.lastError ?? 'no error recorded'})`,
      `fix the receiver${d.transport === 'http' ? ' at BROADCAST_HTTP_URL' : ' (REDIS_URL)'}, then astria-reconciler requeue-dead`,
    );
  }
  const failing = records.deliveries.filter((d) => d.deliveredAt === null && d.lastError !== null);
  if (failing.length > 0) {
    const d = failing[0]!;
    return broken(
      'delivery_pending',
      `applied, but the ${d.transport} delivery of the ${d.toStatus} event is still pending: ${plural(d.attempts, 'attempt')} since ${d.queuedAt} (${formatAgo(d.queuedAt, now)}), last error: ${d.lastError}`,
      `the receiver is away or failing: bring it back${d.transport === 'http' ? ' (BROADCAST_HTTP_URL)' : ' (REDIS_URL)'}; the dispatcher keeps retrying and delivers it then`,
    );
  }
  return null;
}

/** One row's diagnosis, of any kind: the row, Astria's view, the timeline and the verdict. */
export function diagnose<Row extends NonNullable<Diagnosis['row']>, Remote>(kind: DiagnosisKind<Row, Remote>, input: DiagnosisInput<Row, Remote>): Diagnosis {
  const subject = kind.subject(input.row);
  const c: Case<Row, Remote> = {
    kind,
    row: input.row,
    subject,
    records: input.records,
    view: astriaView(kind, input.astria, subject),
    arrivals: matchArrivals(input.records),
    now: input.now,
    stuckAfterMs: input.stuckAfterMs,
    callbackGraceMs: input.callbackGraceMs,
  };
  return { kind: kind.name, id: subject.id, now: input.now, row: input.row, astria: c.view, timeline: timeline(c), verdict: verdictOf(c) };
}
