/**
 * docs/api.md is executable: every ```ts block is type-checked against the built declarations (resolved
 * through package.json `exports`, as a consumer's compiler would), then stripped of its types, pointed
 * at the built library and run with node in a fresh working folder. Each example asserts its own
 * results, so a wrong sentence about the API fails here. A block whose fence says `ts norun` is only
 * type-checked (none do today).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import ts from 'typescript';
import { ROOT, run, tempDir } from '../helpers.js';

const DOC = join(ROOT, 'docs', 'api.md');
const LIBRARY_URL = pathToFileURL(join(ROOT, 'dist', 'src', 'index.js')).href;
const NODE_LIBRARY_URL = pathToFileURL(join(ROOT, 'dist', 'src', 'node', 'index.js')).href;

interface Example {
  /** 1-based line of the opening fence in docs/api.md. */
  line: number;
  heading: string;
  source: string;
  runnable: boolean;
}

function extractExamples(markdown: string): Example[] {
  const lines = markdown.split('\n');
  const out: Example[] = [];
  let heading = '(top)';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const h = /^#{1,6}\s+(.*)$/.exec(line);
    if (h) heading = h[1]!.trim();
    const fence = /^```(\S*)\s*(.*)$/.exec(line);
    if (!fence) continue;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]!); i++) body.push(lines[i]!);
    assert.ok(i < lines.length, `docs/api.md:${start + 1}: unterminated code fence`);
    if (fence[1] !== 'ts') continue;
    out.push({ line: start + 1, heading, source: body.join('\n') + '\n', runnable: !fence[2]!.split(/\s+/).includes('norun') });
  }
  return out;
}

/** Type-only syntax removed, `'vhdx'` pointed at the built library. */
function toRunnable(example: Example): string {
  const js = ts.transpileModule(example.source, {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
    fileName: 'example.mts',
  }).outputText;
  return js.replace(/(from\s+|import\s*\(\s*)(['"])vhdx(\/node)?\2/g, (_m, lead: string, _q: string, node: string | undefined) => `${lead}'${node ? NODE_LIBRARY_URL : LIBRARY_URL}'`);
}

const markdown = readFileSync(DOC, 'utf8');
const examples = extractExamples(markdown);

describe('docs/api.md examples', () => {
  let dir: { path: string; cleanup: () => void };
  before(() => {
    dir = tempDir('vhdx-api-docs-');
  });
  after(() => dir.cleanup());

  test('the page has examples and they cover every public export and image method', async () => {
    assert.ok(examples.length >= 20, `only ${examples.length} ts blocks found`);
    const code = examples.map((e) => e.source).join('\n');
    // The Node entry re-exports the core: its exports are both entries'.
    const library = (await import(NODE_LIBRARY_URL)) as Record<string, unknown>;
    assert.ok('VhdxImage' in library && 'openImage' in library, 'vhdx/node exports the core and its own');
    const missing = Object.keys(library).filter((name) => !new RegExp(`\\b${name}\\b`).test(code));
    assert.deepEqual(missing, [], 'exports of src/index.ts or src/node/index.ts that no example uses');
    // Public members of VhdxImage and the ImageReader it extends, from their declarations (private ones
    // are emitted without a signature, protected ones marked).
    const members = [
      ['image.d.ts', 'VhdxImage'],
      ['reader.d.ts', 'ImageReader'],
    ].flatMap(([file, name]) => {
      const declarations = readFileSync(join(ROOT, 'dist', 'src', 'image', file!), 'utf8');
      const dts = declarations.slice(declarations.indexOf(`export declare `));
      assert.match(dts, new RegExp(`class ${name}\\b`), `${file} declares ${name}`);
      return [...dts.matchAll(/^ {4}(?:static |readonly |get )?(\w+)(?:<[^>]*>)?[(:]/gm)].map((m) => m[1]!).filter((m) => m !== 'constructor');
    });
    assert.ok(members.includes('read') && members.includes('readInto'), `VhdxImage members not found: ${members.join(', ')}`);
    const unused = members.filter((m) => !new RegExp(`\\.${m}\\b`).test(code));
    assert.deepEqual(unused, [], 'public VhdxImage members that no example uses');
    // Every exported type is named in the prose or an example.
    const index = readFileSync(join(ROOT, 'src', 'index.ts'), 'utf8') + readFileSync(join(ROOT, 'src', 'node', 'index.ts'), 'utf8');
    const typeNames = [...index.matchAll(/\btype\s+(\w+)/g)].map((m) => m[1]!).filter((n) => n !== 'type');
    const exportTypeBlocks = [...index.matchAll(/export type \{([^}]*)\}/g)].flatMap((m) => m[1]!.split(',').map((s) => s.trim()).filter(Boolean));
    const unnamed = [...new Set([...typeNames, ...exportTypeBlocks])].filter((n) => !new RegExp(`\\b${n}\\b`).test(markdown));
    assert.deepEqual(unnamed, [], 'exported types that docs/api.md never mentions');
    // Every error code is in the table.
    const errors = readFileSync(join(ROOT, 'src', 'format', 'errors.ts'), 'utf8');
    const codes = [...errors.matchAll(/^\s*\| '([A-Z_]+)'/gm)].map((m) => m[1]!);
    assert.ok(codes.length >= 10, 'error codes not found in src/format/errors.ts');
    assert.deepEqual(codes.filter((c) => !markdown.includes(`| \`${c}\` |`)), [], 'error codes missing from the table');
  });

  test('links inside the page lead to its headings', () => {
    // Anchors as GitHub makes them: lower case, punctuation dropped, spaces to hyphens.
    const slugs = new Set(
      markdown
        .split('\n')
        .filter((line) => /^#{1,6}\s/.test(line))
        .map((line) => line.replace(/^#+\s+/, '').trim().toLowerCase().replace(/[^a-z0-9 _-]/g, '').replace(/ /g, '-')),
    );
    const broken = [...markdown.matchAll(/\]\(#([^)]+)\)/g)].map((m) => m[1]!).filter((anchor) => !slugs.has(anchor));
    assert.deepEqual(broken, []);
  });

  test('every example type-checks against the shipped declarations (strict)', () => {
    // A consumer's view: `vhdx` is a package in node_modules, resolved through its `exports` map.
    const project = join(dir.path, 'typecheck');
    mkdirSync(join(project, 'node_modules'), { recursive: true });
    symlinkSync(ROOT, join(project, 'node_modules', 'vhdx'), 'dir');
    const files = examples.map((example, i) => {
      const file = join(project, `example-${i}.mts`);
      writeFileSync(file, example.source);
      return file;
    });
    const { options, errors } = ts.convertCompilerOptionsFromJson(
      {
        strict: true,
        noUncheckedIndexedAccess: true,
        noEmit: true,
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        lib: ['ES2022'],
        types: ['node'],
        typeRoots: [join(ROOT, 'node_modules', '@types')],
        skipLibCheck: true,
      },
      project,
    );
    assert.deepEqual(errors, []);
    const program = ts.createProgram(files, options);
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const text = ts.flattenDiagnosticMessageText(d.messageText, '\n');
      if (!d.file || d.start === undefined) return text;
      const index = files.indexOf(d.file.fileName);
      const { line } = d.file.getLineAndCharacterOfPosition(d.start);
      const example = examples[index];
      return example ? `docs/api.md:${example.line + 1 + line} (${example.heading}): ${text}` : `${d.file.fileName}:${line + 1}: ${text}`;
    });
    assert.deepEqual(problems, []);
  });

  for (const [i, example] of examples.entries()) {
    if (!example.runnable) continue;
    test(`runs: ${example.heading} (docs/api.md:${example.line})`, () => {
      const work = join(dir.path, `run-${i}`);
      mkdirSync(work);
      const file = join(work, 'example.mjs');
      writeFileSync(file, toRunnable(example));
      const r = run(process.execPath, [file], { cwd: work, timeoutMs: 120_000 });
      assert.equal(r.code, 0, `docs/api.md:${example.line} exited ${r.code ?? r.signal}\n${r.stderr}${r.stdout.toString()}`);
    });
  }
});
