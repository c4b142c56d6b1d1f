import type pg from 'pg';
import { systemClock, type Clock } from '../clock.js';
import { claimDeliveries, pendingDeliveries, recordDelivered, recordDeliveryFailure, type ClaimedDelivery } from '../db/deliveries.js';
import { DEFAULT_SCHEMA } from '../db/identifier.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';
import type { ModelEvent } from '../status/event.js';
import { DeliveryFailedError, DeliveryRejectedError, type Transport } from './transport.js';

export interface DispatcherOptions {
  pool: pg.Pool;
  /** Our own schema, holding `events` and `deliveries` (default `astria_reconciler`). */
  schema?: string;
  /** The asynchronous transports to deliver (see `createTransports`). The caller closes them. */
  transports: Transport[];
  log: Logger;
  metrics?: Metrics;
  clock?: Clock;
  /** How often each transport looks for due deliveries without a `kick()` (default 1 s). */
  pollIntervalMs?: number;
  /** Deliveries claimed at once per transport, delivered concurrently (default 20). */
  batchSize?: number;
  /** Retry delay after the first failure, doubled per attempt, with jitter (default 1 s). */
  backoffBaseMs?: number;
  /** Ceiling of the retry delay (default 60 s). */
  backoffCapMs?: number;
  /**
   * How long a claimed delivery is reserved for this process (default 60 s). Longer than a transport's
   * own timeout; if the process dies mid-delivery, another replica retries once it runs out.
   */
  leaseMs?: number;
  /**
   * A delivery the peer rejects (`DeliveryRejectedError`) after this many attempts is parked as dead
   * (default 100). A peer that is merely down never parks anything: its deliveries wait for it.
   */
  deadAfterAttempts?: number;
  /**
   * ... or once this long has passed since it was queued, whichever comes first (default 6 h); a
   * delivery the peer fails on (`DeliveryFailedError`, an HTTP 500) is parked by this age only.
   */
  deadAfterMs?: number;
  /** How often each transport refreshes its outbox gauges (default 5 s). */
  gaugeIntervalMs?: number;
}

export interface Dispatcher {
  /** Delivers until `signal` aborts; resolves once the deliveries under way have finished. */
  run(signal: AbortSignal): Promise<void>;
  /** Something was just written: look now instead of at the next poll. Correctness never depends on it. */
  kick(): void;
}

type Claimed = ClaimedDelivery<ModelEvent>;

/**
 * Delivers the outbox (`<schema>.deliveries`) to the asynchronous transports: at least once, in order per
 * model, with exponential backoff and jitter per delivery. Each transport has its own loop, so a slow or
 * dead one never holds up another, nor the status writes (which only insert the outbox row).
 *
 * Claiming is a single short statement: pending rows are locked with `FOR UPDATE SKIP LOCKED`, reserved
 * for `leaseMs` (by moving `next_attempt_at` forward) and committed at once; the delivery runs outside
 * any transaction and its outcome is written afterwards. A transaction held open across a network call
 * would pin a pool connection (and a lock) for as long as the peer takes to answer, on the app's
 * database; the lease costs one extra UPDATE instead. Any number of replicas may dispatch: a row is
 * claimed by one of them, and only goes to another if the first does not report within the lease
 * (a crash), which is what at-least-once allows.
 *
 * Order per model: a row is claimable only while it is the earliest undelivered row of its model on its
 * transport, so a model's events leave one at a time, in the order they were written (`seq`; two writes
 * to one model are serialised by its row lock, so `seq` order is commit order). The claim finds those
 * heads with one scan of the transport's undelivered rows and a sort (DISTINCT ON), then locks a few of
 * them by key: no join the planner could turn quadratic, whatever statistics it has. An anti-join per
 * row ("no earlier undelivered row") did, on fresh tables (5,000 pending: 40 delivered in 60 s).
 *
 * Dead letter: a delivery still rejected after `deadAfterAttempts` attempts, or `deadAfterMs` after it
 * was queued, is parked (`dead_at`); so is one the peer still fails on (an HTTP 500) `deadAfterMs` after
 * it was queued, since it holds up its model's later events. Only the peer answering about this event
 * parks (a rejection: an HTTP 4xx, a Redis error reply; a failure: a 5xx other than 502/503/504); a peer
 * that refuses connections, times out or is unavailable (502/503/504, 408/425/429) is retried at the
 * capped backoff for as long as it takes, so an outage loses nothing. Parked: kept, counted in
 * `dead_deliveries_total`, left out of the pending gauges and of the order (the model's later events go
 * on), listed by `report`, sent again after `requeue-dead`.
 */
