import { z } from 'zod';

/**
 * Tune ids are digits only; anything else in `trainingJobId` is reported and never sent to Astria.
 * At most 15 digits, so every id is exact as a JavaScript number and as a Postgres bigint.
 */
export const TUNE_ID_PATTERN = '^[1-9][0-9]{0,14}$';
const tuneIdRegExp = new RegExp(TUNE_ID_PATTERN);

/**
 * ISO-8601 as Astria (or a proxy re-serializing it) may write it: `T` or a space between date and
 * time, seconds and fractions optional, an offset of `Z`, `±hh`, `±hhmm` or `±hh:mm`, or none (UTC).
 * A leap second (`23:59:60`) is read as the last millisecond before it, `23:59:59.999`: a Date has no
 * 61st second, and a timestamp that names a real instant must not cost the whole tune.
 */
const ISO_TIMESTAMP =
  /^(\d{4})-(\d{2})-(\d{2})(?:[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?\s*([Zz]|[+-]\d{2}(?::?\d{2})?)?$/;

/** The instant an ISO-8601 text names, or null when it names none (garbage, month 13, February 30th). */
export function parseTimestamp(text: string): Date | null {
  const match = ISO_TIMESTAMP.exec(text.trim());
  if (!match) return null;
  const [, year, month, day, hour = '00', minute = '00', second = '00', fraction = '', offset = 'Z'] = match;
  const zone = /^[+-]/.test(offset) ? `${offset.slice(0, 3)}:${offset.slice(3).replace(':', '') || '00'}` : 'Z';
  const leapSecond = second === '60';
  const millis = leapSecond ? '999' : fraction.padEnd(3, '0').slice(0, 3);
  const date = new Date(`${year}-${month}-${day}T${hour}:${minute}:${leapSecond ? '59' : second}.${millis}${zone}`);
  if (Number.isNaN(date.getTime())) return null;
  // Date accepts February 31st as March 3rd: the calendar day must exist as written.
  const calendar = new Date(Date.UTC(Number(year), Number(month) - 1, Number(day)));
  return calendar.getUTCMonth() === Number(month) - 1 && calendar.getUTCDate() === Number(day) ? date : null;
}

/**
 * `trained_at`: the rules write it to `trainedAt` and READY hangs on it, so a value that names no
 * instant a timestamp(3) column and an ISO string can both hold makes the tune unusable.
 */
const trainedAt = z.unknown().optional().transform((value, ctx) => {
  if (value == null || value === '') return null;
  const date = typeof value === 'string' ? parseTimestamp(value) : null;
  if (!date || date.getUTCFullYear() < 1 || date.getUTCFullYear() > 9999) {
    // Not String(value): an object whose toString is no function would throw instead of failing the parse.
    ctx.addIssue({ code: 'custom', message: `not a timestamp: ${typeof value === 'string' ? value.slice(0, 100) : typeof value}` });
    return z.NEVER;
  }
  return date;
});

/**
 * `started_training_at` and `eta` only feed the progress estimate and PROCESSING → TRAINING: an
 * unusable value counts as absent rather than costing the whole tune (its `trained_at` or failure).
 */
const estimateInput = z.unknown().optional().transform((value) => (typeof value === 'string' ? parseTimestamp(value) : null));

/** An Astria object id (tunes and prompts alike): a positive integer, or its digits as a string. */
export const astriaIdSchema = z.union([z.number().int().positive().max(Number.MAX_SAFE_INTEGER), z.string().regex(tuneIdRegExp).transform(Number)]);

/**
 * A tune as Astria returns it from `GET /tunes/:id`, `GET /tunes` and callbacks. Only what the status
 * rules must have typed is declared (`id`, the three timestamps, the failure fields); everything else
 * — `title`, `created_at`, new fields — passes through untouched in whatever shape it comes. Astria
 * documents no failure shape, so `status`, `error`, `error_message` and `user_error` are accepted in
 * any form; the rules use what they can read of them.
 */
export const tuneSchema = z.looseObject({
  id: astriaIdSchema,
  trained_at: trainedAt,
  started_training_at: estimateInput,
  eta: estimateInput,
  status: z.unknown().optional(),
  error: z.unknown().optional(),
  error_message: z.unknown().optional(),
  user_error: z.unknown().optional(),
});

export type Tune = z.output<typeof tuneSchema>;

export function isTuneId(value: string | null | undefined): value is string {
  return typeof value === 'string' && tuneIdRegExp.test(value);
}

/** What we learned about one tune: the tune itself, or that Astria no longer has it (404). */
export type Observation = { kind: 'tune'; tune: Tune } | { kind: 'gone'; tuneId: string };
