/**
 * The prompt object as Astria's docs show it for `GET /tunes/:tune_id/prompts/:id`, done: with its
 * `images`, which the documented example (a prompt still queued) leaves out. `overrides` replace or add
 * fields; each call returns a fresh object.
 */
export function documentedPrompt(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  const id = (overrides.id as number | undefined) ?? 1;
  const tuneId = (overrides.tune_id as number | undefined) ?? 1;
  return {
    id,
    callback: 'https://optional-callback-url.com/to-your-service-when-ready',
    text: 'a painting of ohwx man in the style of Van Gogh',
    negative_prompt: 'old, blemish, wrinkles, mole',
    cfg_scale: null,
    steps: null,
    seed: null,
    trained_at: '2022-10-06T16:13:40.115Z',
    started_training_at: '2022-10-06T16:12:58.010Z',
    created_at: '2022-10-06T16:12:54.505Z',
    updated_at: '2022-10-06T16:13:40.115Z',
    tune_id: tuneId,
    url: `http://api.astria.ai/tunes/${tuneId}/prompts/${id}.json`,
    images: [`https://sdbooth2-production.s3.amazonaws.com/${id}-1.jpg`, `https://sdbooth2-production.s3.amazonaws.com/${id}-2.jpg`],
    ...overrides,
  };
}
