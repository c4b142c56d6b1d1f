import { promptSchema } from 'astria-reconciler';

/** Images one generation asks for, and what it costs: one credit each, given back if it fails. */
export const GENERATION_IMAGES = 4;
export const GENERATION_CREDITS = GENERATION_IMAGES;

/** Astria's gateway gives up after 30 s; we wait a little longer for its answer. */
const CREATE_TIMEOUT_MS = 35_000;

export class AstriaRequestError extends Error {}

/**
 * Asks Astria for images of a trained tune (`POST /tunes/:id/prompts`) and returns the prompt's id.
 * `ASTRIA_API_KEY` as for the sidecar; `ASTRIA_API_URL` (default Astria's) points tests at a fake.
 * Astria POSTs the finished prompt to `callback` once, never again: the sidecar recovers a lost one.
 */
export async function createAstriaPrompt(tuneId: string, text: string, callback: string): Promise<number> {
  const apiKey = process.env.ASTRIA_API_KEY;
  if (!apiKey) throw new Error('ASTRIA_API_KEY is not set');
  const baseUrl = (process.env.ASTRIA_API_URL ?? 'https://api.astria.ai').replace(/\/+$/, '');
  const response = await fetch(`${baseUrl}/tunes/${encodeURIComponent(tuneId)}/prompts`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: { text, num_images: GENERATION_IMAGES, callback } }),
    signal: AbortSignal.timeout(CREATE_TIMEOUT_MS),
  }).catch((error: unknown) => {
    throw new AstriaRequestError(`Astria could not be reached: ${(error as Error).message}`);
  });
  if (!response.ok) throw new AstriaRequestError(`Astria answered ${response.status} to the new prompt`);
  const prompt = promptSchema.safeParse(await response.json().catch(() => null));
  if (!prompt.success) throw new AstriaRequestError('Astria answered without a prompt');
  return prompt.data.id;
}
