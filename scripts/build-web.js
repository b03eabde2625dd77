#!/usr/bin/env node
/**
 * Builds the image inspector page into dist/web/: type-checks web/ against the DOM (web/tsconfig.json;
 * the core modules it imports must stay free of Node), bundles web/inspector.ts with the core modules
 * it uses into one classic script (not a module: browsers refuse module scripts on file:// pages, and
 * the page must work opened from disk), and copies index.html and style.css beside it.
 *
 *   node scripts/build-web.js            # from the repository root (npm run build calls it)
 *   node scripts/build-web.js --no-check # skip the type check
 */
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'web');

if (!process.argv.includes('--no-check')) {
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'web', 'tsconfig.json')], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error('build-web: type errors in web/ (see above)');
    process.exit(1);
  }
}

mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(root, 'web', 'inspector.ts')],
  bundle: true,
  platform: 'browser',
  format: 'iife',
  target: 'es2022',
  outfile: join(out, 'inspector.js'),
  sourcemap: true,
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
});
for (const file of ['index.html', 'style.css']) copyFileSync(join(root, 'web', file), join(out, file));
