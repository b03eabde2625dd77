/**
 * What `npm pack` ships: the compiled library with its type definitions and the command-line launcher,
 * and nothing of the tests, benchmarks or TypeScript sources. Also checks that every path package.json
 * points at exists after a build. (Consumers' type resolution through `exports` is exercised by
 * api-examples.test.ts, which type-checks the documentation examples against the package.)
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { accessSync, constants, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT, runOk } from '../helpers.js';

interface PackageJson {
  main: string;
  types: string;
  bin: Record<string, string>;
  exports: Record<string, string | Record<string, string>>;
  files: string[];
}

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as PackageJson;

function packedFiles(): string[] {
  const out = runOk('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, timeoutMs: 60_000 });
  const result = JSON.parse(out.toString()) as { files: { path: string }[] }[];
  assert.equal(result.length, 1);
  return result[0]!.files.map((f) => f.path).sort();
}

function walk(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

describe('package contents', () => {
  test('package.json points at files that exist after the build', () => {
    const entry = pkg.exports['.'];
    assert.ok(entry && typeof entry === 'object', 'exports["."] is a conditions object');
    assert.deepEqual(Object.keys(entry), ['types', 'default'], '"types" must come first so TypeScript picks it');
    assert.equal(entry['types'], `./${pkg.types}`);
    assert.equal(entry['default'], `./${pkg.main}`);
    for (const path of [pkg.main, pkg.types, ...Object.values(pkg.bin)]) assert.ok(existsSync(join(ROOT, path)), `${path} is missing`);
    accessSync(join(ROOT, pkg.bin['vhdx']!), constants.X_OK);
    assert.match(readFileSync(join(ROOT, pkg.types), 'utf8'), /export \{[^}]*\bVhdxImage\b[^}]*\}/);
    // The Node entry, `vhdx/node`, the same way.
    const node = pkg.exports['./node'];
    assert.ok(node && typeof node === 'object', 'exports["./node"] is a conditions object');
    assert.deepEqual(Object.keys(node), ['types', 'default']);
    for (const path of Object.values(node)) assert.ok(existsSync(join(ROOT, path)), `${path} is missing`);
    assert.match(readFileSync(join(ROOT, node['types']!), 'utf8'), /export \{[^}]*\bopenImage\b[^}]*\}/);
  });

  test('npm pack ships the library, its declarations and the launcher, and no tests or sources', () => {
    const files = packedFiles();
    for (const required of ['package.json', 'README.md', 'bin/vhdx', 'dist/cli.js', 'binding.gyp', 'native/vhdx_native.c', 'scripts/build-native.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/node/index.js', 'dist/src/node/index.d.ts', 'dist/src/cli/main.js']) {
      assert.ok(files.includes(required), `${required} is not in the package`);
    }
    // Every compiled library module and its declarations, so every import and type reference resolves.
    const built = walk(join(ROOT, 'dist', 'src'))
      .map((p) => relative(ROOT, p).split('\\').join('/'))
      .filter((p) => p.endsWith('.js') || p.endsWith('.d.ts'));
    assert.deepEqual(built.filter((p) => !files.includes(p)), [], 'built files left out of the package');
    const unwanted = files.filter((p) => /^(dist\/)?(test|bench)\//.test(p) || /^src\//.test(p) || p.endsWith('.map') || p.endsWith('.ts') !== p.endsWith('.d.ts') || p.includes('node_modules/'));
    assert.deepEqual(unwanted, [], 'files that must not be shipped');
    assert.ok(!files.some((p) => /\.test\.(js|d\.ts)$/.test(p)), 'no test files');
  });
});
