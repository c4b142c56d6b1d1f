import { z } from 'zod';
import { astriaIdSchema, tuneSchema, type Tune } from './tune.js';

/**
 * A prompt (an image generation) as Astria POSTs it to `prompt[callback]`: only its `id` is typed
 * here; everything else (`tune_id`, `text`, `images`, `trained_at`, ...) passes through as sent.
 */
export const promptCallbackSchema = z.looseObject({ id: astriaIdSchema });
export type PromptCallback = z.output<typeof promptCallbackSchema>;

/** What one callback body is: a tune, one or more prompts, or nothing Astria sends. */
export type CallbackBody =
  | { kind: 'tune'; tune: Tune }
  | { kind: 'prompts'; prompts: PromptCallback[] }
  | { kind: 'invalid'; reason: string; issues: z.core.$ZodIssue[] };

/** Fields a prompt has and a tune never has (a tune's images are `orig_images`). */
const PROMPT_ONLY_FIELDS = ['tune_id', 'text', 'images'] as const;

/**
 * Tells Astria's callback bodies apart by their shape, for apps that point tune and prompt callbacks at
 * one route. A prompt is never to be applied to a model (prompt ids and tune ids are separate sequences
 * that collide), so wherever a body could be either, it is a prompt:
 * - a JSON array is a pack's `prompts_callback`: every element a prompt;
 * - an object whose `prompt` is an object is a prompt, even if it also has a `tune`;
 * - otherwise the object, or its `tune` when that is an object, is a prompt if it has any of
 *   `tune_id`, `text`, `images` (whatever else it has, `id` included), and a tune if not.
 * A tune mistaken for a prompt costs only the callback (the reconciler still finds the tune trained);
 * a prompt mistaken for a tune would mark someone else's model READY or ERROR.
 */
export function parseCallbackBody(json: unknown): CallbackBody {
  if (Array.isArray(json)) return prompts(json);
  if (!isObject(json)) return invalid('body is not an Astria tune or prompt', []);
  if (isObject(json.prompt)) return prompts([json.prompt]);
  const inner = isObject(json.tune) ? json.tune : json;
  if (PROMPT_ONLY_FIELDS.some((field) => Object.hasOwn(inner, field))) return prompts([inner]);
  const parsed = tuneSchema.safeParse(inner);
  return parsed.success ? { kind: 'tune', tune: parsed.data } : invalid('body is not an Astria tune', parsed.error.issues);
}

function prompts(items: unknown[]): CallbackBody {
  const parsed = z.array(promptCallbackSchema).safeParse(items);
  return parsed.success ? { kind: 'prompts', prompts: parsed.data } : invalid('body is not an Astria prompt', parsed.error.issues);
}

function invalid(reason: string, issues: z.core.$ZodIssue[]): CallbackBody {
  return { kind: 'invalid', reason, issues };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
