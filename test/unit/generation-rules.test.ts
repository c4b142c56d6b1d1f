import { describe, expect, it } from 'vitest';
import { promptSchema, type PromptObservation } from '../../src/astria/prompt.js';
import {
  decideGeneration,
  type GenerationRow,
  type GenerationRuleOptions,
  type GenerationStatus,
  type GenerationTransition,
} from '../../src/status/generation-rules.js';
import { documentedPrompt } from '../support/astria-prompt.js';

/** Far from the real date: a rule reading the clock instead of `now` would see decades pass. */
const NOW = new Date('2003-05-06T12:00:00.000Z');
const minutes = (n: number) => n * 60_000;
const hours = (n: number) => n * 3_600_000;
const at = (offsetMs: number) => new Date(NOW.getTime() + offsetMs);
const iso = (offsetMs: number) => at(offsetMs).toISOString();

const OPTIONS: GenerationRuleOptions = { generationTimeoutMs: hours(2) };
const PROMPT_ID = 29012345;
const IMAGES = ['https://sdbooth2-production.s3.amazonaws.com/a.jpg', 'https://sdbooth2-production.s3.amazonaws.com/b.jpg'];

/** A prompt as Astria's `GET /tunes/:tune_id/prompts/:id` returns it, queued five minutes before `NOW`. */
function observe(fields: Record<string, unknown> = {}): PromptObservation {
  const raw = documentedPrompt({
    id: PROMPT_ID,
    tune_id: 788416,
    images: [],
    trained_at: null,
    started_training_at: null,
    created_at: iso(-minutes(5)),
    updated_at: iso(-minutes(5)),
    ...fields,
  });
  return { kind: 'prompt', prompt: promptSchema.parse(JSON.parse(JSON.stringify(raw))) };
}
const started = (fields: Record<string, unknown> = {}) => observe({ started_training_at: iso(-minutes(4)), ...fields });
const done = (fields: Record<string, unknown> = {}) => started({ trained_at: iso(-minutes(1)), images: IMAGES, ...fields });
const gone = (): PromptObservation => ({ kind: 'gone', promptId: String(PROMPT_ID) });

function row(status: GenerationStatus, fields: Partial<GenerationRow> = {}): GenerationRow {
  return {
    id: 'gen_1',
    userId: 'user_1',
    modelId: 'model_1',
    status,
    jobId: String(PROMPT_ID),
    imageUrls: [],
    errorMessage: null,
    completedAt: null,
    createdAt: at(-minutes(6)),
    updatedAt: at(-minutes(6)),
    ...fields,
  };
}

function decide(generation: GenerationRow, observation: PromptObservation, options: Partial<GenerationRuleOptions> = {}) {
  return decideGeneration(generation, observation, NOW, { ...OPTIONS, ...options });
}

