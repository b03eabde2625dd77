/**
 * The package's root folder (where package.json and build/ are), found from a module's URL by walking
 * up: the modules under dist/src and the bundled CLI (dist/cli.js) sit at different depths.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export function packageRoot(moduleUrl: string): string | null {
  for (let dir = dirname(fileURLToPath(moduleUrl)); ; dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest)) {
      try {
        if ((JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'vhdx') return dir;
      } catch {
        // not ours, or unreadable: keep looking
      }
    }
    if (dirname(dir) === dir) return null;
  }
}
