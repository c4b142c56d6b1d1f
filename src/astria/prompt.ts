import { z } from 'zod';
import { TUNE_ID_PATTERN, tuneSchema } from './tune.js';

/**
 * Prompt ids have the shape of tune ids (digits, at most 15) but are a sequence of their own: the same
 * number can name a tune and an unrelated prompt, so an id is never used without its kind.
 */
export const PROMPT_ID_PATTERN = TUNE_ID_PATTERN;
const promptIdRegExp = new RegExp(PROMPT_ID_PATTERN);

export function isPromptId(value: string | null | undefined): value is string {
  return typeof value === 'string' && promptIdRegExp.test(value);
}

/**
 * `images`: the URLs of the generated images, empty until the prompt is done. Read liberally: anything
 * that is not a non-empty string is dropped, so one odd element costs that image, not the prompt.
 */
const imageUrls = z
  .unknown()
  .optional()
  .transform((value) =>
    Array.isArray(value)
      ? value.filter((item): item is string => typeof item === 'string' && item.trim() !== '').map((url) => url.trim())
      : [],
  );

/**
 * A prompt as Astria returns it from `GET /tunes/:tune_id/prompts/:id`, `GET /prompts` and callbacks.
 * Ids and timestamps are read exactly as a tune's are (the same field schemas): `trained_at` is when
 * the images were done, and one that names no instant makes the prompt invalid, since COMPLETED hangs
 * on it; `started_training_at` and `created_at` count as absent when unusable. Astria documents
 * `user_error` as a prompt's failure; `status`, `error` and `error_message` are read as on tunes. Every
 * other field passes through untouched.
 */
export const promptSchema = z.looseObject({
  id: tuneSchema.shape.id,
  // Not needed to apply a prompt (its generation is found by the prompt's own id): one that is no id
  // reads as null rather than costing the prompt.
  tune_id: tuneSchema.shape.id.nullish().catch(null),
  images: imageUrls,
  trained_at: tuneSchema.shape.trained_at,
  started_training_at: tuneSchema.shape.started_training_at,
  created_at: tuneSchema.shape.started_training_at,
  status: z.unknown().optional(),
  user_error: z.unknown().optional(),
  error: z.unknown().optional(),
  error_message: z.unknown().optional(),
});

export type Prompt = z.output<typeof promptSchema>;

/** What we learned about one prompt: the prompt itself, or that Astria no longer has it (404). */
export type PromptObservation = { kind: 'prompt'; prompt: Prompt } | { kind: 'gone'; promptId: string };
