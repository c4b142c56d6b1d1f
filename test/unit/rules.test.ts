import { afterEach, describe, expect, it, vi } from 'vitest';
import { tuneSchema, type Observation } from '../../src/astria/tune.js';
import { decide, type ModelRow, type ModelStatus, type RuleOptions } from '../../src/status/rules.js';
import { documentedTune } from '../support/astria-tune.js';

/** No lone surrogate (what jsonb refuses): with the u flag a paired one is a single code point, not Cs. */
const isWellFormed = (text: string) => !/\p{Cs}/u.test(text);

/**
 * `now` is deliberately far from the real date: if `decide` read the clock instead of `now`, the
 * elapsed times below would be decades and every case would turn into a timeout or progress 99.
 */
const NOW = new Date('2003-05-06T12:00:00.000Z');
const minutes = (n: number) => n * 60_000;
const hours = (n: number) => n * 3_600_000;
const at = (offsetMs: number) => new Date(NOW.getTime() + offsetMs);
const iso = (offsetMs: number) => at(offsetMs).toISOString();

const OPTIONS: RuleOptions = { trainingTimeoutMs: hours(24) };
const TUNE_ID = 788416;

/**
 * A tune as Astria's `GET /tunes/:id` returns it, still queued (created half an hour before `NOW`, not
 * started, no checkpoint); `fields` override the raw JSON. The documented example's `url` is this id's.
 */
function observe(fields: Record<string, unknown> = {}): Observation {
  const raw = JSON.parse(
    JSON.stringify(
      documentedTune({
        id: TUNE_ID,
        name: 'man',
        ckpt_url: null,
        ckpt_urls: [],
        eta: null,
        trained_at: null,
        started_training_at: null,
        expires_at: null,
        created_at: iso(-minutes(30)),
        updated_at: iso(-minutes(30)),
        branch: 'flux1',
        orig_images: ['https://example.test/1.jpg'],
        ...fields,
      }),
    ),
  ) as unknown;
  return { kind: 'tune', tune: tuneSchema.parse(raw) };
}

const trained = (fields: Record<string, unknown> = {}) =>
  observe({
    started_training_at: iso(-minutes(40)),
    eta: iso(-minutes(10)),
    trained_at: iso(-minutes(12)),
    ckpt_url: 'https://example.test/ckpt',
    ...fields,
  });
const training = (fields: Record<string, unknown> = {}) =>
  observe({ started_training_at: iso(-minutes(10)), eta: iso(minutes(30)), ...fields });
const failed = () => observe({ status: 'failed', error_message: 'GPU out of memory' });
const gone = (tuneId = String(TUNE_ID)): Observation => ({ kind: 'gone', tuneId });

function model(overrides: Partial<ModelRow> = {}): ModelRow {
  return {
    id: 'cmodel123',
    userId: 'cuser456',
    status: 'TRAINING',
    progress: 0,
    trainingJobId: String(TUNE_ID),
    errorMessage: null,
    estimatedTime: null,
    createdAt: at(-hours(1)),
    ...overrides,
  };
}

afterEach(() => {
  vi.useRealTimers();
});

