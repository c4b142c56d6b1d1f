import { isTuneId, parseTimestamp, type Tune } from '../astria/tune.js';
import type { DiagnosedModel, ModelRecords, TransitionRecord } from '../db/diagnosis.js';
import { decide, IN_FLIGHT_STATUSES, type ModelStatus } from '../status/rules.js';
import { formatAgo, formatSpan, type AstriaView, type Diagnosis, type TimelineEntry, type Verdict } from './types.js';

/** A callback this long before a write of ours, or after it, belongs to it (arrival and write race). */
const CALLBACK_MATCH_MS = 60_000;

export interface ModelDiagnosisInput {
  model: DiagnosedModel;
  records: ModelRecords;
  /** What Astria said (null: not asked). */
  astria: AstriaLookup | null;
  /** The database's clock, ISO. */
  now: string;
  stuckAfterMs: number;
  callbackGraceMs: number;
}

export type AstriaLookup = { kind: 'tune'; tune: Tune } | { kind: 'gone' } | { kind: 'failed'; reason: string };

const ms = (iso: string) => Date.parse(iso);
const plural = (n: number, word: string) => `${n} ${n === 1 ? word : word.replace(/y$/, 'ie') + 's'}`;
const iso = (date: Date | null | undefined) => (date ? date.toISOString() : null);

/** Astria's view of the tune, as printed: its state, timestamps and failure fields, the callback URL without its query. */
export function astriaView(lookup: AstriaLookup | null, model: DiagnosedModel): AstriaView | null {
  if (lookup === null) return null;
  if (lookup.kind === 'failed') return { state: 'unavailable', reason: lookup.reason };
  if (lookup.kind === 'gone') return { state: 'gone', reason: `Astria has no tune ${model.trainingJobId} (HTTP 404)` };
  const tune = lookup.tune;
  return {
    state: tuneState(tune),
    id: tune.id,
    title: typeof tune.title === 'string' ? tune.title : null,
    createdAt: typeof tune.created_at === 'string' ? iso(parseTimestamp(tune.created_at)) : null,
    startedTrainingAt: iso(tune.started_training_at),
    eta: iso(tune.eta),
    trainedAt: iso(tune.trained_at),
    status: tune.status ?? null,
    errorMessage: tune.error_message ?? null,
    error: tune.error ?? null,
    callback: typeof tune.callback === 'string' ? redactCallback(tune.callback) : null,
  };
}

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

/** Whether the status rules read the (untrained) tune as failed: they alone know Astria's failure shapes. */
function isFailed(tune: Tune): boolean {
  const probe = { id: '', userId: '', status: 'TRAINING' as ModelStatus, progress: 0, trainingJobId: String(tune.id), errorMessage: null, estimatedTime: null, createdAt: null };
  return decide(probe, { kind: 'tune', tune }, new Date(0), { trainingTimeoutMs: Number.MAX_SAFE_INTEGER })?.to === 'ERROR';
}

function tuneState(tune: Tune): AstriaView['state'] {
  if (tune.trained_at) return 'trained';
  if (isFailed(tune)) return 'failed';
  return tune.started_training_at ? 'training' : 'queued';
}

