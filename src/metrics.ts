import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CALLBACK_KINDS } from './db/callbacks.js';

const PROMTOOL_REJECTED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/** Label values known in advance: every such series exists at 0 from start, so a rate or an alert never reads "no data". */
export const TRANSITION_TARGETS = ['TRAINING', 'READY', 'ERROR'] as const;
export const GENERATION_TRANSITION_TARGETS = ['PROCESSING', 'COMPLETED', 'FAILED'] as const;
export const TRANSITION_SOURCES = ['webhook', 'reconciler'] as const;
export const ASTRIA_ENDPOINTS = ['get_tune', 'list_tunes', 'get_prompt', 'list_prompts'] as const;
export const ASTRIA_OUTCOMES = [
  'ok',
  'not_found',
  'rate_limited',
  'server_error',
  'gateway_timeout',
  'timeout',
  'network_error',
  'invalid_body',
  'client_error',
  'forbidden',
  'unauthorized',
] as const;
export const WEBHOOK_CODES = ['200', '202', '400', '401', '404', '405', '413', '500', '503'] as const;
export const ASYNC_TRANSPORTS = ['http', 'redis'] as const;
export const DELIVERY_OUTCOMES = ['delivered', 'failed'] as const;
/** What a failed iteration of the daemon's loop failed on. */
/** What matching a row without a tune id (an orphan) to Astria's tunes came to. */
export const ORPHAN_OUTCOMES = ['linked', 'ambiguous', 'unmatched'] as const;
export type OrphanOutcome = (typeof ORPHAN_OUTCOMES)[number];
export const LOOP_ERROR_REASONS = ['database', 'astria', 'auth', 'other'] as const;
export type LoopErrorReason = (typeof LOOP_ERROR_REASONS)[number];

const DETECTION_LAG_BUCKETS = [0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600, 14_400, 86_400];

/** Creates every combination of label values at 0, so `increase()` sees the first event after a restart. */
function zeroSeries<L extends string>(counter: Counter<L>, labels: Record<L, readonly string[]>): void {
  const names = Object.keys(labels) as L[];
  const combine = (index: number, partial: Partial<Record<L, string>>): void => {
    if (index === names.length) {
      counter.inc(partial as Record<L, string>, 0);
      return;
    }
    const name = names[index]!;
    for (const value of labels[name]) combine(index + 1, { ...partial, [name]: value });
  };
  combine(0, {});
}

/**
 * Every metric the sidecar exposes, on a registry of our own (no global state, so tests and several
 * reconcilers in one process never collide).
 */