describe('decideGeneration', () => {
  const completed: Partial<GenerationTransition> = { to: 'COMPLETED', changes: { imageUrls: IMAGES, completedAt: at(-minutes(1)), errorMessage: null } };
  const cases: [string, GenerationRow, PromptObservation, Partial<GenerationTransition> | null][] = [
    ['done with images: PROCESSING → COMPLETED with the images and trained_at', row('PROCESSING'), done(), completed],
    ['done with images: PENDING → COMPLETED directly', row('PENDING'), done(), completed],
    [
      "done clears the app's stale message",
      row('PROCESSING', { errorMessage: 'retrying' }),
      done(),
      { ...completed, expected: { jobId: String(PROMPT_ID), errorMessage: 'retrying' } },
    ],
    ['queued: PENDING stays', row('PENDING'), observe(), null],
    ['started: PENDING → PROCESSING, nothing else written', row('PENDING'), started(), { from: 'PENDING', to: 'PROCESSING', changes: {} }],
    ['started: PROCESSING stays', row('PROCESSING'), started(), null],
    [
      "user_error → FAILED with Astria's message",
      row('PROCESSING'),
      started({ user_error: 'Prompt contains forbidden words' }),
      { to: 'FAILED', changes: { errorMessage: `Astria image generation failed: Prompt contains forbidden words (Astria prompt ${PROMPT_ID})` } },
    ],
    [
      'user_error as an object with a message',
      row('PENDING'),
      observe({ user_error: { message: 'Image too small' } }),
      { to: 'FAILED', changes: { errorMessage: `Astria image generation failed: Image too small (Astria prompt ${PROMPT_ID})` } },
    ],
    [
      'status error without detail',
      row('PROCESSING'),
      started({ status: 'error' }),
      { to: 'FAILED', changes: { errorMessage: `Astria image generation failed (Astria prompt ${PROMPT_ID})` } },
    ],
    [
      'status canceled',
      row('PROCESSING'),
      started({ status: 'Canceled' }),
      { to: 'FAILED', changes: { errorMessage: `Astria image generation was cancelled (Astria prompt ${PROMPT_ID})` } },
    ],
    [
      'error_message',
      row('PROCESSING'),
      started({ error_message: 'GPU out of memory' }),
      { to: 'FAILED', changes: { errorMessage: `Astria image generation failed: GPU out of memory (Astria prompt ${PROMPT_ID})` } },
    ],
    ['a status that is not a failure says nothing', row('PROCESSING'), started({ status: 'processing', user_error: '' }), null],
    ['a set trained_at with images wins over a failure field', row('PROCESSING'), done({ user_error: 'stale' }), completed],
    [
      'done without images → FAILED (safety filter), so the app refunds',
      row('PROCESSING'),
      done({ images: [] }),
      {
        to: 'FAILED',
        changes: { errorMessage: `Astria returned no images for prompt ${PROMPT_ID} (its safety filter may have removed them)` },
      },
    ],
    [
      "done without images but with Astria's reason: that reason",
      row('PROCESSING'),
      done({ images: [], user_error: 'NSFW content detected' }),
      { to: 'FAILED', changes: { errorMessage: `Astria image generation failed: NSFW content detected (Astria prompt ${PROMPT_ID})` } },
    ],
    ['images that are no strings count as none', row('PROCESSING'), done({ images: [null, 7, {}, ''] }), { to: 'FAILED' }],
    [
      'non-string images are dropped, the rest kept',
      row('PROCESSING'),
      done({ images: [IMAGES[0], null, 42, IMAGES[1]] }),
      { to: 'COMPLETED', changes: { imageUrls: IMAGES, completedAt: at(-minutes(1)), errorMessage: null } },
    ],
    ['404 → FAILED "not found"', row('PROCESSING'), gone(), { to: 'FAILED', changes: { errorMessage: `Astria prompt ${PROMPT_ID} not found` } }],
    ['404 of a PENDING row → FAILED', row('PENDING'), gone(), { from: 'PENDING', to: 'FAILED' }],
    ['never leaves COMPLETED: not on a 404', row('COMPLETED', { imageUrls: IMAGES }), gone(), null],
    ['never leaves COMPLETED: not on a failure', row('COMPLETED'), started({ user_error: 'x' }), null],
    ['never leaves COMPLETED: not on new images', row('COMPLETED', { imageUrls: ['https://app.test/stored.jpg'] }), done(), null],
    ['a FAILED the app set stays FAILED, images or not', row('FAILED', { errorMessage: 'Refunded by support' }), done(), null],
    [
      'a FAILED this product set heals to COMPLETED',
      row('FAILED', { errorMessage: `Astria prompt ${PROMPT_ID} not found`, ownFailure: true }),
      done(),
      { from: 'FAILED', ...completed },
    ],
    ['a FAILED stays FAILED on a 404 or a failure', row('FAILED', { ownFailure: true }), gone(), null],
    ['our FAILED does not heal on a prompt done without images', row('FAILED', { ownFailure: true }), done({ images: [] }), null],
  ];

  it.each(cases)('%s', (_name, generation, observation, expected) => {
    const transition = decide(generation, observation);
    if (expected === null) expect(transition).toBeNull();
    else expect(transition).toMatchObject({ from: generation.status, ...expected });
  });

  it('compares and sets on what it read, and carries the ids the event needs', () => {
    expect(decide(row('PROCESSING', { jobId: '55', errorMessage: 'x' }), done())).toMatchObject({
      generationId: 'gen_1',
      userId: 'user_1',
      modelId: 'model_1',
      expected: { jobId: '55', errorMessage: 'x' },
    });
  });

  it('heals any FAILED when the operator names the generation', () => {
    expect(decide(row('FAILED', { errorMessage: 'Refunded' }), done(), { healAnyFailure: true })).toMatchObject({
      from: 'FAILED',
      to: 'COMPLETED',
    });
  });

  describe('completedAt', () => {
    it("is Astria's trained_at, with a lag sample", () => {
      const transition = decide(row('PROCESSING'), done({ trained_at: '2003-05-06T11:59:00.123Z' }));
      expect(transition?.changes.completedAt).toEqual(new Date('2003-05-06T11:59:00.123Z'));
      expect(transition?.completedAtObserved).toBe(false);
    });

    it.each([
      ['1970', '1970-01-01T00:00:00Z'],
      ['year 1', '0001-01-01T00:00:00Z'],
      ["before the prompt's created_at minus a minute", iso(-minutes(6) - 1)],
      ['more than five minutes in the future', iso(minutes(5) + 1)],
    ])('is the observed time when trained_at is implausible (%s): still COMPLETED, no lag sample', (_name, trainedAt) => {
      const transition = decide(row('PROCESSING'), done({ trained_at: trainedAt }));
      expect(transition).toMatchObject({ to: 'COMPLETED', changes: { completedAt: NOW, imageUrls: IMAGES }, completedAtObserved: true });
    });

    it('accepts clock skew within the bounds', () => {
      expect(decide(row('PROCESSING'), done({ trained_at: iso(-minutes(6)) }))?.changes.completedAt).toEqual(at(-minutes(6)));
      expect(decide(row('PROCESSING'), done({ trained_at: iso(minutes(5)) }))?.changes.completedAt).toEqual(at(minutes(5)));
    });
  });

  describe('timeout', () => {
    it('fails a generation in flight longer than the timeout, naming it and the prompt', () => {
      const old = row('PROCESSING', { createdAt: at(-hours(2) - 1) });
      expect(decide(old, started())).toMatchObject({
        to: 'FAILED',
        changes: { errorMessage: `Image generation did not finish within 2h (Astria prompt ${PROMPT_ID})` },
      });
      expect(decide(old, started(), { generationTimeoutMs: minutes(90) })?.changes.errorMessage).toContain('within 90m');
    });

    it('never before it, never without a createdAt, and a finished prompt still completes', () => {
      expect(decide(row('PROCESSING', { createdAt: at(-hours(2)) }), started())).toBeNull();
      expect(decide(row('PROCESSING', { createdAt: null }), started())).toBeNull();
      expect(decide(row('PROCESSING', { createdAt: at(-hours(30)) }), done())).toMatchObject({ to: 'COMPLETED' });
    });
  });

  describe('what it writes is safe for PostgreSQL and NOTIFY', () => {
    it("strips NULs from Astria's message and bounds it", () => {
      const transition = decide(row('PROCESSING'), started({ user_error: `bad\u0000${'x'.repeat(5_000)}` }));
      const message = transition?.changes.errorMessage ?? '';
      expect(message).not.toContain('\u0000');
      expect(Buffer.byteLength(JSON.stringify(message))).toBeLessThanOrEqual(1_002);
      expect(message.endsWith('…')).toBe(true);
    });

    it('strips NULs from image URLs', () => {
      const transition = decide(row('PROCESSING'), done({ images: ['https://cdn.test/a\u0000.jpg'] }));
      expect(transition?.changes.imageUrls).toEqual(['https://cdn.test/a.jpg']);
    });
  });
});
