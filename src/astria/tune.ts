import { z } from 'zod';

/**
 * Tune ids are digits only; anything else in `trainingJobId` is reported and never sent to Astria.
 * At most 15 digits, so every id is exact as a JavaScript number and as a Postgres bigint.
 */
export const TUNE_ID_PATTERN = '^[1-9][0-9]{0,14}$';
const tuneIdRegExp = new RegExp(TUNE_ID_PATTERN);

const ISO_TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})?$/;

/** ISO-8601 timestamp as Astria sends it; parsed to a Date (UTC when no offset is given), null when absent. */
const timestamp = z
  .string()
  .nullish()
  .transform((value, ctx) => {
    if (value == null || value === '') return null;
    const match = ISO_TIMESTAMP.exec(value);
    const date = new Date(match && !match[3] ? `${value}Z` : value);
    // Years PostgreSQL's timestamp(3) cannot hold (or no tune can have) are as bad as garbage.
    if (!match || Number.isNaN(date.getTime()) || date.getUTCFullYear() < 1970 || date.getUTCFullYear() > 9999) {
      ctx.addIssue({ code: 'custom', message: `not a timestamp: ${value}` });
      return z.NEVER;
    }
    return date;
  });

/**
 * A tune as Astria returns it from `GET /tunes/:id`, `GET /tunes` and callbacks. Only the fields the
 * status rules read are declared; everything else passes through untouched. Astria documents no
 * failure shape, so `status`, `error` and `error_message` are optional and accepted in any form seen.
 */
export const tuneSchema = z.looseObject({
  id: z.union([z.number().int().positive().max(Number.MAX_SAFE_INTEGER), z.string().regex(tuneIdRegExp).transform(Number)]),
  title: z.string().nullish(),
  trained_at: timestamp,
  started_training_at: timestamp,
  eta: timestamp,
  created_at: timestamp,
  status: z.string().nullish(),
  error: z.unknown().optional(),
  error_message: z.unknown().optional(),
});

export type Tune = z.output<typeof tuneSchema>;

/** A callback body: `{ "tune": {...} }` or the bare tune. */
export const callbackBodySchema = z.union([z.object({ tune: tuneSchema }).transform((body) => body.tune), tuneSchema]);

export function isTuneId(value: string | null | undefined): value is string {
  return typeof value === 'string' && tuneIdRegExp.test(value);
}

/** What we learned about one tune: the tune itself, or that Astria no longer has it (404). */
export type Observation = { kind: 'tune'; tune: Tune } | { kind: 'gone'; tuneId: string };