export function createDispatcher(options: DispatcherOptions): Dispatcher {
  const schema = options.schema ?? DEFAULT_SCHEMA;
  const clock = options.clock ?? systemClock;
  const pollIntervalMs = options.pollIntervalMs ?? 1_000;
  const batchSize = options.batchSize ?? 20;
  const backoffBaseMs = options.backoffBaseMs ?? 1_000;
  const backoffCapMs = options.backoffCapMs ?? 60_000;
  const leaseMs = options.leaseMs ?? 60_000;
  const deadAfterAttempts = options.deadAfterAttempts ?? 100;
  const deadAfterMs = options.deadAfterMs ?? 6 * 3_600_000;
  const gaugeIntervalMs = options.gaugeIntervalMs ?? 5_000;
  const { pool, log, metrics } = options;
  const wakeups = new Map(options.transports.map((transport) => [transport.name, new Wakeup()]));

  function claim(transport: Transport): Promise<Claimed[]> {
    return claimDeliveries<ModelEvent>(pool, schema, transport.name, batchSize, leaseMs);
  }

  function backoffMs(attempts: number): number {
    const ceiling = Math.min(backoffCapMs, backoffBaseMs * 2 ** Math.min(attempts - 1, 30));
    // "Equal jitter": at least half the ceiling, so retries of one outage spread out but still back off.
    return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
  }

  /** Delivers one claimed row and records the outcome. Never throws. */
  async function deliverOne(transport: Transport, row: Claimed): Promise<{ ok: true } | { ok: false; error: string }> {
    try {
      await transport.deliver(row.payload);
    } catch (error) {
      const message = (error as Error).message || String(error);
      const parksByAttempts = error instanceof DeliveryRejectedError;
      const parksByAge = error instanceof DeliveryFailedError;
      metrics?.broadcastDeliveries.inc({ transport: transport.name, outcome: 'failed' });
      const delay = backoffMs(row.attempts);
      const dead = await recordDeliveryFailure(pool, schema, {
        transport: transport.name,
        seq: row.seq,
        attempts: row.attempts,
        retryInMs: delay,
        error: message.slice(0, 1_000),
        parksByAttempts,
        parksByAge,
        deadAfterAttempts,
        deadAfterMs,
      })
        // The lease runs out and the row is retried anyway.
        .catch((dbError: Error) => {
          log.warn({ err: dbError.message, transport: transport.name }, 'could not record a failed delivery');
          return false;
        });
      if (dead) {
        metrics?.deadDeliveries.inc({ transport: transport.name });
        log.error(
          { transport: transport.name, eventId: row.payload.eventId, modelId: row.payload.modelId, attempts: row.attempts, err: message },
          'broadcast delivery parked as dead: the receiver kept rejecting or failing on it; `astria-reconciler requeue-dead` sends it again',
        );
      }
      return { ok: false, error: message };
    }
    metrics?.broadcastDeliveries.inc({ transport: transport.name, outcome: 'delivered' });
    await recordDelivered(pool, schema, transport.name, row.seq)
      // Delivered but not recorded: it goes again after the lease, a duplicate consumers drop by eventId.
      .catch((dbError: Error) => log.warn({ err: dbError.message, transport: transport.name }, 'could not record a delivery'));
    return { ok: true };
  }

  /** `outbox_pending` and `outbox_oldest_pending_seconds` of one transport (dead deliveries left out). */
  async function refreshGauges(transport: Transport): Promise<void> {
    if (!metrics) return;
    try {
      const { pending, oldestSeconds } = await pendingDeliveries(pool, schema, transport.name);
      metrics.outboxPending.set({ transport: transport.name }, pending);
      metrics.outboxOldestPending.set({ transport: transport.name }, oldestSeconds);
    } catch (error) {
      log.debug({ err: (error as Error).message, transport: transport.name }, 'could not measure the broadcast outbox');
    }
  }

  async function loop(transport: Transport, signal: AbortSignal): Promise<void> {
    const wakeup = wakeups.get(transport.name)!;
    let lastWarned: string | null = null;
    let gaugesAt = -Infinity;
    while (!signal.aborted) {
      if (clock.now() - gaugesAt >= gaugeIntervalMs) {
        gaugesAt = clock.now();
        await refreshGauges(transport);
      }
      let batch: Claimed[] = [];
      try {
        batch = await claim(transport);
      } catch (error) {
        log.warn({ err: (error as Error).message, transport: transport.name }, 'could not read the broadcast outbox');
      }
      if (batch.length === 0) {
        await wakeup.wait(clock, pollIntervalMs, signal);
        continue;
      }
      // One row per model at most (order per model), so the whole batch may go at once.
      const outcomes = await Promise.all(batch.map((row) => deliverOne(transport, row)));
      const failures = outcomes.filter((outcome): outcome is { ok: false; error: string } => !outcome.ok);
      const delivered = outcomes.length - failures.length;
      if (failures.length > 0) {
        // During an outage every retry fails the same way: say so once per kind of failure, not per batch.
        const error = failures[0]!.error;
        const level = error === lastWarned ? 'debug' : 'warn';
        lastWarned = error;
        log[level]({ transport: transport.name, failed: failures.length, delivered, err: error }, 'broadcast delivery failed; will retry with backoff');
      } else {
        if (lastWarned !== null) log.info({ transport: transport.name }, 'broadcast deliveries succeed again');
        lastWarned = null;
        log.debug({ transport: transport.name, delivered }, 'broadcast delivered');
      }
      // The peer looks down: pause instead of burning through every pending model's first attempt.
      if (failures.length === outcomes.length) await sleep(clock, pollIntervalMs, signal);
    }
  }

  let running = false;
  return {
    async run(signal) {
      if (running) throw new Error('dispatcher is already running');
      running = true;
      try {
        // Nothing to deliver (BROADCAST=pg only): still a well-behaved loop that ends with the signal.
        if (options.transports.length === 0 && !signal.aborted) {
          await new Promise((resolve) => signal.addEventListener('abort', resolve, { once: true }));
        }
        await Promise.all(
          options.transports.map((transport) =>
            loop(transport, signal).catch((error: Error) =>
              log.error({ err: error.message, transport: transport.name }, 'broadcast loop stopped'),
            ),
          ),
        );
      } finally {
        running = false;
      }
    },
    kick() {
      for (const wakeup of wakeups.values()) wakeup.kick();
    },
  };
}

/** Sleeps `ms`, returning early (without throwing) when `signal` aborts. */
async function sleep(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return;
  await clock.sleep(ms, signal).catch(() => undefined);
}

/** A wait that a `kick()` ends early; a kick while nobody waits makes the next wait return at once. */
class Wakeup {
  private pending = false;
  private wake: (() => void) | undefined;

  kick(): void {
    this.pending = true;
    this.wake?.();
  }

  async wait(clock: Clock, ms: number, signal: AbortSignal): Promise<void> {
    if (this.pending || signal.aborted) {
      this.pending = false;
      return;
    }
    const stop = new AbortController();
    const onAbort = () => stop.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    const kicked = new Promise<void>((resolve) => (this.wake = resolve));
    try {
      await Promise.race([clock.sleep(ms, stop.signal).catch(() => undefined), kicked]);
    } finally {
      stop.abort();
      signal.removeEventListener('abort', onAbort);
      this.wake = undefined;
      this.pending = false;
    }
  }
}
