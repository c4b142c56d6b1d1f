import { describe, expect, it } from 'vitest';
import { progressEvent, statusChangedEvent, type UpdatedModel } from '../../src/status/event.js';
import { MAX_NOTIFY_PAYLOAD_BYTES, safeText } from '../../src/status/sanitize.js';

/** No lone surrogate (what jsonb refuses): with the u flag a paired one is a single code point, not Cs. */
const isWellFormed = (text: string) => !/\p{Cs}/u.test(text);

const jsonBytes = (text: string) => Buffer.byteLength(JSON.stringify(text)) - 2;

describe('safeText', () => {
  it('strips NUL and replaces lone surrogates, leaving paired ones', () => {
    expect(safeText('a\u0000b', 100)).toBe('ab');
    expect(safeText('x\uD83Dy\uDE00z😀', 100)).toBe('x\uFFFDy\uFFFDz😀');
  });

  it('leaves a text that fits exactly as it is', () => {
    const text = 'é'.repeat(50); // 100 bytes
    expect(safeText(text, 100)).toBe(text);
  });

  it('cuts on a code-point boundary, never inside a surrogate pair, and marks the cut', () => {
    const text = 'a'.repeat(999) + '😀'.repeat(10);
    const cut = safeText(text, 1_000);
    expect(isWellFormed(cut)).toBe(true);
    expect(cut.endsWith('…')).toBe(true);
    expect(jsonBytes(cut)).toBeLessThanOrEqual(1_000);
  });

  it('counts JSON escapes: quotes, backslashes and control characters take more than one byte', () => {
    for (const char of ['"', '\\', '\u0001', '\n']) {
      const cut = safeText(char.repeat(1_000), 500);
      expect(jsonBytes(cut)).toBeLessThanOrEqual(500);
      expect(jsonBytes(cut)).toBeGreaterThan(480);
    }
  });
});

describe('events fit a NOTIFY payload whatever the row holds', () => {
  it('the largest status and progress events (every string at its bound, all escapes) stay within MAX_NOTIFY_PAYLOAD_BYTES', () => {
    // A control character takes 6 JSON bytes: the worst any text can do against a byte bound.
    const huge = '\u0001'.repeat(20_000);
    const row: UpdatedModel = {
      id: huge,
      userId: huge,
      status: 'ERROR',
      progress: 100,
      modelUrl: huge,
      trainedAt: new Date(),
      errorMessage: huge,
      estimatedTime: Number.MAX_SAFE_INTEGER,
    };
    const events = [statusChangedEvent(row, 'PROCESSING', 'reconciler', new Date()), progressEvent(row, 'reconciler', new Date())];
    for (const event of events) expect(Buffer.byteLength(JSON.stringify(event))).toBeLessThanOrEqual(MAX_NOTIFY_PAYLOAD_BYTES);
  });
});

