/**
 * Polling paused while Astria rejects the API key (pure: time as an argument). The key is tried again
 * every `retryEveryMs` (`RECONCILER_AUTH_RETRY`); any answer from Astria ends the pause.
 */
export class AuthPause {
  private retryAt: number | null = null;

  constructor(private readonly retryEveryMs: number) {}

  get paused(): boolean {
    return this.retryAt !== null;
  }

  /** When the key is tried next; null when not paused. */
  get nextTryAt(): number | null {
    return this.retryAt;
  }

  /** Whether Astria may be called now: not paused, or the time to try the key again has come. */
  mayCall(now: number): boolean {
    return this.retryAt === null || now >= this.retryAt;
  }

  /** Astria rejected the key (or a try of it met another failure): the next try is one retry period away. */
  rejected(now: number): void {
    this.retryAt = now + this.retryEveryMs;
  }

  /** Astria answered a request: true when that ends a pause. */
  accepted(): boolean {
    const ended = this.paused;
    this.retryAt = null;
    return ended;
  }
}
