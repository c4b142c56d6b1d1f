import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { buildExample, EXAMPLE_DIR, exampleMissing } from '../../bench/nextjs-app.js';

const missing = exampleMissing();
if (missing) console.log(`[skip] examples/nextjs type check: ${missing}`);

describe.skipIf(missing !== null)('examples/nextjs', () => {
  it('type-checks against the real Next.js, React and Prisma types and the built library', async () => {
    await buildExample(); // generates the example's Prisma client (and is shared with the browser test)
    const result = await promisify(execFile)('npm', ['run', 'typecheck'], { cwd: EXAMPLE_DIR }).then(
      () => ({ code: 0, output: '' }),
      (error: { code?: number; stdout?: string; stderr?: string }) => ({ code: error.code ?? 1, output: `${error.stdout ?? ''}${error.stderr ?? ''}` }),
    );
    expect(result.output).toBe('');
    expect(result.code).toBe(0);
  }, 120_000);
});
