import type { DiagnosedGeneration, DiagnosedModel } from '../db/diagnosis.js';

/**
 * Astria's view of the object (a tune or a prompt), as `diagnose` prints it. A prompt's state uses
 * Astria's own words for it as for a tune (`started_training_at`, `trained_at`: its images are done).
 */
export interface AstriaView {
  /** `unavailable`: asked, no answer (why: `reason`); `gone`: Astria answered 404. */
  state: 'queued' | 'training' | 'trained' | 'failed' | 'gone' | 'unavailable';
  reason?: string;
  id?: number;
  /** A tune's title. */
  title?: string | null;
  /** A prompt's tune. */
  tuneId?: number | null;
  /** A prompt's images (counted: the URLs are the user's). */
  imageCount?: number;
  /** A prompt's failure field. */
  userError?: unknown;
  createdAt?: string | null;
  startedTrainingAt?: string | null;
  eta?: string | null;
  trainedAt?: string | null;
  status?: unknown;
  errorMessage?: unknown;
  error?: unknown;
  /** Astria's `callback`, origin and path only: the query carries the secret. */
  callback?: string | null;
}

export interface TimelineEntry {
  /** ISO instant, UTC. */
  at: string;
  kind: 'astria_created' | 'astria_started' | 'astria_finished' | 'callback_arrived' | 'transition' | 'delivery';
  text: string;
  [detail: string]: unknown;
}

/** The link of the chain that broke, or that nothing did. `code` is stable (listed in the README). */
export interface Verdict {
  code: string;
  message: string;
  next: string;
  /** A link is broken: exit code 3. */
  broken: boolean;
}

/** One object diagnosed: `--json` prints these fields (`broken` left out of the verdict). */
export interface Diagnosis {
  kind: 'model' | 'generation';
  id: string;
  /** The database's clock when it was read. */
  now: string;
  row: DiagnosedModel | DiagnosedGeneration | null;
  astria: AstriaView | null;
  timeline: TimelineEntry[];
  verdict: Verdict;
}

/** `3m 05s ago`: the span from `fromIso` to `toIso` (none when `toIso` is earlier). */
export function formatAgo(fromIso: string, toIso: string): string {
  return `${formatSpan(Math.max(0, Date.parse(toIso) - Date.parse(fromIso)))} ago`;
}

/** `1.8s`, `4m 05s`, `2h 03m`, `1d 04h`. */
export function formatSpan(ms: number): string {
  const s = ms / 1000;
  if (s < 60) return `${s < 10 ? s.toFixed(1) : Math.round(s)}s`;
  const whole = Math.round(s);
  const pad = (n: number) => String(n).padStart(2, '0');
  if (whole < 3_600) return `${Math.floor(whole / 60)}m ${pad(whole % 60)}s`;
  if (whole < 86_400) return `${Math.floor(whole / 3_600)}h ${pad(Math.floor((whole % 3_600) / 60))}m`;
  return `${Math.floor(whole / 86_400)}d ${pad(Math.floor((whole % 86_400) / 3_600))}h`;
}
