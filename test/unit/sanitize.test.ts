import { describe, expect, it } from 'vitest';
import { safeText } from '../../src/status/sanitize.js';

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