/** The timeline, oldest first: Astria's timestamps, callback arrivals, our transitions and deliveries. */
function timeline(input: ModelDiagnosisInput, view: AstriaView | null, arrivals: ArrivalMatch[]): TimelineEntry[] {
  const entries: TimelineEntry[] = [];
  if (view?.createdAt) entries.push({ at: view.createdAt, kind: 'astria_created', text: `Astria created tune ${view.id}` });
  if (view?.startedTrainingAt) entries.push({ at: view.startedTrainingAt, kind: 'astria_started', text: `Astria started training` });
  if (view?.trainedAt) entries.push({ at: view.trainedAt, kind: 'astria_finished', text: `Astria finished training (trained_at)` });
  for (const arrival of arrivals) {
    const by = arrival.receiver === null ? '' : ` at ${arrival.receiver}`;
    const refused = arrival.refused ? `; the database refused ${plural(arrival.refused, 'write')} (the reconciler applies them)` : '';
    entries.push({
      at: arrival.receivedAt,
      kind: 'callback_arrived',
      text: `callback for tune ${input.model.trainingJobId} arrived${by}; ${arrival.applied ? `applied ${arrival.applied.from} -> ${arrival.applied.to}` : 'changed nothing'}${refused}`,
      applied: arrival.applied !== null,
      receiver: arrival.receiver,
      refused: arrival.refused,
    });
  }
  for (const t of input.records.transitions) {
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
  for (const d of input.records.deliveries) {
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
 * Which arrival applied which webhook transition: the webhook transition of this model written within
 * a minute after it. An arrival that recorded it applied nothing claims none (its process said so);
 * one recorded before arrivals said what they changed claims by time alone.
 */
function matchArrivals(records: ModelRecords): ArrivalMatch[] {
  const unclaimed = records.transitions.filter((t) => t.source === 'webhook');
  return records.callbacks.map(({ receivedAt, receiver, applied: appliedCount, refused }) => {
    const index =
      appliedCount === 0 ? -1 : unclaimed.findIndex((t) => ms(t.occurredAt) >= ms(receivedAt) - 1_000 && ms(t.occurredAt) - ms(receivedAt) <= CALLBACK_MATCH_MS);
    const applied = index === -1 ? null : unclaimed.splice(index, 1)[0]!;
    return { receivedAt, receiver, refused, applied };
  });
}

const settled = (code: string, message: string, next: string): Verdict => ({ code, message, next, broken: false });
const broken = (code: string, message: string, next: string): Verdict => ({ code, message, next, broken: true });

/** The verdict: the first link of the chain that broke (Astria, callback or reconciler, our write, its delivery). */
function verdictOf(input: ModelDiagnosisInput, view: AstriaView | null, arrivals: ArrivalMatch[]): Verdict {
  const { model, records, now } = input;
  const tune = model.trainingJobId;
  if (model.aiProvider !== 'astria') {
    return settled('not_ours', `not ours: aiProvider is ${model.aiProvider ?? 'NULL'}, not astria`, `look at the ${model.aiProvider ?? 'other'} integration; the reconciler never touches this row`);
  }
  const status = model.status as ModelStatus;
  const inFlight = IN_FLIGHT_STATUSES.includes(status);
  if (status === 'DELETED') return settled('deleted', 'the model is DELETED: nothing is waiting on it', 'nothing to do');
  if (status === 'UPLOADING') {
    return settled('not_submitted', `status UPLOADING since ${model.updatedAt}: the app has not sent the training to Astria yet`, "look at the app's upload step; the reconciler waits for PROCESSING or TRAINING with a tune id");
  }
  if (inFlight && tune === null) {
    return broken('orphan', `no tune id saved (an orphan): status ${status}, trainingJobId NULL, so nothing can ask Astria about it`, "find the tune in Astria's dashboard (by title or time), then save its id in trainingJobId; check that the app saves Astria's answer before anything can fail");
  }
  if (inFlight && !isTuneId(tune)) {
    return broken('invalid_tune_id', `the row's tune id "${String(tune).slice(0, 40)}" is not an Astria tune id (digits only)`, 'check what the app writes to trainingJobId: it must be the id of the tune Astria returned');
  }
  const linkVerdict = inFlight ? inFlightVerdict(input, view, arrivals) : settledVerdict(input, view, arrivals);
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

function inFlightVerdict(input: ModelDiagnosisInput, view: AstriaView | null, arrivals: ArrivalMatch[]): Verdict {
  const { model, now, stuckAfterMs } = input;
  const tune = model.trainingJobId!;
  if (view?.state === 'gone') {
    return broken('tune_gone', `Astria has no tune ${tune} (HTTP 404), yet the row is ${model.status}`, 'the reconciler marks it ERROR on its next pass (is the sidecar running?); check the app saved the right tune id');
  }
  if (view?.state === 'trained' || view?.state === 'failed') {
    const finishedAt = view.trainedAt;
    const after = finishedAt ? arrivals.filter((a) => ms(a.receivedAt) >= ms(finishedAt) - CALLBACK_MATCH_MS) : arrivals;
    const callbackPart =
      after.length > 0
        ? `a callback arrived at ${after[after.length - 1]!.receivedAt} but changed nothing`
        : `no callback arrived for tune ${tune}`;
    const what = view.state === 'trained' ? `Astria finished training${finishedAt ? ` at ${finishedAt} (${formatAgo(finishedAt, now)})` : ''}` : 'Astria reports the training failed';
    // Just finished: the callback, or the reconciler's next look, is a few seconds away.
    if (finishedAt && ms(now) - ms(finishedAt) < CALLBACK_MATCH_MS) {
      return settled('finishing', `${what}: the callback or the reconciler applies it within seconds`, 'run diagnose again in a minute');
    }
    return broken(
      'not_applied',
      `${what}, but the row is still ${model.status}: ${callbackPart}, and the reconciler has not applied it`,
      `check that the sidecar runs (its /readyz, its log) and reaches Astria; astria-reconciler --once --model-id ${model.id} applies it now`,
    );
  }
  // Past the estimate: Astria's eta when it gave one, else the app's own (updatedAt + estimatedTime).
  const appEta = model.updatedAt ? new Date(ms(model.updatedAt) + (model.estimatedTime ?? 0) * 60_000).toISOString() : null;
  const eta = view?.eta ?? appEta;
  const etaSource = view?.eta ? "Astria's eta" : "the app's estimate (updatedAt + estimatedTime)";
  const asked = view === null ? ' (Astria not asked)' : view.state === 'unavailable' ? ` (Astria unavailable: ${view.reason})` : '';
  if (eta !== null && ms(eta) + stuckAfterMs < ms(now)) {
    return broken(
      'overdue',
      `still ${model.status} ${formatSpan(ms(now) - ms(eta))} past ${etaSource} (${eta}), beyond RECONCILER_STUCK_AFTER${asked}`,
      view?.state === 'training' || view?.state === 'queued'
        ? `Astria itself is still at it: ask Astria about tune ${tune}`
        : `run diagnose with ASTRIA_API_KEY to see Astria's view; astria-reconciler --once --model-id ${model.id} applies whatever Astria says`,
    );
  }
  const etaText = view?.eta ? (ms(view.eta) > ms(now) ? ` (eta in ${formatSpan(ms(view.eta) - ms(now))})` : ` (eta ${view.eta})`) : '';
  return settled(
    'training',
    view && view.state !== 'unavailable' ? `Astria still ${view.state === 'queued' ? 'queued' : 'training'}${etaText}: nothing is late yet` : `in flight (${model.status}), within its estimate${asked}`,
    'wait: the callback or the reconciler applies the result when Astria finishes',
  );
}

function settledVerdict(input: ModelDiagnosisInput, view: AstriaView | null, arrivals: ArrivalMatch[]): Verdict {
  const { model, records, now, callbackGraceMs } = input;
  const status = model.status as ModelStatus;
  const last = [...records.transitions].reverse().find((t) => t.to === status);
  if (status === 'ERROR' && view?.state === 'trained') {
    return broken('false_error', `the row is ERROR ("${model.errorMessage ?? ''}") but Astria trained tune ${model.trainingJobId} at ${view.trainedAt}`, `astria-reconciler --once --model-id ${model.id} heals it to READY`);
  }
  if (!last) {
    return settled('settled_unlogged', `${status} was not written through the status service (no event in our log; or the log was pruned)`, "nothing to recover; a change the app writes itself reaches no broadcast: look at the app's own write");
  }
  if (status === 'ERROR') {
    return settled('failed', `failed: ${model.errorMessage ?? 'no message'} (applied by the ${last.source} at ${last.occurredAt})`, 'nothing on our side is wrong; the user retries the training');
  }
  if (last.source === 'webhook') {
    return settled('callback_applied', `Astria's callback arrived and applied ${last.from} -> ${last.to} at ${last.occurredAt}`, "nothing on our side is wrong: look at the browser's stream");
  }
  // The reconciler applied it: was the callback lost, or only late?
  const lag = last.lagSeconds === null ? '' : ` ${formatSpan(last.lagSeconds * 1000)} after Astria finished`;
  const arrival = arrivals.find((a) => ms(a.receivedAt) >= ms(last.occurredAt) - CALLBACK_MATCH_MS && ms(a.receivedAt) <= ms(last.occurredAt) + callbackGraceMs);
  if (last.callbackOutcome === 'late' || arrival) {
    return settled('callback_late_recovered', `the reconciler applied ${last.to}${lag}; Astria's callback came later${arrival ? ` (${arrival.receivedAt})` : ''}`, "nothing to fix: the callback works, it was slower than the reconciler");
  }
  const graceOver = ms(last.occurredAt) + callbackGraceMs <= ms(now);
  const unrecorded = records.callbackRecordingSince === null || ms(last.occurredAt) < ms(records.callbackRecordingSince);
  const why = unrecorded
    ? 'callbacks were not recorded yet then'
    : graceOver
      ? `no arrival recorded for tune ${model.trainingJobId} within ${Math.round(callbackGraceMs / 60_000)}m of the write`
      : `none arrived yet; RECONCILER_CALLBACK_GRACE runs until ${new Date(ms(last.occurredAt) + callbackGraceMs).toISOString()}`;
  return settled(
    'callback_lost_recovered',
    `callback never arrived (${why}); the reconciler applied ${last.to}${lag}`,
    'check the callback URL the app sends when it creates the tune (host reachable from the internet, ?secret= matching WEBHOOK_SECRET)',
  );
}

/** A delivery parked, or failing, for any of the model's events. */
function deliveryVerdict(records: ModelRecords, now: string): Verdict | null {
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

/** One model's diagnosis: the row, Astria's view, the timeline and the verdict. */
export function diagnoseModel(input: ModelDiagnosisInput): Diagnosis {
  const view = astriaView(input.astria, input.model);
  const arrivals = matchArrivals(input.records);
  const verdict = verdictOf(input, view, arrivals);
  const entries = timeline(input, view, arrivals);
  return { kind: 'model', id: input.model.id, now: input.now, row: input.model, astria: view, timeline: entries, verdict };
}
