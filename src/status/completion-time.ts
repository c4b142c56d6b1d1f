/**
 * Whether Astria's `trained_at` can be the time an object was done. One before the object's own
 * `created_at` (1970, year 0001, a reset clock) or in the future would be written to the row and
 * poison every lag figure: then the time we observed it stands in, and no lag sample is taken.
 */

/** Astria's clocks may disagree by this much between creating an object and finishing it. */
const BEFORE_CREATION_TOLERANCE_MS = 60_000;
/** Our clock may be this far behind Astria's. */
const AHEAD_OF_NOW_TOLERANCE_MS = 5 * 60_000;

export function isPlausibleCompletion(doneAt: Date, createdAt: Date | null, now: Date): boolean {
  if (doneAt.getTime() > now.getTime() + AHEAD_OF_NOW_TOLERANCE_MS) return false;
  return createdAt === null || doneAt.getTime() >= createdAt.getTime() - BEFORE_CREATION_TOLERANCE_MS;
}
