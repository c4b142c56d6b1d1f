import type pg from 'pg';
import { pingDatabase } from '../db/inflight.js';
import type { LeaderElection } from './leader.js';

/**
 * The daemon's view of the leader election: whether this replica leads, a database that cannot hold
 * an election told apart from another replica leading, and the signal that stops a round at shutdown
 * or when the term ends.
 */
export class Leadership {
  /** Shutdown or the end of this term, combined once per term (each combination costs memory for as long as `shutdown` lives). */
  private combined: { term: AbortSignal; signal: AbortSignal } | null = null;

  constructor(
    private readonly election: Pick<LeaderElection, 'refresh' | 'termSignal'>,
    private readonly pool: pg.Pool,
    private readonly shutdown: AbortSignal,
  ) {}

  /** True while this replica leads, false while another does; throws when the database cannot be reached. */
  async attempt(): Promise<boolean> {
    if (await this.election.refresh()) return true;
    await pingDatabase(this.pool);
    return false;
  }

  /** Aborts at shutdown and when the current term of leadership ends. */
  roundSignal(): AbortSignal {
    const term = this.election.termSignal();
    if (this.combined?.term !== term) this.combined = { term, signal: AbortSignal.any([this.shutdown, term]) };
    return this.combined.signal;
  }

  /** Whether `error` is a round being cut short by the end of its term (no failure: another replica polls now). */
  cutShort(error: unknown): boolean {
    return this.combined !== null && this.combined.signal.aborted && error === this.combined.signal.reason;
  }
}
