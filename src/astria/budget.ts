import type { Clock } from '../clock.js';

const WINDOW_MS = 1_000;
/**
 * Requests reach Astria a few milliseconds after we send them, and not all equally late: counting our
 * window 5% wider keeps Astria's own count under the ceiling too.
 */
const WINDOW_MARGIN_MS = 50;

/**
 * The request budget shared by every call to Astria from this process.
 *
 * Requests are spaced evenly at the current rate (no bursts: Astria's limit is undocumented and a
 * burst is what trips it), and on top of that no more than `ceiling` requests are ever sent in any
 * one-second window, counted by when they actually went out: a timer that fires late must not let the
 * next requests bunch up behind it. A 429 pauses everyone until its `Retry-After` (or a backoff) and
 * halves the rate; each success wins back a twentieth of the ceiling.
 */
export class RequestBudget {
  private rate: number;
  private nextSlotAt = 0;
  private pausedUntil = 0;
  /** When the last `perWindow` requests went out, oldest first. */
  private readonly sent: number[] = [];
  private readonly perWindow: number;

  constructor(
    private readonly ceiling: number,
    private readonly clock: Clock,
  ) {
    this.rate = ceiling;
    this.perWindow = Math.max(1, Math.floor(ceiling));
  }

  get currentRate(): number {
    return this.rate;
  }

  /** Waits for this caller's turn. Turns are handed out in call order. */
  async take(signal?: AbortSignal): Promise<void> {
    for (;;) {
      const now = this.clock.now();
      const slot = Math.max(now, this.nextSlotAt, this.pausedUntil, this.windowOpensAt());
      this.nextSlotAt = slot + 1000 / this.rate;
      if (slot > now) await this.clock.sleep(slot - now, signal);
      // A 429 seen while we slept, or a late timer ahead of us, may have moved our turn: check again.
      const sentAt = this.clock.now();
      if (sentAt >= this.pausedUntil && sentAt >= this.windowOpensAt()) {
        this.sent.push(sentAt);
        if (this.sent.length > this.perWindow) this.sent.shift();
        return;
      }
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

  /** Earliest time one more request keeps every one-second window within the ceiling. */
  private windowOpensAt(): number {
    return this.sent.length < this.perWindow ? 0 : this.sent[0]! + WINDOW_MS + WINDOW_MARGIN_MS;
  }
}
