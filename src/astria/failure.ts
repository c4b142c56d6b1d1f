/**
 * How Astria (or an integration in front of it) says an object failed. Astria documents no failure
 * shape for tunes and only `user_error` for prompts; the shapes seen in the wild are a `status` of
 * failed / cancelled / canceled / error, and a non-empty `user_error`, `error_message` or `error`, each a
 * string or an object with a message. Shared by tunes and prompts so both read failure alike.
 */
export interface FailureFields {
  status?: unknown;
  user_error?: unknown;
  error_message?: unknown;
  error?: unknown;
}

const FAILED_STATUSES = new Set(['failed', 'error']);
const CANCELLED_STATUSES = new Set(['cancelled', 'canceled']);

/**
 * A human message for a failed object, `activity` naming what failed ("Astria training"), or null when
 * none of the fields says it failed. The message is not yet bounded: the caller makes it safe to write.
 */
export function failureMessage(fields: FailureFields, activity: string): string | null {
  const detail = describe(fields.user_error) ?? describe(fields.error_message) ?? describe(fields.error);
  // A `status` that is not a string says nothing we can read.
  const status = typeof fields.status === 'string' ? fields.status.trim().toLowerCase() : undefined;
  const verb = status && CANCELLED_STATUSES.has(status) ? 'was cancelled' : 'failed';
  const failedByStatus = status !== undefined && (FAILED_STATUSES.has(status) || CANCELLED_STATUSES.has(status));
  if (!failedByStatus && detail === null) return null;
  return `${activity} ${verb}${detail ? `: ${detail}` : ''}`;
}

function describe(value: unknown): string | null {
  if (typeof value === 'string') return value.trim() || null;
  if (value && typeof value === 'object') {
    const message = (value as { message?: unknown }).message;
    if (typeof message === 'string' && message.trim()) return message.trim();
    let text: string;
    try {
      text = JSON.stringify(value);
    } catch {
      return 'unreadable error detail'; // nested too deep to print, or circular
    }
    return text === '{}' || text === '[]' ? null : text;
  }
  return null;
}
