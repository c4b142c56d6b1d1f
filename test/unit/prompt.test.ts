import { describe, expect, it } from 'vitest';
import { failureMessage } from '../../src/astria/failure.js';
import { parseCallbackBody } from '../../src/astria/callback-body.js';
import { isPromptId, promptSchema } from '../../src/astria/prompt.js';
import { documentedPrompt } from '../support/astria-prompt.js';
import { documentedTune } from '../support/astria-tune.js';

describe('promptSchema', () => {
  it("reads Astria's documented prompt, still queued: no images, no trained_at, every other field kept", () => {
    const { images: _images, ...queued } = documentedPrompt({ trained_at: null, started_training_at: null });
    const prompt = promptSchema.parse(queued) as Record<string, unknown>;
    expect(prompt).toMatchObject({ id: 1, tune_id: 1, images: [], trained_at: null, started_training_at: null });
    expect(prompt.created_at).toEqual(new Date('2022-10-06T16:12:54.505Z'));
    expect(prompt.text).toBe('a painting of ohwx man in the style of Van Gogh');
    expect(prompt.url).toBe('http://api.astria.ai/tunes/1/prompts/1.json');
  });

  it('accepts string ids, keeps only non-empty string images (trimmed), and treats a non-array as none', () => {
    expect(promptSchema.parse(documentedPrompt({ id: '42', tune_id: '7', images: [' https://a.test/1.jpg ', 3, null, '', { url: 'x' }] }))).toMatchObject({
      id: 42,
      tune_id: 7,
      images: ['https://a.test/1.jpg'],
    });
    expect(promptSchema.parse(documentedPrompt({ images: 'https://a.test/1.jpg' })).images).toEqual([]);
  });

  it('reads a missing or unreadable tune_id as none: it is not needed to apply the prompt', () => {
    expect(promptSchema.parse(documentedPrompt({ tune_id: undefined })).tune_id ?? null).toBeNull();
    expect(promptSchema.parse(documentedPrompt({ tune_id: 'x' })).tune_id).toBeNull();
  });

  it('reads timestamps as a tune does: a proxy-written trained_at parses, an unusable created_at counts as absent', () => {
    const prompt = promptSchema.parse(documentedPrompt({ trained_at: '2022-10-06 16:13:40+02', created_at: 'soon' }));
    expect(prompt.trained_at).toEqual(new Date('2022-10-06T14:13:40.000Z'));
    expect(prompt.created_at).toBeNull();
  });

  it.each([
    ['a trained_at that names no instant', { trained_at: '2022-02-30T10:00:00Z' }],
    ['a non-id id', { id: 'abc' }],
  ])('refuses %s', (_name, fields) => {
    expect(promptSchema.safeParse(documentedPrompt(fields)).success).toBe(false);
  });
});

describe('isPromptId', () => {
  it.each(['1', '29012345', '123456789012345'])('accepts %j', (id) => expect(isPromptId(id)).toBe(true));
  it.each(['', '0', '012', 'abc', '1.5', '1234567890123456', null, undefined])('refuses %j', (id) => expect(isPromptId(id)).toBe(false));
});

/** The prompts a callback body carries, or null when it is no prompt callback. */
function parsePromptCallback(body: unknown) {
  const parsed = parseCallbackBody(body);
  return parsed.kind === 'prompts' ? parsed : null;
}

describe('prompt callbacks (parseCallbackBody)', () => {
  const prompt = (id: number) => documentedPrompt({ id, tune_id: 5 });

  it.each([
    ['{"prompt": …}', { prompt: prompt(11) }, [11]],
    ['the bare prompt', prompt(12), [12]],
    ["a pack's prompts_callback array", [prompt(13), prompt(14), prompt(15)], [13, 14, 15]],
    ['an empty array', [], []],
  ])('reads %s', (_name, body, ids) => {
    const parsed = parsePromptCallback(JSON.parse(JSON.stringify(body)));
    expect(parsed?.prompts.map((item) => item.id)).toEqual(ids);
    expect(parsed?.invalid).toBe(0);
  });

  it("counts a pack's invalid prompt and keeps the rest", () => {
    const parsed = parsePromptCallback([prompt(21), { ...prompt(22), trained_at: 'garbage' }, 'nonsense', prompt(23)]);
    expect(parsed).toMatchObject({ invalid: 2 });
    expect(parsed?.prompts.map((item) => item.id)).toEqual([21, 23]);
  });

  it.each([
    ['a bare tune', documentedTune({ id: 11 })],
    ['a wrapped tune', { tune: documentedTune({ id: 11 }) }],
    ['an object with only an id', { id: 11 }],
    ['a string', 'prompt'],
    ['null', null],
  ])('is no prompt callback for %s', (_name, body) => {
    expect(parsePromptCallback(body)).toBeNull();
  });

  it('tells a prompt from a tune by its shape even when their ids are equal', () => {
    expect(parseCallbackBody(documentedPrompt({ id: 788416 })).kind).toBe('prompts');
    expect(parseCallbackBody(documentedTune({ id: 788416 })).kind).toBe('tune');
  });
});

describe('failureMessage', () => {
  it.each([
    [{}, null],
    [{ status: 'trained' }, null],
    [{ status: 42, error: '' }, null],
    [{ error: {} }, null],
    [{ status: 'failed' }, 'X failed'],
    [{ status: 'ERROR' }, 'X failed'],
    [{ status: 'cancelled' }, 'X was cancelled'],
    [{ status: ' canceled ', error_message: 'by user' }, 'X was cancelled: by user'],
    [{ user_error: 'Face not detected' }, 'X failed: Face not detected'],
    [{ user_error: { message: ' Too many faces ' } }, 'X failed: Too many faces'],
    [{ error: { code: 7 } }, 'X failed: {"code":7}'],
    [{ user_error: 'first', error_message: 'second', error: 'third' }, 'X failed: first'],
  ])('%j → %j', (fields, expected) => {
    expect(failureMessage(fields, 'X')).toBe(expected);
  });

  it('describes an error nested too deep to print', () => {
    let deep: Record<string, unknown> = {};
    const root = deep;
    for (let i = 0; i < 10_000; i += 1) deep = deep.next = {};
    expect(failureMessage({ error: root }, 'X')).toBe('X failed: unreadable error detail');
  });
});
