import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const PROMTOOL_REJECTED_DEFAULTS = ['nodejs_active_handles_total', 'nodejs_active_requests_total', 'nodejs_active_resources_total'];

/**
 * Every metric of SPEC.md, on a registry of our own (no global state, so tests and several
 * reconcilers in one process never collide).
 */
export function createMetrics(options: { defaultMetrics?: boolean } = {}) {
  const registry = new Registry();
  if (options.defaultMetrics) {
    collectDefaultMetrics({ register: registry });
    // Gauges named *_total fail `promtool check metrics`; the counts live on in nodejs_active_*.
    for (const name of PROMTOOL_REJECTED_DEFAULTS) registry.removeSingleMetric(name);
  }
  return {
    registry,
    transitions: new Counter({
      name: 'astria_reconciler_transitions_total',
      help: 'Status transitions applied, by target status and by who applied them (webhook or reconciler).',
      labelNames: ['to', 'source'] as const,
      registers: [registry],
    }),
    astriaRequests: new Counter({
      name: 'astria_reconciler_astria_requests_total',
      help: 'Requests sent to Astria, by endpoint (get_tune, list_tunes) and outcome.',
      labelNames: ['endpoint', 'outcome'] as const,
      registers: [registry],
    }),
    detectionLag: new Histogram({
      name: 'astria_reconciler_detection_lag_seconds',
      help: "Seconds from Astria's trained_at to the reconciler applying the transition (recoveries only).",
      buckets: [1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 14_400, 86_400],
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
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
