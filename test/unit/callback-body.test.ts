import { describe, expect, it } from 'vitest';
import { parseCallbackBody, type CallbackBody } from '../../src/astria/callback-body.js';
import { documentedPrompt, documentedTune } from '../support/astria-tune.js';

const kindOf = (body: unknown): CallbackBody['kind'] => parseCallbackBody(body).kind;

function tuneOf(body: unknown) {
  const parsed = parseCallbackBody(body);
  if (parsed.kind !== 'tune') throw new Error(`expected a tune, got ${parsed.kind}`);
  return parsed.tune;
}

function promptIdsOf(body: unknown): number[] {
  const parsed = parseCallbackBody(body);
  if (parsed.kind !== 'prompts') throw new Error(`expected prompts, got ${parsed.kind}`);
  return parsed.prompts.map((prompt) => prompt.id);
}

describe('parseCallbackBody: tunes', () => {
  it('reads {"tune": {...}} as the tune', () => {
    const tune = tuneOf({ tune: documentedTune({ id: 42 }) });
    expect(tune.id).toBe(42);
    expect(tune.trained_at).toEqual(new Date('2023-10-02T14:32:40.363Z'));
    expect((tune as Record<string, unknown>).branch).toBe('sdxl1');
  });

  it('reads the bare tune object', () => {
    const tune = tuneOf(documentedTune({ id: 43 }));
    expect(tune.id).toBe(43);
    expect((tune as Record<string, unknown>).model_type).toBe('lora');
  });

  it('coerces string ids in both shapes', () => {
    expect(tuneOf({ tune: { id: '44', trained_at: null } }).id).toBe(44);
    expect(tuneOf({ id: '45', trained_at: null }).id).toBe(45);
  });

  it('a tune created with prompts (their list nested under `prompts`) is still a tune', () => {
    expect(tuneOf(documentedTune({ id: 46, prompts: [documentedPrompt({ tune_id: 46 })] })).id).toBe(46);
  });

  it.each<[string, unknown]>([
    ['{}', {}],
    ['{"tune": {}}', { tune: {} }],
    ['a tune id that is no id', { tune: { id: 'x' } }],
    ['a trained_at that is no time', { tune: { id: 1, trained_at: 'nope' } }],
    ['a bare id that is no id', { id: 'x' }],
    ['null', null],
    ['a string', 'tune'],
    ['a number', 42],
  ])('refuses %s as malformed', (_label, body) => {
    const parsed = parseCallbackBody(body);
    expect(parsed.kind).toBe('invalid');
    expect(parsed.kind === 'invalid' && parsed.reason).toMatch(/^body is not an Astria /);
  });
});

describe('parseCallbackBody: prompts are told apart and never read as tunes', () => {
  it("a pack's element that is no prompt costs that element only: counted, the others read", () => {
    expect(parseCallbackBody([documentedPrompt({ id: 1 }), 'x', documentedPrompt({ id: 2 })])).toMatchObject({
      kind: 'prompts',
      prompts: [{ id: 1 }, { id: 2 }],
      invalid: 1,
    });
  });

  it('the bare prompt (its id may equal a tune id)', () => {
    expect(promptIdsOf(documentedPrompt({ id: 4242, tune_id: 17 }))).toEqual([4242]);
  });

  it('{"prompt": {...}}', () => {
    expect(promptIdsOf({ prompt: documentedPrompt({ id: 4243 }) })).toEqual([4243]);
  });

  it("a pack's prompts callback: a JSON array of prompts", () => {
    expect(promptIdsOf([documentedPrompt({ id: 10 }), documentedPrompt({ id: '11' }), documentedPrompt({ id: 12 })])).toEqual([10, 11, 12]);
  });

  it('an empty array is a pack with no prompts: nothing to apply', () => {
    expect(promptIdsOf([])).toEqual([]);
  });

  // When in doubt, a prompt: one mistaken for a tune would mark someone else's model.
  it.each<[string, Record<string, unknown>]>([
    ['only tune_id beside the tune fields', { ...documentedTune({ id: 77 }), tune_id: 5 }],
    ['a null tune_id', { ...documentedTune({ id: 77 }), tune_id: null }],
    ['text', { id: 77, trained_at: null, text: 'ohwx man' }],
    ['images', { id: 77, trained_at: '2023-10-02T14:32:40.363Z', images: [] }],
    ['a prompt wrapped as a tune', { tune: documentedPrompt({ id: 77 }) }],
    ['both a prompt and a tune', { prompt: documentedPrompt({ id: 77 }), tune: documentedTune({ id: 78 }) }],
  ])('a body with %s is a prompt', (_label, body) => {
    expect(promptIdsOf(body)).toEqual([77]);
  });

  it.each<[string, unknown]>([
    ['a prompt without an id', { prompt: { tune_id: 1, text: 'x' } }],
    ['a bare prompt with an id that is no id', documentedPrompt({ id: 'abc' })],
    ['an array of arrays', [[documentedPrompt()]]],
  ])('refuses %s as malformed', (_label, body) => {
    expect(kindOf(body)).toBe('invalid');
  });
});
