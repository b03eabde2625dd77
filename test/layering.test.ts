/**
 * The core entry (`vhdx`, dist/src/index.js) must run without Node.js. Two independent checks on what
 * the build emitted:
 *  1. The import graph, walked from the entry through every static and dynamic import of the emitted
 *     JavaScript: no module reachable from it imports `node:*` or a Node built-in by its bare name,
 *     and none uses a Node-only global (Buffer, process, require, __dirname).
 *  2. esbuild bundles the entry for `--platform=browser`, which fails on any Node built-in; the
 *     bundle's size is reported.
 * And the Node entry (`vhdx/node`) re-exports the whole core.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { build } from 'esbuild';
import { ROOT, tempDir } from './helpers.js';

const CORE_ENTRY = join(ROOT, 'dist', 'src', 'index.js');
const NODE_ENTRY = join(ROOT, 'dist', 'src', 'node', 'index.js');
const BUILTINS = new Set(builtinModules);

/** Every module specifier of an emitted ES module: import/export ... from, bare import, import(). */
function specifiers(code: string): string[] {
  const out: string[] = [];
  for (const m of code.matchAll(/(?:^|[;\s})])(?:import|export)\s[^'"`;]*?from\s*(['"])([^'"]+)\1/g)) out.push(m[2]!);
  for (const m of code.matchAll(/(?:^|[;\s])import\s*(['"])([^'"]+)\1/g)) out.push(m[2]!);
  for (const m of code.matchAll(/\bimport\s*\(\s*(['"])([^'"]+)\1\s*\)/g)) out.push(m[2]!);
  return out;
}

/** The code without comments and string contents (a message may say "process"; code may not use it). */
function codeOnly(code: string): string {
  return code
    .replace(/\/\*[\s\S]*?\*\//g, '')
    .replace(/(^|[^:\\])\/\/.*$/gm, '$1')
    .replace(/'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*"|`(?:[^`\\]|\\.)*`/g, '""');
}

interface Problem {
  module: string;
  problem: string;
  via: string[];
}

/** Walks the graph from `entry`; returns every module reached and every problem with the path that leads to it. */
function walk(entry: string): { modules: string[]; problems: Problem[] } {
  const seen = new Map<string, string[]>([[entry, []]]);
  const queue = [entry];
  const problems: Problem[] = [];
  while (queue.length > 0) {
    const file = queue.shift()!;
    const via = [...seen.get(file)!, relative(ROOT, file)];
    const code = readFileSync(file, 'utf8');
    for (const spec of specifiers(code)) {
      if (spec.startsWith('node:') || BUILTINS.has(spec) || BUILTINS.has(spec.split('/')[0]!)) {
        problems.push({ module: relative(ROOT, file), problem: `imports ${spec}`, via });
        continue;
      }
      if (!spec.startsWith('.')) {
        problems.push({ module: relative(ROOT, file), problem: `imports the package ${spec} (the core has no dependencies)`, via });
        continue;
      }
      const target = resolve(dirname(file), spec);
      assert.ok(existsSync(target), `${relative(ROOT, file)} imports ${spec}, which was not emitted`);
      if (!seen.has(target)) {
        seen.set(target, via);
        queue.push(target);
      }
    }
    const globals = codeOnly(code).match(/(?<![.\w$])(Buffer|process|require|__dirname|__filename|global)(?![\w$])/g);
    if (globals) problems.push({ module: relative(ROOT, file), problem: `uses the Node-only global ${[...new Set(globals)].join(', ')}`, via });
  }
  return { modules: [...seen.keys()], problems };
}

describe('layering', () => {
  test('no module reachable from the core entry imports node:* or uses a Node-only global', () => {
    const { modules, problems } = walk(CORE_ENTRY);
    assert.ok(modules.length >= 25, `only ${modules.length} modules reached: the walk does not follow imports`);
    const names = modules.map((m) => relative(ROOT, m));
    for (const expected of ['dist/src/image/image.js', 'dist/src/ops/check.js', 'dist/src/format/header.js', 'dist/src/io/blob.js']) {
      assert.ok(names.includes(expected), `${expected} not reached`);
    }
    assert.deepEqual(
      problems.map((p) => `${p.module}: ${p.problem} (reached through ${p.via.join(' -> ')})`),
      [],
    );
  });

  test('the walk sees what it must refuse: the Node entry reaches node:*', () => {
    const { problems } = walk(NODE_ENTRY);
    assert.ok(problems.some((p) => p.problem.startsWith('imports node:')), 'the Node entry imports node:* somewhere');
  });

  test('the core entry bundles for the browser, and its size is reported', async () => {
    const dir = tempDir('vhdx-browser-bundle-');
    try {
      const outfile = join(dir.path, 'vhdx.js');
      const result = await build({
        entryPoints: [CORE_ENTRY],
        bundle: true,
        platform: 'browser',
        format: 'esm',
        target: 'es2022',
        minify: true,
        outfile,
        logLevel: 'silent',
        metafile: true,
      });
      assert.deepEqual(result.errors, []);
      const inputs = Object.keys(result.metafile.inputs);
      assert.ok(inputs.every((i) => !i.startsWith('node:')), `node built-ins in the bundle: ${inputs.filter((i) => i.startsWith('node:')).join(', ')}`);
      const size = statSync(outfile).size;
      console.log(`browser bundle of the core entry: ${inputs.length} modules, ${(size / 1024).toFixed(1)} KiB minified`);
      assert.ok(size > 20 * 1024, 'the bundle holds the library');
      // It loads, and exports the core.
      const core = (await import(pathToFileURL(outfile).href)) as Record<string, unknown>;
      for (const name of ['VhdxImage', 'BlobBackend', 'MemoryBackend', 'create', 'check', 'convertToRaw']) assert.equal(typeof core[name], 'function', name);
    } finally {
      dir.cleanup();
    }
  });

  test('the Node entry re-exports the whole core', async () => {
    const core = (await import(pathToFileURL(CORE_ENTRY).href)) as Record<string, unknown>;
    const node = (await import(pathToFileURL(NODE_ENTRY).href)) as Record<string, unknown>;
    for (const name of Object.keys(core)) assert.equal(node[name], core[name], name);
    for (const name of ['openImage', 'NodeFileBackend', 'createReadStream', 'serveNbd']) {
      assert.equal(typeof node[name], 'function', name);
      assert.equal(core[name], undefined, `${name} is in the core entry`);
    }
  });
});