export function createMetrics(options: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.defaultMetrics) {
    collectDefaultMetrics({ register: registry });
    // Gauges named *_total fail `promtool check metrics`; the counts live on in nodejs_active_*.
    for (const name of PROMTOOL_REJECTED_DEFAULTS) registry.removeSingleMetric(name);
  }
  const metrics = {
    registry,
    transitions: new Counter({
      name: 'astria_reconciler_transitions_total',
      help: 'Model status transitions applied, by target status and by who applied them (webhook or reconciler).',
      labelNames: ['to', 'source'] as const,
      registers: [registry],
    }),
    generationTransitions: new Counter({
      name: 'astria_reconciler_generation_transitions_total',
      help: 'Generation status transitions applied, by target status (PROCESSING, COMPLETED, FAILED) and by who applied them (webhook or reconciler).',
      labelNames: ['to', 'source'] as const,
      registers: [registry],
    }),
    astriaRequests: new Counter({
      name: 'astria_reconciler_astria_requests_total',
      help: 'Requests sent to Astria, by endpoint (get_tune, list_tunes, get_prompt, list_prompts) and outcome.',
      labelNames: ['endpoint', 'outcome'] as const,
      registers: [registry],
    }),
    detectionLag: new Histogram({
      name: 'astria_reconciler_detection_lag_seconds',
      help: "Seconds from a tune's trained_at to the reconciler applying the model's READY (recoveries only).",
      buckets: DETECTION_LAG_BUCKETS,
      registers: [registry],
    }),
    generationDetectionLag: new Histogram({
      name: 'astria_reconciler_generation_detection_lag_seconds',
      help: "Seconds from a prompt's trained_at to the reconciler applying the generation's COMPLETED (recoveries only).",
      buckets: DETECTION_LAG_BUCKETS,
      registers: [registry],
    }),
    inflightModels: new Gauge({
      name: 'astria_reconciler_inflight_models',
      help: 'In-flight Astria models seen at the last pass.',
      registers: [registry],
    }),
    isLeader: new Gauge({
      name: 'astria_reconciler_is_leader',
      help: '1 while this process holds the leadership and polls Astria, else 0.',
      registers: [registry],
    }),
    broadcastDeliveries: new Counter({
      name: 'astria_reconciler_broadcast_deliveries_total',
      help: 'Event deliveries attempted by the broadcast dispatcher, by transport (http, redis) and outcome (delivered, failed).',
      labelNames: ['transport', 'outcome'] as const,
      registers: [registry],
    }),
    passDuration: new Histogram({
      name: 'astria_reconciler_pass_duration_seconds',
      help: 'Duration of a reconciliation pass.',
      buckets: [0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 300, 900],
      registers: [registry],
    }),
    lostCallbacks: new Counter({
      name: 'astria_reconciler_lost_callbacks_total',
      help: 'Reconciler transitions whose Astria callback never arrived within RECONCILER_CALLBACK_GRACE (counted once per model or generation, by the leader), by kind: tune, prompt.',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    lateCallbacks: new Counter({
      name: 'astria_reconciler_late_callbacks_total',
      help: 'Astria callbacks that arrived after the reconciler had already applied their transition, by kind: tune, prompt.',
      labelNames: ['kind'] as const,
      registers: [registry],
    }),
    loopErrors: new Counter({
      name: 'astria_reconciler_loop_errors_total',
      help: 'Reconcile loop iterations (rounds, discovery, leadership attempts, lost-callback judging) that failed, by what failed: database, astria, auth (the key rejected), other; the loop retries.',
      labelNames: ['reason'] as const,
      registers: [registry],
    }),
    lastSuccess: new Gauge({
      name: 'astria_reconciler_last_success_timestamp_seconds',
      help: 'Unix time of the last check of due models (or --once pass) that completed.',
      registers: [registry],
    }),
    astriaAuthOk: new Gauge({
      name: 'astria_reconciler_astria_auth_ok',
      help: '0 while Astria rejects ASTRIA_API_KEY (HTTP 401) and polling is paused, else 1.',
      registers: [registry],
    }),
    webhookRequests: new Counter({
      name: 'astria_reconciler_webhook_requests_total',
      help: "Requests to the sidecar's Astria webhook, by HTTP status answered.",
      labelNames: ['code'] as const,
      registers: [registry],
    }),
    outboxPending: new Gauge({
      name: 'astria_reconciler_outbox_pending',
      help: 'Broadcast deliveries not yet delivered (dead ones excluded), by transport.',
      labelNames: ['transport'] as const,
      registers: [registry],
    }),
    outboxOldestPending: new Gauge({
      name: 'astria_reconciler_outbox_oldest_pending_seconds',
      help: 'Age of the oldest undelivered broadcast delivery (dead ones excluded), by transport; 0 when none.',
      labelNames: ['transport'] as const,
      registers: [registry],
    }),
    orphans: new Counter({
      name: 'astria_reconciler_orphans_total',
      help: 'Models whose tune id the app never saved, matched to Astria tunes: linked (one tune found, its id saved), ambiguous (several, none linked), unmatched (none found).',
      labelNames: ['outcome'] as const,
      registers: [registry],
    }),
    deadDeliveries: new Counter({
      name: 'astria_reconciler_dead_deliveries_total',
      help: 'Broadcast deliveries parked as dead (the receiver kept rejecting or failing on them), by transport.',
      labelNames: ['transport'] as const,
      registers: [registry],
    }),
  };
  zeroSeries(metrics.transitions, { to: TRANSITION_TARGETS, source: TRANSITION_SOURCES });
  zeroSeries(metrics.generationTransitions, { to: GENERATION_TRANSITION_TARGETS, source: TRANSITION_SOURCES });
  zeroSeries(metrics.astriaRequests, { endpoint: ASTRIA_ENDPOINTS, outcome: ASTRIA_OUTCOMES });
  zeroSeries(metrics.webhookRequests, { code: WEBHOOK_CODES });
  zeroSeries(metrics.broadcastDeliveries, { transport: ASYNC_TRANSPORTS, outcome: DELIVERY_OUTCOMES });
  zeroSeries(metrics.deadDeliveries, { transport: ASYNC_TRANSPORTS });
  zeroSeries(metrics.loopErrors, { reason: LOOP_ERROR_REASONS });
  zeroSeries(metrics.orphans, { outcome: ORPHAN_OUTCOMES });
  zeroSeries(metrics.lostCallbacks, { kind: CALLBACK_KINDS });
  zeroSeries(metrics.lateCallbacks, { kind: CALLBACK_KINDS });
  for (const transport of ASYNC_TRANSPORTS) {
    metrics.outboxPending.set({ transport }, 0);
    metrics.outboxOldestPending.set({ transport }, 0);
  }
  metrics.astriaAuthOk.set(1);
  return metrics;
}

export type Metrics = ReturnType<typeof createMetrics>;
