import { stat, readFile } from 'node:fs/promises';
import { CONTROL_CHARACTER } from '../config.js';
import type { Logger } from '../log.js';

/** Where the Bearer key comes from: the value of `ASTRIA_API_KEY`, or the file `ASTRIA_API_KEY_FILE` names. */
export interface ApiKeySource {
  /** The key to send now. */
  current(): Promise<string>;
}

export function fixedApiKey(key: string): ApiKeySource {
  return { current: async () => key };
}

/**
 * A key kept in a file (a Kubernetes Secret mounted as a volume, which the kubelet updates in place):
 * re-read whenever the file changes, so a rotated Secret is used without a restart. The first key is
 * read at start (config); a file that later vanishes or comes up empty keeps the last good key.
 */
export function fileApiKey(path: string, initial: string, log: Pick<Logger, 'info' | 'warn'>): ApiKeySource {
  let key = initial;
  let seenMtimeMs: number | null = null;
  let warned = false;
  return {
    async current() {
      try {
        const { mtimeMs } = await stat(path);
        if (mtimeMs !== seenMtimeMs) {
          const fresh = (await readFile(path, 'utf8')).trim();
          if (fresh === '') throw new Error('the file is empty');
          if (CONTROL_CHARACTER.test(fresh)) throw new Error('the key holds a control character (more than one line?)');
          if (seenMtimeMs !== null && fresh !== key) log.info({ file: path }, 'ASTRIA_API_KEY_FILE changed: using the new key');
          key = fresh;
          seenMtimeMs = mtimeMs;
          warned = false;
        }
      } catch (error) {
        if (!warned) log.warn({ file: path, err: (error as Error).message }, 'ASTRIA_API_KEY_FILE unreadable: keeping the last key');
        warned = true;
      }
      return key;
    },
  };
}