describe('decide: trained', () => {
  it.each<ModelStatus>(['TRAINING', 'PROCESSING'])('%s with trained_at → READY with every finished column', (status) => {
    const result = decide(model({ status, progress: 40, estimatedTime: 12 }), trained(), NOW, OPTIONS);
    expect(result).not.toBeNull();
    expect(result!.modelId).toBe('cmodel123');
    expect(result!.userId).toBe('cuser456');
    expect(result!.from).toBe(status);
    expect(result!.to).toBe('READY');
    expect(result!.changes.progress).toBe(100);
    expect(result!.changes.modelUrl).toBe(String(TUNE_ID));
    expect(result!.changes.errorMessage).toBeNull();
    expect(result!.changes.estimatedTime).toBeNull();
  });

  it("sets trainedAt to Astria's trained_at, not to now", () => {
    const trainedAt = '2003-05-06T11:48:17.123Z';
    const result = decide(model(), trained({ trained_at: trainedAt }), NOW, OPTIONS);
    expect(result!.changes.trainedAt).toBeInstanceOf(Date);
    expect(result!.changes.trainedAt!.toISOString()).toBe(trainedAt);
    expect(result!.changes.trainedAt!.getTime()).not.toBe(NOW.getTime());
  });

  it('modelUrl is the tune id as text, also when Astria sends the id as a string', () => {
    const result = decide(model(), trained({ id: '123456' }), NOW, OPTIONS);
    expect(result!.changes.modelUrl).toBe('123456');
  });

  it('a tune trained at creation (reference tune, never started) still → READY', () => {
    const result = decide(
      model({ status: 'PROCESSING' }),
      observe({ trained_at: iso(-minutes(1)), started_training_at: null, eta: null }),
      NOW,
      OPTIONS,
    );
    expect(result?.to).toBe('READY');
  });

  it.each([
    ['status failed', { status: 'failed' }],
    ['error_message', { error_message: 'something broke' }],
    ['error string', { error: 'something broke' }],
    ['error object', { error: { message: 'something broke' } }],
  ])('trained_at wins over %s', (_label, fields) => {
    const result = decide(model(), trained(fields), NOW, OPTIONS);
    expect(result?.to).toBe('READY');
    expect(result?.changes.errorMessage).toBeNull();
  });
});

describe('decide: failure shapes', () => {
  it.each([
    ['status failed', { status: 'failed' }],
    ['status cancelled', { status: 'cancelled' }],
    ['error_message', { error_message: 'Training images rejected' }],
    ['error string', { error: 'Training images rejected' }],
    ['error object with message', { error: { message: 'Training images rejected', code: 17 } }],
  ])('%s → ERROR with a human message', (_label, fields) => {
    const result = decide(model(), training(fields), NOW, OPTIONS);
    expect(result?.from).toBe('TRAINING');
    expect(result?.to).toBe('ERROR');
    expect(typeof result?.changes.errorMessage).toBe('string');
    expect(result!.changes.errorMessage!.trim().length).toBeGreaterThan(0);
    expect(result!.changes.errorMessage).not.toContain('[object Object]');
  });

  it('a PROCESSING model fails too', () => {
    expect(decide(model({ status: 'PROCESSING' }), failed(), NOW, OPTIONS)?.to).toBe('ERROR');
  });

  it("the message carries Astria's own reason", () => {
    expect(decide(model(), training({ error_message: 'Face not detected' }), NOW, OPTIONS)?.changes.errorMessage).toContain(
      'Face not detected',
    );
    expect(decide(model(), training({ error: 'Face not detected' }), NOW, OPTIONS)?.changes.errorMessage).toContain(
      'Face not detected',
    );
    expect(
      decide(model(), training({ error: { message: 'Face not detected' } }), NOW, OPTIONS)?.changes.errorMessage,
    ).toContain('Face not detected');
  });

  it('cancelled and failed read differently', () => {
    const cancelled = decide(model(), observe({ status: 'cancelled' }), NOW, OPTIONS)?.changes.errorMessage;
    const failedMessage = decide(model(), observe({ status: 'failed' }), NOW, OPTIONS)?.changes.errorMessage;
    expect(cancelled).toMatch(/cancel/i);
    expect(failedMessage).toMatch(/fail/i);
  });

  it.each([
    ['empty error', { error: '' }],
    ['empty error_message', { error_message: '' }],
    ['null error and error_message', { error: null, error_message: null }],
    ['status training', { status: 'training' }],
    ['status queued', { status: 'queued' }],
  ])('%s is not a failure', (_label, fields) => {
    // Queued, nothing to update: the only way to get a non-null result is a (wrong) failure.
    expect(decide(model(), observe(fields), NOW, OPTIONS)).toBeNull();
    // And while training, the normal training update happens instead of ERROR.
    const result = decide(model({ status: 'PROCESSING' }), training(fields), NOW, OPTIONS);
    expect(result?.to).toBe('TRAINING');
    expect(result?.changes.errorMessage).toBeUndefined();
  });
});

