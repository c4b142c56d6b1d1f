// In this repository the library is linked from ../.. (`file:../..`), which npm installs as a bare
// symlink: build it (and install its dependencies) once, so `npm ci && npm run build` here is enough.
// In your own app, where astria-reconciler comes from the registry, delete this script and `prebuild`.
import { execSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../..', import.meta.url));
if (!existsSync(`${root}/node_modules/.package-lock.json`)) execSync('npm ci', { cwd: root, stdio: 'inherit' });
if (!existsSync(`${root}/dist/src/index.js`)) execSync('npm run build', { cwd: root, stdio: 'inherit' });
