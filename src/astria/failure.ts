/**
 * How Astria (or an integration in front of it) says an object failed. Astria documents no failure
 * shape for tunes and only `user_error` for prompts; the shapes seen in the wild are a `status` of
 * failed / error / cancelled / canceled, or a non-empty `user_error`, `error_message` or `error` (a
 * string, or an object with a message). Shared by tunes and prompts so both read failure alike.
 */
export interface FailureFields {
  status?: unknown;
  user_error?: unknown;
  error_message?: unknown;
  error?: unknown;
}

/** `status` values that mean the object ended without a result, and how the message says it. */
const FAILED_STATUSES: ReadonlyMap<string, string> = new Map([
  ['failed', 'failed'],
  ['error', 'failed'],
  ['cancelled', 'was cancelled'],
  ['canceled', 'was cancelled'],
]);

/**
 * A human message for a failed object, `activity` naming what failed ("Astria training"), or null when
 * none of the fields says it failed. The first readable of `user_error`, `error_message`, `error` is
 * the reason shown. The message is not yet bounded: the caller makes it safe to write.
 */
export function failureMessage(fields: FailureFields, activity: string): string | null {
  const detail = describe(fields.user_error) ?? describe(fields.error_message) ?? describe(fields.error);
  // Astria documents no `status`: one that is not a string says nothing we can read.
  const verb = typeof fields.status === 'string' ? FAILED_STATUSES.get(fields.status.trim().toLowerCase()) : undefined;
  if (verb === undefined && detail === null) return null;
  return `${activity} ${verb ?? 'failed'}${detail ? `: ${detail}` : ''}`;
}

/** Fields of an error object that hold its message, in the order they are looked at. */
const MESSAGE_FIELDS = ['message', 'error', 'detail'] as const;
/** How deep an error object's message fields are followed (`{"error": {"message": ...}}` is two). */
const MAX_MESSAGE_DEPTH = 3;

/**
 * A failure field as text for people: a string as it is; an object by its message (`message`,
 * `error` or `detail`, themselves strings or objects), else as compact JSON of what it holds. Null
 * when it says nothing: absent, blank, a number or boolean, or an object or array holding only nulls,
 * blanks and empty ones (`{"message": null}` is a serializer's "no error", not a failure).
 */
function describe(value: unknown, depth = 0): string | null {
  if (typeof value === 'string') return value.trim() || null;
  if (!value || typeof value !== 'object') return null;
  if (!Array.isArray(value) && depth < MAX_MESSAGE_DEPTH) {
    for (const field of MESSAGE_FIELDS) {
      const message = describe((value as Record<string, unknown>)[field], depth + 1);
      if (message !== null) return message;
    }
  }
  const content = withoutBlanks(value, 0);
  if (content === undefined) return null;
  try {
    return JSON.stringify(content);
  } catch {
    return 'unreadable error detail'; // nested too deep to print
  }
}

/** Deeper than this, a value is kept whole: printing it is JSON.stringify's problem (or its failure). */
const MAX_PRUNE_DEPTH = 20;

/** `value` without nulls, blank strings and the objects and arrays left empty by their removal; undefined when nothing is left. */
function withoutBlanks(value: unknown, depth: number): unknown {
  if (value === null || value === undefined) return undefined;
  if (typeof value === 'string') return value.trim() ? value : undefined;
  if (typeof value !== 'object' || depth >= MAX_PRUNE_DEPTH) return value;
  if (Array.isArray(value)) {
    const items = value.map((item) => withoutBlanks(item, depth + 1)).filter((item) => item !== undefined);
    return items.length > 0 ? items : undefined;
  }
  const entries = Object.entries(value)
    .map(([key, item]) => [key, withoutBlanks(item, depth + 1)] as const)
    .filter(([, item]) => item !== undefined);
  return entries.length > 0 ? Object.fromEntries(entries) : undefined;
}
