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
  tune_id: tuneSchema.shape.id,
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

/**
 * A prompt is told apart from a tune by its shape: it names its `tune_id` and carries `text` or
 * `images`, which a tune never has (a tune's own reference is `base_tune_id`).
 */
export function isPromptShaped(value: unknown): boolean {
  return isObject(value) && 'tune_id' in value && ('text' in value || 'images' in value);
}

/** The prompts of a callback body, each validated on its own; `invalid` counts the ones that were not. */
export interface PromptCallback {
  prompts: Prompt[];
  invalid: number;
}

/**
 * Reads a prompt callback body: `{ "prompt": {...} }`, the bare prompt, or a pack's `prompts_callback`
 * array of prompts. Null when the body is none of these (a tune, or anything else). One invalid prompt
 * of a pack costs that prompt only.
 */
export function parsePromptCallback(body: unknown): PromptCallback | null {
  let candidates: unknown[];
  if (Array.isArray(body)) candidates = body;
  else if (isObject(body) && isObject(body.prompt) && !('tune' in body)) candidates = [body.prompt];
  else if (isPromptShaped(body)) candidates = [body];
  else return null;

  const prompts: Prompt[] = [];
  let invalid = 0;
  for (const candidate of candidates) {
    const parsed = promptSchema.safeParse(candidate);
    if (parsed.success) prompts.push(parsed.data);
    else invalid += 1;
  }
  return { prompts, invalid };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
