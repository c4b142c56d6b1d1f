/**
 * A discrete-event clock for benchmarks that drive the real daemon over real I/O (PostgreSQL, loopback
 * HTTP) in virtual time.
 *
 * `sleep(ms)` registers a timer at a virtual deadline. Virtual time stands still while work is under
 * way and jumps to the earliest deadline only once the process is otherwise idle:
 *   - work under way = a tracked database call (`trackPool`) or an undici request between its
 *     `undici:request:create` and `undici:request:trailers`/`error` diagnostics events
 *     (`trackUndiciRequests`): the Astria client's calls, whatever dispatcher it uses;
 *   - idle = nothing tracked is under way, and nothing happened (no timer registered or resolved, no
 *     tracked work started or ended) for `QUIET_ROUNDS` consecutive `setImmediate` turns, which lets
 *     promise chains, `process.nextTick` and stream callbacks triggered by the last I/O settle first.
 * Timers then fire one at a time, earliest first (ties in registration order), each followed by the
 * same idle check. So a database write or an Astria round trip takes zero virtual time, and a 30 s
 * daemon sleep takes zero real time.
 */
import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import type pg from 'pg';
import type { Clock } from '../src/clock.js';
import type { LeaderElection } from '../src/reconciler/leader.js';

const QUIET_ROUNDS = 3;

interface Timer {
  at: number;
  seq: number;
  resolve: () => void;
}

export interface VirtualClockOptions {
  /** Virtual time at start (epoch ms). */
  start: number;
  /**
   * Called instead of advancing when the earliest deadline lies beyond `stopAt`: the run is over (the
   * callback typically aborts the signals the sleepers passed). Virtual time stays where it is.
   */
  stopAt?: number;
  onStop?: () => void;
}

export class VirtualClock implements Clock {
  private t: number;
  private timers: Timer[] = [];
  private seq = 0;
  private busy = 0;
  /** Bumped by anything that happens; an idle check restarts when it moved. */
  private epoch = 0;
  private checking = false;
  private stopped = false;
  /** Timers fired (virtual time advanced to a deadline). */
  advances = 0;

  constructor(private readonly options: VirtualClockOptions) {
    this.t = options.start;
  }

  now(): number {
    return this.t;
  }

  /** Timers registered and not yet fired or aborted. */
  get pending(): number {
    return this.timers.length;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      if (signal?.aborted) {
        reject(signal.reason);
        return;
      }
      const onAbort = () => {
        this.timers = this.timers.filter((other) => other !== timer);
        this.touch();
        reject(signal!.reason);
      };
      const timer: Timer = {
        at: this.t + Math.max(0, ms),
        seq: this.seq++,
        resolve: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.timers.push(timer);
      this.touch();
    });
  }

  /** Work under way: virtual time does not move until `end()`. */
  begin(): void {
    this.busy += 1;
    this.epoch += 1;
  }

  end(): void {
    this.busy -= 1;
    this.touch();
  }

  track<T>(work: Promise<T>): Promise<T> {
    this.begin();
    return work.finally(() => this.end());
  }

  private touch(): void {
    this.epoch += 1;
    this.scheduleIdleCheck();
  }

  private scheduleIdleCheck(): void {
    if (this.checking || this.stopped || this.timers.length === 0) return;
    this.checking = true;
    const check = (epoch: number, rounds: number) =>
      setImmediate(() => {
        if (this.busy > 0 || this.timers.length === 0) {
          this.checking = false; // `end()` or `sleep()` starts the next check
          return;
        }
        if (this.epoch !== epoch) return check(this.epoch, 0);
        if (rounds + 1 < QUIET_ROUNDS) return check(epoch, rounds + 1);
        this.checking = false;
        this.fireNext();
      });
    check(this.epoch, 0);
  }

  private fireNext(): void {
    let index = 0;
    for (let i = 1; i < this.timers.length; i += 1) {
      const a = this.timers[i]!;
      const b = this.timers[index]!;
      if (a.at < b.at || (a.at === b.at && a.seq < b.seq)) index = i;
    }
    const next = this.timers[index]!;
    if (this.options.stopAt !== undefined && next.at > this.options.stopAt) {
      this.stopped = true;
      this.options.onStop?.();
      return;
    }
    this.timers.splice(index, 1);
    this.t = Math.max(this.t, next.at);
    this.advances += 1;
    next.resolve();
    this.touch();
  }
}

/**
 * Counts every undici request (the Astria client's included) as work under way on `clock`, from its
 * creation to its completion or error. Returns the unsubscribe function.
 */
export function trackUndiciRequests(clock: VirtualClock): () => void {
  const open = new WeakSet<object>();
  const onCreate = (message: unknown) => {
    const { request } = message as { request: object };
    open.add(request);
    clock.begin();
  };
  const onDone = (message: unknown) => {
    const { request } = message as { request: object };
    if (!open.delete(request)) return;
    clock.end();
  };
  subscribe('undici:request:create', onCreate);
  subscribe('undici:request:trailers', onDone);
  subscribe('undici:request:error', onDone);
  return () => {
    unsubscribe('undici:request:create', onCreate);
    unsubscribe('undici:request:trailers', onDone);
    unsubscribe('undici:request:error', onDone);
  };
}

/**
 * The pool as the reconciler uses it (`query`, `connect` → `query`/`release`), with every query and
 * every checked-out connection counted as work under way on `clock`.
 */
export function trackPool(pool: pg.Pool, clock: VirtualClock): pg.Pool {
  const tracked = {
    query: (...args: unknown[]) => clock.track((pool.query as (...a: unknown[]) => Promise<unknown>)(...args)),
    connect: async () => {
      clock.begin();
      let client: pg.PoolClient;
      try {
        client = await pool.connect();
      } catch (error) {
        clock.end();
        throw error;
      }
      const release = client.release.bind(client);
      let released = false;
      client.release = (destroy?: boolean | Error) => {
        if (!released) {
          released = true;
          clock.end();
        }
        release(destroy);
      };
      return client;
    },
    end: () => pool.end(),
    on: (...args: Parameters<pg.Pool['on']>) => pool.on(...args),
  };
  return tracked as unknown as pg.Pool;
}

/**
 * The leader election with each `refresh` counted as work under way on `clock` (its statement runs on
 * the election's own connection, which `trackPool` does not see): without it virtual time could run on
 * while the daemon waits for the lock. `onRefresh` counts the refresh's one statement.
 */
type DaemonLeader = Pick<LeaderElection, 'refresh' | 'termSignal'>;

export function trackLeader(leader: DaemonLeader, clock: VirtualClock, onRefresh: () => void = () => undefined): DaemonLeader {
  return {
    refresh: () => {
      onRefresh();
      return clock.track(leader.refresh());
    },
    termSignal: () => leader.termSignal(),
  };
}
