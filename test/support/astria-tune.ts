/**
 * The tune object exactly as Astria's docs show it for `GET /tunes/:id`, as raw JSON. `overrides` replace or add fields (`id` included); each call returns a fresh object.
 */
export function documentedTune(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: 1,
    title: 'John Doe',
    name: 'woman',
    is_api: false,
    token: 'ohwx',
    base_tune_id: null,
    args: null,
    steps: null,
    face_crop: null,
    ckpt_url: 'https://example.test/mock',
    ckpt_urls: ['https://example.test/mock'],
    eta: '2023-10-02T14:32:40.363Z',
    trained_at: '2023-10-02T14:32:40.363Z',
    started_training_at: '2023-10-02T14:32:05.229Z',
    expires_at: '2023-11-01T14:32:40.363Z',
    created_at: '2023-10-02T14:32:05.067Z',
    updated_at: '2023-10-02T14:32:40.363Z',
    branch: 'sdxl1',
    model_type: 'lora',
    url: 'https://www.astria.ai/tunes/788416.json',
    orig_images: ['https://example.test/mock'],
    ...overrides,
  };
}

/**
 * A finished prompt (an image generation) as Astria's docs show it, as raw JSON, with its images;
 * `overrides` replace or add fields. Its id is deliberately a plausible tune id too: the two sequences collide.
 */
export function documentedPrompt(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    id: 1,
    callback: 'https://optional-callback-url.com/to-your-service-when-ready?prompt_id=1',
    text: 'a painting of ohwx man in the style of Van Gogh',
    negative_prompt: 'old, blemish, wrinkles, mole',
    cfg_scale: null,
    steps: null,
    seed: null,
    trained_at: '2022-10-06T16:13:40.363Z',
    started_training_at: '2022-10-06T16:12:55.001Z',
    created_at: '2022-10-06T16:12:54.505Z',
    updated_at: '2022-10-06T16:13:40.363Z',
    tune_id: 1,
    url: 'http://api.astria.ai/tunes/1/prompts/1.json',
    images: ['https://example.test/prompt/1/1.jpg'],
    ...overrides,
  };
}
