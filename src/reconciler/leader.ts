import pg from 'pg';
import { holdsAdvisoryLock, pingSession, tryLeaderLock } from '../db/leader-lock.js';
import { sessionOptions } from '../db/pool.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics.js';

export interface LeaderElection {
  /** Becomes or stays the leader if it can; false when another replica leads or the database is away. */
  refresh(): Promise<boolean>;
  isLeader(): boolean;
  /** Aborted when the current term of leadership ends: work started as leader stops starting more. */
  termSignal(): AbortSignal;
  /** Gives the leadership up (at shutdown) so another replica takes over at once. */
  release(): Promise<void>;
}

export interface LeaderElectionOptions {
  databaseUrl: string;
  /** Replicas sharing this name elect one leader among them. */
  lockName: string;
  log: Logger;
  metrics: Metrics;
  connectTimeoutMs?: number;
  /**
   * While leading, the lock is verified this often (default 2 s): a pass checks leadership between
   * its calls, not only between passes, so a lost lock stops its Astria calls within seconds.
   */
  heartbeatMs?: number;
}

/**
 * Leadership is a session advisory lock held on a dedicated connection (Prisma's or any pool would hand
 * the session back and lose it). If the leader dies or its connection drops, PostgreSQL releases the
 * lock and the next replica to try takes it. The lock only decides who spends Astria's budget:
 * correctness rests on the compare-and-set writes, so a stale leader can never double-apply.
 */
export function createLeaderElection(options: LeaderElectionOptions): LeaderElection {
  let client: pg.Client | null = null;
  let leader = false;
  let term = new AbortController();
  let heartbeat: NodeJS.Timeout | undefined;

  const setLeader = (value: boolean) => {
    if (value !== leader) {
      options.log.info({ leader: value }, value ? 'became the leader' : 'no longer the leader');
      if (value) {
        term = new AbortController();
        heartbeat = setInterval(() => void beat(), options.heartbeatMs ?? 2_000);
        heartbeat.unref();
      } else {
        clearInterval(heartbeat);
        term.abort(new Error('leadership lost'));
      }
    }
    leader = value;
    options.metrics.isLeader.set(value ? 1 : 0);
  };

  /**
   * Proves the lock is still ours: the session may be gone (terminated, a path that dropped it) with
   * our side none the wiser; the query's timeout catches a path that answers nothing.
   */
  let beating = false;
  async function beat(): Promise<void> {
    const held = client;
    if (!held || !leader || beating) return;
    beating = true;
    try {
      if (!(await holdsAdvisoryLock(held)) && client === held) drop('advisory lock no longer held');
    } catch (error) {
      if (client === held) drop((error as Error).message);
    } finally {
      beating = false;
    }
  }

  const drop = (reason: string) => {
    if (!client) return;
    options.log.warn({ reason }, 'leader election connection lost');
    const lost = client;
    client = null;
    setLeader(false);
    lost.end().catch(() => undefined);
  };

  async function connect(): Promise<pg.Client> {
    const timeoutMs = options.connectTimeoutMs ?? 5_000;
    const fresh = new pg.Client({
      // Our keepalives survive a `?options=` in the URL (pg would let it replace them).
      ...sessionOptions(options.databaseUrl, ['-c tcp_keepalives_idle=10', '-c tcp_keepalives_interval=5', '-c tcp_keepalives_count=3']),
      application_name: 'astria-reconciler leader',
      connectionTimeoutMillis: timeoutMs,
      // A network partition closes nothing: our side gives up on a query that does not come back, and
      // the server's keepalives drop the dead session (and its lock) within ~25 s, well inside the
      // takeover window, instead of the kernel's default two hours.
      query_timeout: timeoutMs,
      keepAlive: true,
      keepAliveInitialDelayMillis: 10_000,
    });
    fresh.on('error', (error) => {
      if (client === fresh) drop(error.message);
    });
    fresh.on('end', () => {
      if (client === fresh) drop('connection ended');
    });
    await fresh.connect();
    return fresh;
  }

  return {
    isLeader: () => leader,
    termSignal: () => term.signal,

    async refresh() {
      try {
        client ??= await connect();
        if (leader) {
          await pingSession(client);
        } else {
          setLeader(await tryLeaderLock(client, options.lockName));
        }
      } catch (error) {
        drop((error as Error).message);
      }
      return leader;
    },

    async release() {
      const held = client;
      client = null;
      setLeader(false);
      // Ending the session releases the lock; no unlock round trip needed.
      await held?.end().catch(() => undefined);
    },
  };
}
