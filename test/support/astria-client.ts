import { pino } from 'pino';
import { createAstriaClient, type AstriaClient } from '../../src/astria/client.js';
import { systemClock } from '../../src/clock.js';
import type { Metrics } from '../../src/metrics.js';

/**
 * A client of the loopback fake Astria for in-process passes: no rate limit to speak of and retries a
 * few milliseconds apart, so a test of what a pass decides does not wait out production backoffs.
 */
export function fastAstriaClient(options: { apiUrl: string; apiKey: string; metrics: Metrics }): AstriaClient {
  return createAstriaClient({
    ...options,
    maxRps: 1_000,
    concurrency: 4,
    timeoutMs: 2_000,
    log: pino({ level: 'silent' }),
    clock: systemClock,
    retry: { attempts: 2, baseDelayMs: 1, maxDelayMs: 5 },
  });
}
