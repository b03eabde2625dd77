// npm install hook: builds the optional native helper build/Release/vhdx_native.node with node-gyp.
// The library works without it (plain reads and writes instead of fallocate and copy_file_range), so a
// failed build prints one warning and leaves the install successful. VHDX_NATIVE=0 skips the build.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

function nodeGyp() {
  // npm names its bundled node-gyp in the environment of every install script.
  const fromNpm = process.env.npm_config_node_gyp;
  if (fromNpm && existsSync(fromNpm)) return fromNpm;
  const beside = join(dirname(process.execPath), '..', 'lib', 'node_modules', 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  return existsSync(beside) ? beside : null;
}

if (process.env.VHDX_NATIVE === '0') {
  console.log('vhdx: VHDX_NATIVE=0, native helper not built');
} else if (process.platform !== 'linux') {
  console.log(`vhdx: no native helper on ${process.platform}; plain file I/O is used`);
} else {
  const gyp = nodeGyp();
  const args = [gyp, 'rebuild'];
  // Outside npm, point node-gyp at the headers installed with this Node.js rather than downloading them.
  const prefix = join(dirname(process.execPath), '..');
  if (!process.env.npm_config_nodedir && existsSync(join(prefix, 'include', 'node', 'node_api.h'))) args.push(`--nodedir=${prefix}`);
  const result = gyp ? spawnSync(process.execPath, args, { cwd: root, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' }) : null;
  if (!result || result.status !== 0) {
    const errors = result ? result.stderr.split('\n').filter((l) => /ERR!/.test(l)) : [];
    const why = !gyp ? 'node-gyp not found' : (errors.find((l) => /ERR! stack \w*Error/.test(l)) ?? errors[0] ?? `exit ${result.status}`).replace(/^.*ERR!( stack)? /, '').trim();
    console.warn(`vhdx: warning: native helper not built (${why}); plain file I/O is used, slower on allocation and copies`);
  }
}