describe('decide: every failure shape seen in the wild', () => {
  // [shape, fields, what the message must say]
  it.each<[string, Record<string, unknown>, string]>([
    ['status failed', { status: 'failed' }, 'Astria training failed'],
    ['status error', { status: 'error' }, 'Astria training failed'],
    ['status cancelled', { status: 'cancelled' }, 'Astria training was cancelled'],
    ['status canceled', { status: 'canceled' }, 'Astria training was cancelled'],
    ['status in capitals, padded', { status: ' FAILED ' }, 'Astria training failed'],
    ['error string', { error: 'GPU out of memory' }, 'Astria training failed: GPU out of memory'],
    ['error_message string', { error_message: 'GPU out of memory' }, 'Astria training failed: GPU out of memory'],
    ['user_error string', { user_error: 'No face detected in 7 of 10 images' }, 'Astria training failed: No face detected in 7 of 10 images'],
    ['error object with message', { error: { message: 'GPU out of memory', code: 17 } }, 'Astria training failed: GPU out of memory'],
    ['error object with error', { error: { error: 'GPU out of memory' } }, 'Astria training failed: GPU out of memory'],
    ['error object with detail', { error: { detail: 'GPU out of memory' } }, 'Astria training failed: GPU out of memory'],
    ['error object nesting its message', { error: { error: { message: 'GPU out of memory' } } }, 'Astria training failed: GPU out of memory'],
    ['error_message object', { error_message: { message: 'GPU out of memory' } }, 'Astria training failed: GPU out of memory'],
    ['user_error object with message', { user_error: { message: 'No face detected' } }, 'Astria training failed: No face detected'],
    ['user_error object with detail', { user_error: { detail: 'No face detected' } }, 'Astria training failed: No face detected'],
    ['error object without a message: compact JSON', { error: { code: 17, gpu: 'a100' } }, 'Astria training failed: {"code":17,"gpu":"a100"}'],
    ['error array: compact JSON', { error: ['bad image 3', 'bad image 5'] }, 'Astria training failed: ["bad image 3","bad image 5"]'],
    ['error object: its blank fields left out of the JSON', { error: { message: null, code: 17, hint: '' } }, 'Astria training failed: {"code":17}'],
    ['status error with user_error', { status: 'error', user_error: 'No face detected' }, 'Astria training failed: No face detected'],
    ['status canceled with error_message', { status: 'canceled', error_message: 'by user' }, 'Astria training was cancelled: by user'],
    ['user_error first, then error_message, then error', { error: 'c', error_message: 'b', user_error: 'a' }, 'Astria training failed: a'],
    ['an empty user_error gives way to error', { user_error: '  ', error: 'GPU out of memory' }, 'Astria training failed: GPU out of memory'],
  ])('%s → ERROR "%s"', (_shape, fields, message) => {
    for (const status of ['TRAINING', 'PROCESSING'] as const) {
      // Queued, and still training: both fail.
      for (const observation of [observe(fields), training(fields)]) {
        const result = decide(model({ status, estimatedTime: 7 }), observation, NOW, OPTIONS);
        expect(result).toMatchObject({ from: status, to: 'ERROR', changes: { errorMessage: message, estimatedTime: null } });
      }
    }
  });

  it.each<[string, Record<string, unknown>]>([
    ['status failed', { status: 'failed' }],
    ['status error', { status: 'error' }],
    ['status canceled', { status: 'canceled' }],
    ['user_error', { user_error: 'No face detected' }],
    ['user_error object', { user_error: { message: 'No face detected' } }],
    ['error object with detail', { error: { detail: 'x' } }],
  ])('a set trained_at wins over %s: READY', (_shape, fields) => {
    const result = decide(model(), trained(fields), NOW, OPTIONS);
    expect(result).toMatchObject({ to: 'READY', changes: { errorMessage: null } });
  });

  it.each<[string, Record<string, unknown>]>([
    ['empty user_error', { user_error: '' }],
    ['blank user_error', { user_error: ' \n ' }],
    ['null user_error', { user_error: null }],
    ['empty object user_error', { user_error: {} }],
    ['empty array error', { error: [] }],
    ['error false', { error: false }],
    ['error 0', { error: 0 }],
    ['error object with an empty message only', { error: { message: '' } }],
    ['error object of nulls and blanks (a serializer’s “no error”)', { error: { message: null, code: null, detail: ' ', errors: [] } }],
    ['error_message array of blanks', { error_message: ['', null] }],
    ['status trained', { status: 'trained' }],
    ['status errored-ish but not a failure word', { status: 'erroneous' }],
  ])('%s is not a failure', (_label, fields) => {
    expect(decide(model(), observe(fields), NOW, OPTIONS)).toBeNull();
  });

  it("an object's message is made as safe as a string's: NUL stripped, at most 1,000 bytes, cut on a character boundary", () => {
    const result = decide(model(), observe({ user_error: { message: `no\u0000 face ${'é'.repeat(2_000)}` } }), NOW, OPTIONS);
    const message = result!.changes.errorMessage!;
    expect(message.startsWith('Astria training failed: no face éé')).toBe(true);
    expect(message).not.toContain('\u0000');
    expect(Buffer.byteLength(message)).toBeLessThanOrEqual(1_000);
    expect(message.endsWith('é…')).toBe(true);
    // Compact JSON too: a huge object without a message costs 1,000 bytes, not the row.
    const json = decide(model(), observe({ error: { images: Array.from({ length: 500 }, (_, i) => `image ${i}`) } }), NOW, OPTIONS);
    expect(Buffer.byteLength(json!.changes.errorMessage!)).toBeLessThanOrEqual(1_000);
    expect(json!.changes.errorMessage!).toMatch(/^Astria training failed: \{"images":\["image 0",.*…$/);
  });
});

describe('decide: an implausible trained_at', () => {
  // The tune of `observe` was created 30 minutes before NOW.
  it.each<[string, string]>([
    ['1970', '1970-01-01T00:00:00.000Z'],
    ['year 1', '0001-01-01T00:00:00.000Z'],
    ['two minutes before the tune was created', iso(-minutes(32))],
    ['ten minutes in the future', iso(minutes(10))],
    ['a year in the future', iso(hours(24 * 365))],
  ])('%s: still READY, trainedAt is when the tune was observed, and the transition says why', (_label, trainedAt) => {
    const result = decide(model(), trained({ trained_at: trainedAt }), NOW, OPTIONS);
    expect(result).toMatchObject({ to: 'READY', changes: { progress: 100, modelUrl: String(TUNE_ID), errorMessage: null } });
    expect(result!.changes.trainedAt).toEqual(NOW);
    expect(result!.implausibleTrainedAt).toEqual(new Date(trainedAt));
  });

  it.each<[string, string]>([
    ['a minute before the tune was created (clock skew)', iso(-minutes(31))],
    ['exactly when it was created', iso(-minutes(30))],
    ['five minutes in the future (clock skew)', iso(minutes(5))],
    ['just now', iso(0)],
  ])('%s is plausible: trainedAt is Astria’s', (_label, trainedAt) => {
    const result = decide(model(), trained({ trained_at: trainedAt }), NOW, OPTIONS);
    expect(result!.changes.trainedAt).toEqual(new Date(trainedAt));
    expect(result!.implausibleTrainedAt).toBeUndefined();
  });

  it('without a readable created_at only the future bound applies', () => {
    for (const createdAt of [null, 'not a time', 1696257125]) {
      const old = decide(model(), trained({ created_at: createdAt, trained_at: '2001-01-01T00:00:00.000Z' }), NOW, OPTIONS);
      expect(old!.changes.trainedAt).toEqual(new Date('2001-01-01T00:00:00.000Z'));
      const future = decide(model(), trained({ created_at: createdAt, trained_at: iso(hours(1)) }), NOW, OPTIONS);
      expect(future!.changes.trainedAt).toEqual(NOW);
    }
  });

  it('a leap-second trained_at makes the model READY', () => {
    const result = decide(
      model(),
      trained({ created_at: '2003-05-05T23:40:00Z', trained_at: '2003-05-05T23:59:60Z' }),
      NOW,
      OPTIONS,
    );
    expect(result?.to).toBe('READY');
    expect(result!.changes.trainedAt!.toISOString()).toBe('2003-05-05T23:59:59.999Z');
    expect(result!.implausibleTrainedAt).toBeUndefined();
  });

  it('an ERROR we set heals to READY with the observed time, too', () => {
    const result = decide(model({ status: 'ERROR', ownError: true, errorMessage: 'x' }), trained({ trained_at: '1970-01-01T00:00:00Z' }), NOW, OPTIONS);
    expect(result).toMatchObject({ from: 'ERROR', to: 'READY' });
    expect(result!.changes.trainedAt).toEqual(NOW);
  });
});

describe('decide: tune gone (404)', () => {
  it.each<ModelStatus>(['TRAINING', 'PROCESSING'])('%s → ERROR "Astria tune N not found"', (status) => {
    const result = decide(model({ status, trainingJobId: '5551234' }), gone('5551234'), NOW, OPTIONS);
    expect(result?.from).toBe(status);
    expect(result?.to).toBe('ERROR');
    expect(result?.changes.errorMessage).toBe('Astria tune 5551234 not found');
  });
});

describe('decide: still training', () => {
  it('PROCESSING stays PROCESSING before started_training_at', () => {
    expect(decide(model({ status: 'PROCESSING' }), observe(), NOW, OPTIONS)).toBeNull();
    // Even with an eta to report, the status does not move.
    const result = decide(model({ status: 'PROCESSING' }), observe({ eta: iso(minutes(45)) }), NOW, OPTIONS);
    expect(result?.from).toBe('PROCESSING');
    expect(result?.to).toBe('PROCESSING');
  });

  it('PROCESSING → TRAINING once started_training_at is set', () => {
    const result = decide(
      model({ status: 'PROCESSING' }),
      observe({ started_training_at: iso(-minutes(1)), eta: null }),
      NOW,
      OPTIONS,
    );
    expect(result?.from).toBe('PROCESSING');
    expect(result?.to).toBe('TRAINING');
  });

  it('TRAINING with nothing new → null', () => {
    expect(decide(model(), observe({ started_training_at: iso(-minutes(1)) }), NOW, OPTIONS)).toBeNull();
  });

  it('progress rises with the time elapsed from started_training_at to eta; estimatedTime from eta', () => {
    // Started 10 minutes ago, due in 30: a quarter done, 30 minutes left.
    const result = decide(model({ progress: 0 }), training(), NOW, OPTIONS);
    expect(result?.from).toBe('TRAINING');
    expect(result?.to).toBe('TRAINING');
    expect(result?.changes).toEqual({ progress: 25, estimatedTime: 30 });
  });

  it('a progress-only update keeps to === from and touches no result columns', () => {
    const result = decide(model({ progress: 10, estimatedTime: 40 }), training(), NOW, OPTIONS);
    expect(result).not.toBeNull();
    expect(result!.to).toBe(result!.from);
    expect(result!.changes.trainedAt).toBeUndefined();
    expect(result!.changes.modelUrl).toBeUndefined();
    expect(result!.changes.errorMessage).toBeUndefined();
  });

  it('nothing changed → null', () => {
    expect(decide(model({ progress: 25, estimatedTime: 30 }), training(), NOW, OPTIONS)).toBeNull();
  });

  it('progress never goes above 99 while not trained, and estimatedTime is 0 once eta has passed', () => {
    const overdue = training({ started_training_at: iso(-minutes(60)), eta: iso(-minutes(20)) });
    const result = decide(model({ progress: 50, estimatedTime: 5 }), overdue, NOW, OPTIONS);
    expect(result?.to).toBe('TRAINING');
    expect(result?.changes.progress).toBe(99);
    expect(result?.changes.estimatedTime).toBe(0);
  });

  it('progress never goes down (model at 80, computed 50)', () => {
    // Started 20 minutes ago, due in 20: 50%.
    const halfway = training({ started_training_at: iso(-minutes(20)), eta: iso(minutes(20)) });
    expect(decide(model({ progress: 80, estimatedTime: 20 }), halfway, NOW, OPTIONS)).toBeNull();
    const withEta = decide(model({ progress: 80, estimatedTime: 35 }), halfway, NOW, OPTIONS);
    expect(withEta?.changes.progress).toBeUndefined();
    expect(withEta?.changes.estimatedTime).toBe(20);
  });

  it('a progress-only change smaller than a step (4 points, 4 minutes) writes nothing: the bar would barely move', () => {
    // Started 10 minutes ago, due in 30: 25 %, 30 minutes left.
    expect(decide(model({ progress: 21, estimatedTime: 34 }), training(), NOW, OPTIONS)).toBeNull();
  });

  it('a step in either figure writes both as they are now', () => {
    expect(decide(model({ progress: 20, estimatedTime: 34 }), training(), NOW, OPTIONS)?.changes).toEqual({ progress: 25, estimatedTime: 30 });
    expect(decide(model({ progress: 24, estimatedTime: 35 }), training(), NOW, OPTIONS)?.changes).toEqual({ progress: 25, estimatedTime: 30 });
  });

  it('the last figures are always written: 99 % and 0 minutes left, whatever the step', () => {
    const overdue = training({ started_training_at: iso(-minutes(60)), eta: iso(-minutes(20)) });
    expect(decide(model({ progress: 97, estimatedTime: 1 }), overdue, NOW, OPTIONS)?.changes).toEqual({ progress: 99, estimatedTime: 0 });
  });

  it('a status change carries the small progress change with it', () => {
    const result = decide(model({ status: 'PROCESSING', progress: 24, estimatedTime: 31 }), training(), NOW, OPTIONS);
    expect(result).toMatchObject({ from: 'PROCESSING', to: 'TRAINING', changes: { progress: 25, estimatedTime: 30 } });
  });

  it('estimatedTime rounds up to whole minutes', () => {
    const result = decide(model(), training({ eta: iso(90_000) }), NOW, OPTIONS);
    expect(result?.changes.estimatedTime).toBe(2);
    const justUnder = decide(model(), training({ eta: iso(1_000) }), NOW, OPTIONS);
    expect(justUnder?.changes.estimatedTime).toBe(1);
  });
});

describe('decide: statuses that do not move', () => {
  const observations: [string, Observation][] = [
    ['trained', trained()],
    ['failed', failed()],
    ['gone', gone()],
    ['still training', training()],
  ];

  describe.each<ModelStatus>(['READY', 'DELETED'])('never leaves %s', (status) => {
    it.each(observations)('%s → null', (_label, observation) => {
      expect(decide(model({ status, progress: 100 }), observation, NOW, OPTIONS)).toBeNull();
    });
    it('not even past the training timeout', () => {
      expect(decide(model({ status, createdAt: at(-hours(72)) }), training(), NOW, OPTIONS)).toBeNull();
    });
  });

  it.each(observations)('UPLOADING is untouched: %s → null', (_label, observation) => {
    expect(decide(model({ status: 'UPLOADING' }), observation, NOW, OPTIONS)).toBeNull();
  });

  it('ERROR → READY when Astria reports the tune trained and the ERROR was ours (false failure healed)', () => {
    const result = decide(
      model({ status: 'ERROR', progress: 30, estimatedTime: 4, errorMessage: 'Astria tune 788416 not found', ownError: true }),
      trained({ trained_at: '2003-05-06T11:30:00.000Z' }),
      NOW,
      OPTIONS,
    );
    expect(result?.from).toBe('ERROR');
    expect(result?.to).toBe('READY');
    expect(result?.changes.errorMessage).toBeNull();
    expect(result?.changes.progress).toBe(100);
    expect(result?.changes.trainedAt?.toISOString()).toBe('2003-05-06T11:30:00.000Z');
  });

  it.each([
    ['failed', failed()],
    ['gone', gone()],
    ['still training', training()],
  ])('ERROR stays ERROR when the tune is %s', (_label, observation) => {
    expect(decide(model({ status: 'ERROR', ownError: true }), observation, NOW, OPTIONS)).toBeNull();
  });

  it('an ERROR the app set ("Rejected by moderation") stays, even when the tune trained', () => {
    const moderated = model({ status: 'ERROR', errorMessage: 'Rejected by moderation', ownError: false });
    expect(decide(moderated, trained(), NOW, OPTIONS)).toBeNull();
    expect(decide({ ...moderated, ownError: undefined }, trained(), NOW, OPTIONS)).toBeNull();
  });

  it('an ERROR of any origin heals when an operator names the model', () => {
    const moderated = model({ status: 'ERROR', errorMessage: 'Rejected by moderation' });
    expect(decide(moderated, trained(), NOW, { ...OPTIONS, healAnyError: true })?.to).toBe('READY');
  });
});

describe('decide: what the compare-and-set checks', () => {
  it('carries the trainingJobId and errorMessage the decision was made on', () => {
    const result = decide(model({ errorMessage: 'retrying upload' }), trained(), NOW, OPTIONS);
    expect(result?.expected).toEqual({ trainingJobId: String(TUNE_ID), errorMessage: 'retrying upload' });
  });
});

describe('decide: text made safe to write', () => {
  it("strips NUL from Astria's error_message (PostgreSQL text refuses it) and bounds its length on a code-point boundary", () => {
    const result = decide(model(), observe({ status: 'failed', error_message: 'bad\u0000 face' }), NOW, OPTIONS);
    expect(result?.changes.errorMessage).toBe('Astria training failed: bad face');
    const long = decide(model(), observe({ status: 'failed', error_message: '😀'.repeat(600) }), NOW, OPTIONS);
    const message = long!.changes.errorMessage!;
    expect(Buffer.byteLength(message)).toBeLessThanOrEqual(1_000);
    expect(message.endsWith('😀…')).toBe(true);
    expect(isWellFormed(message)).toBe(true);
  });

  it('ignores a status that is not a string, and still reads the failure message', () => {
    expect(decide(model(), observe({ status: { state: 'failed' } }), NOW, OPTIONS)).toBeNull();
    expect(decide(model(), observe({ status: { state: 'x' }, error_message: 'GPU gone' }), NOW, OPTIONS)?.to).toBe('ERROR');
  });
});

describe('decide: training timeout', () => {
  it.each<ModelStatus>(['TRAINING', 'PROCESSING'])(
    '%s created longer ago than the timeout, still training → ERROR naming the timeout',
    (status) => {
      const result = decide(model({ status, createdAt: at(-hours(25)) }), training(), NOW, OPTIONS);
      expect(result?.from).toBe(status);
      expect(result?.to).toBe('ERROR');
      expect(result?.changes.errorMessage).toMatch(/24 ?h/);
    },
  );

  it('names a timeout that is not whole hours', () => {
    const result = decide(model({ createdAt: at(-minutes(91)) }), training(), NOW, { trainingTimeoutMs: minutes(90) });
    expect(result?.to).toBe('ERROR');
    expect(result?.changes.errorMessage).toMatch(/90 ?m|1\.5 ?h/);
  });

  it('within the timeout → no ERROR', () => {
    const result = decide(model({ createdAt: at(-hours(23)) }), training(), NOW, OPTIONS);
    expect(result?.to).toBe('TRAINING');
  });

  it('a trained tune beyond the timeout still → READY', () => {
    const result = decide(model({ createdAt: at(-hours(30)) }), trained(), NOW, OPTIONS);
    expect(result?.to).toBe('READY');
    expect(result?.changes.errorMessage).toBeNull();
  });
});

describe('decide: pure', () => {
  it('same inputs twice → equal outputs, inputs untouched', () => {
    const row = model({ status: 'PROCESSING', progress: 5, estimatedTime: 50 });
    const observation = training();
    const rowBefore = structuredClone(row);
    const observationBefore = structuredClone(observation);
    const first = decide(row, observation, NOW, OPTIONS);
    const second = decide(row, observation, NOW, OPTIONS);
    expect(first).not.toBeNull();
    expect(second).toEqual(first);
    expect(row).toEqual(rowBefore);
    expect(observation).toEqual(observationBefore);
  });

  it('does not read the clock: only `now` matters', () => {
    const row = model({ createdAt: at(-hours(2)) });
    const observation = training();
    vi.useFakeTimers();
    vi.setSystemTime(new Date('2099-12-31T00:00:00.000Z'));
    const farFuture = decide(row, observation, NOW, OPTIONS);
    vi.setSystemTime(new Date('1980-01-01T00:00:00.000Z'));
    const farPast = decide(row, observation, NOW, OPTIONS);
    expect(farFuture).toEqual(farPast);
    // Computed from NOW: 10 of 40 minutes elapsed, not timed out.
    expect(farFuture?.to).toBe('TRAINING');
    expect(farFuture?.changes).toEqual({ progress: 25, estimatedTime: 30 });
  });
});
