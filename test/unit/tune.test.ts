import { describe, expect, it } from 'vitest';
import { isTuneId, parseTimestamp, tuneSchema } from '../../src/astria/tune.js';
import { documentedTune } from '../support/astria-tune.js';

describe('tuneSchema', () => {
  it("parses Astria's documented tune: declared timestamps become Dates, everything else passes through", () => {
    const tune = tuneSchema.parse(documentedTune());
    expect(tune.id).toBe(1);
    expect(tune.trained_at).toEqual(new Date('2023-10-02T14:32:40.363Z'));
    expect(tune.started_training_at).toEqual(new Date('2023-10-02T14:32:05.229Z'));
    expect(tune.eta).toEqual(new Date('2023-10-02T14:32:40.363Z'));
    expect(tune).toMatchObject({
      title: 'John Doe',
      created_at: '2023-10-02T14:32:05.067Z', // the rules never read it: left as Astria sent it
      branch: 'sdxl1',
      model_type: 'lora',
      token: 'ohwx',
      expires_at: '2023-11-01T14:32:40.363Z', // undeclared: left as the string Astria sent
      ckpt_urls: ['https://example.test/mock'],
    });
  });

  it('keeps unknown and undocumented fields (callback, status, error_message, new ones)', () => {
    const extra = {
      branch: 'flux1',
      callback: 'https://app.test/cb?secret=s',
      status: 'failed',
      error_message: 'NSFW images',
      error: { code: 3 },
      brand_new_field: [1, 2],
    };
    expect(tuneSchema.parse(documentedTune(extra))).toMatchObject(extra);
  });

  it('coerces a string id of digits to a number', () => {
    expect(tuneSchema.parse({ id: '788416' }).id).toBe(788416);
    expect(tuneSchema.parse({ id: 788416 }).id).toBe(788416);
  });

  it.each([['x'], ['12a'], [''], ['-1'], ['1.5'], [' 1'], [0], [-3], [1.5], [null], [undefined], [true], [{}]])(
    'rejects the id %j',
    (id) => {
      expect(tuneSchema.safeParse(documentedTune({ id })).success).toBe(false);
    },
  );

  it('accepts null, absent and empty timestamps as null', () => {
    const tune = tuneSchema.parse({ id: 5, trained_at: null, eta: '', started_training_at: undefined });
    expect(tune.trained_at).toBeNull();
    expect(tune.eta).toBeNull();
    expect(tune.started_training_at).toBeNull();
  });

  it('rejects a trained_at that names no instant: READY and trainedAt hang on it', () => {
    // The last one throws from String(): the parse must fail, not the caller.
    for (const value of ['not a date', '2023-13-45T00:00:00Z', '2023-02-30T10:00:00Z', 1696257160, { at: 1 }, { toString: '' }]) {
      expect(tuneSchema.safeParse(documentedTune({ trained_at: value })).success, JSON.stringify(value)).toBe(false);
    }
  });

  it.each(['started_training_at', 'eta'])('reads an unusable %s as absent: it only feeds the progress estimate', (field) => {
    for (const value of ['not a date', '2023-13-45T00:00:00Z', 1696257160, { at: 1 }]) {
      const tune = tuneSchema.parse(documentedTune({ [field]: value }));
      expect(tune[field as 'eta']).toBeNull();
      expect(tune.trained_at).toEqual(new Date('2023-10-02T14:32:40.363Z'));
    }
  });

  it('accepts absent or null status/error fields and a null title', () => {
    const tune = tuneSchema.parse({ id: 9, title: null, status: null });
    expect(tune.trained_at).toBeNull();
    expect(tune).toMatchObject({ id: 9, title: null, status: null });
    expect(tune.error).toBeUndefined();
    expect(tune.error_message).toBeUndefined();
  });

  it('reads ISO-8601 leniently: a space for T, any offset (+00, +0530, -07:00), no offset as UTC, fractions of any length', () => {
    const cases: [string, string][] = [
      ['2023-10-02 14:32:40.363Z', '2023-10-02T14:32:40.363Z'],
      ['2023-10-02T14:32:40+00', '2023-10-02T14:32:40.000Z'],
      ['2023-10-02 14:32:40.5+00', '2023-10-02T14:32:40.500Z'],
      ['2023-10-02T20:02:40+0530', '2023-10-02T14:32:40.000Z'],
      ['2023-10-02T07:32:40.123456-07:00', '2023-10-02T14:32:40.123Z'],
      ['2023-10-02T14:32:40', '2023-10-02T14:32:40.000Z'],
      ['2023-10-02T14:32', '2023-10-02T14:32:00.000Z'],
    ];
    for (const [text, instant] of cases) {
      const tune = tuneSchema.parse({ id: 3, trained_at: text, eta: text, started_training_at: text });
      expect(tune.trained_at?.toISOString(), text).toBe(instant);
      expect(tune.eta?.toISOString(), text).toBe(instant);
      expect(tune.started_training_at?.toISOString(), text).toBe(instant);
    }
  });

  it.each([
    ['2016-12-31T23:59:60Z', '2016-12-31T23:59:59.999Z'],
    ['2016-12-31T23:59:60.5Z', '2016-12-31T23:59:59.999Z'],
    ['2016-12-31 23:59:60', '2016-12-31T23:59:59.999Z'],
    ['2017-01-01T05:29:60+05:30', '2016-12-31T23:59:59.999Z'],
  ])('reads the leap second %s as the last millisecond before it (%s)', (text, instant) => {
    expect(parseTimestamp(text)?.toISOString()).toBe(instant);
    const tune = tuneSchema.parse(documentedTune({ trained_at: text }));
    expect(tune.trained_at?.toISOString()).toBe(instant);
  });

  it.each(['2016-12-31T23:59:61Z', '2016-12-31T23:60:00Z'])('still names no instant: %s', (text) => {
    expect(parseTimestamp(text)).toBeNull();
    expect(tuneSchema.safeParse(documentedTune({ trained_at: text })).success).toBe(false);
  });

  it('reads user_error as a failure field: accepted in any shape and passed through', () => {
    for (const userError of ['No face detected', { message: 'No face detected' }, null, 3]) {
      expect(tuneSchema.parse(documentedTune({ trained_at: null, user_error: userError })).user_error).toEqual(userError);
    }
  });

  it('accepts a started_training_at in 1969: a start before the epoch is odd, not unusable', () => {
    const tune = tuneSchema.parse(documentedTune({ started_training_at: '1969-12-31T23:59:00Z', trained_at: null }));
    expect(tune.started_training_at).toEqual(new Date('1969-12-31T23:59:00Z'));
  });

  it('passes fields the rules never read through untouched, whatever their shape', () => {
    const odd = {
      created_at: 1696257160,
      title: 42,
      status: { state: 'training' },
      updated_at: '2023-10-02 14:32:40',
      expires_at: null,
    };
    const result = tuneSchema.safeParse(documentedTune(odd));
    expect(result.success).toBe(true);
    expect(result.data).toMatchObject(odd);
    expect(tuneSchema.parse(documentedTune({ created_at: '2023-10-02 14:32:05' })).created_at).toBe('2023-10-02 14:32:05');
  });

  it('rejects a body that is not an object', () => {
    for (const body of [null, 'tune', 42, [documentedTune()]]) expect(tuneSchema.safeParse(body).success).toBe(false);
  });
});

describe('isTuneId', () => {
  it.each(['1', '7', '788416', '123456789012345'])('accepts %j', (value) => {
    expect(isTuneId(value)).toBe(true);
  });

  it.each(['', '0', '0012', 'abc', '12a', '-1', '+1', '1.0', '1e3', ' 12', '12 ', '12\n', '1234567890123456', '١٢٣', '１２'])(
    'rejects %j',
    (value) => {
      expect(isTuneId(value)).toBe(false);
    },
  );

  it('rejects null and undefined', () => {
    expect(isTuneId(null)).toBe(false);
    expect(isTuneId(undefined)).toBe(false);
  });
});
