import type { z } from 'zod';
import { promptSchema, type Prompt } from './prompt.js';
import { tuneSchema, type Tune } from './tune.js';

/**
 * What one callback body is: a tune, one or more prompts (`invalid` counts a pack's prompts that did
 * not validate: one bad prompt costs that prompt only), or nothing Astria sends.
 */
export type CallbackBody =
  | { kind: 'tune'; tune: Tune }
  | { kind: 'prompts'; prompts: Prompt[]; invalid: number }
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
  const valid: Prompt[] = [];
  let firstIssues: z.core.$ZodIssue[] | null = null;
  for (const item of items) {
    const parsed = promptSchema.safeParse(item);
    if (parsed.success) valid.push(parsed.data);
    else firstIssues ??= parsed.error.issues;
  }
  // Nothing readable at all is a malformed body; an empty pack is a pack with nothing to apply.
  if (valid.length === 0 && firstIssues !== null) return invalid('body is not an Astria prompt', firstIssues);
  return { kind: 'prompts', prompts: valid, invalid: items.length - valid.length };
}

function invalid(reason: string, issues: z.core.$ZodIssue[]): CallbackBody {
  return { kind: 'invalid', reason, issues };
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
