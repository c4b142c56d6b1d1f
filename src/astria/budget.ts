import type { Clock } from '../clock.js';

/**
 * The request budget shared by every call to Astria from this process.
 *
 * Requests are spaced evenly at the current rate (no bursts: Astria's limit is undocumented and a
 * burst is what trips it). A 429 pauses everyone until its `Retry-After` (or a backoff) and halves the
 * rate; each success wins back a twentieth of the ceiling, so the rate climbs back within a few seconds
 * once Astria stops complaining.
 */
export class RequestBudget {
  private rate: number;
  private nextSlotAt = 0;
  private pausedUntil = 0;

  constructor(
    private readonly ceiling: number,
    private readonly clock: Clock,
  ) {
    this.rate = ceiling;
  }

  get currentRate(): number {
    return this.rate;
  }

  /** Waits for this caller's turn. Turns are handed out in call order. */
  async take(signal?: AbortSignal): Promise<void> {
    for (;;) {
      const now = this.clock.now();
      const slot = Math.max(now, this.nextSlotAt, this.pausedUntil);
      this.nextSlotAt = slot + 1000 / this.rate;
      if (slot > now) await this.clock.sleep(slot - now, signal);
      // A 429 seen while we slept moves the pause past our slot: wait again rather than add to it.
      if (this.clock.now() >= this.pausedUntil) return;
    }
  }

  rateLimited(pauseMs: number): void {
    this.rate = Math.max(this.ceiling / 32, this.rate / 2);
    this.pausedUntil = Math.max(this.pausedUntil, this.clock.now() + pauseMs);
    this.nextSlotAt = Math.max(this.nextSlotAt, this.pausedUntil);
  }

  succeeded(): void {
    this.rate = Math.min(this.ceiling, this.rate + this.ceiling / 20);
  }
}
