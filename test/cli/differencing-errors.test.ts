/**
 * Differencing disks through the real `bin/vhdx`: every way a chain can be broken gives one line on
 * stderr (`vhdx: FILE: cause`, no stack trace, nothing on stdout) and the documented exit status (2 for
 * usage errors, 1 for the rest), and the library throws a VhdxError with the matching `code`. Then the
 * ways out: `rebase` to a moved parent, `commit` (the parent then holds what the chain showed) and
 * `commit --remove`. Expected disk contents come from the bytes the test wrote, never from our reader.
 */
import assert from 'node:assert/strict';
import { copyFileSync, existsSync, mkdirSync, readFileSync, renameSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { commitImage, createChild, openImage, rebaseImage } from '../../src/node/paths.js';
import { VhdxError, type VhdxErrorCode } from '../../src/format/errors.js';
import { VHDX_BIN, patternBytes, run, runOk, sha256File, tempDir, type RunResult } from '../helpers.js';

const MiB = 1024 * 1024;
const SIZE = 16 * MiB;

const vhdx = (...args: string[]): RunResult => run(VHDX_BIN, args);

function assertError(r: RunResult, status: 1 | 2, pattern: RegExp, what: string): void {
  assert.equal(r.code, status, `${what}: exit status (stderr: ${r.stderr})`);
  assert.match(r.stderr, /^vhdx: [^\n]*\n$/, `${what}: exactly one line starting with "vhdx: "`);
  assert.match(r.stderr, pattern, what);
  assert.doesNotMatch(r.stderr, /\bat .*:\d+:\d+|node:internal|Error:|internal error/, `${what}: no stack trace`);
  assert.equal(r.stdout.length, 0, `${what}: nothing on stdout`);
}

async function assertCode(promise: Promise<unknown>, code: VhdxErrorCode, what: string): Promise<void> {
  await assert.rejects(promise, (error: unknown) => {
    assert.ok(error instanceof VhdxError, `${what}: a VhdxError, not ${String(error)}`);
    assert.equal(error.code, code, `${what}: code (message: ${error.message})`);
    return true;
  });
}

const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** The model of a disk: zeros with `writes` laid over them in order. */
function model(writes: { offset: number; data: Uint8Array }[]): Buffer {
  const disk = Buffer.alloc(SIZE);
  for (const w of writes) disk.set(w.data, w.offset);
  return disk;
}

async function writeAll(path: string, writes: { offset: number; data: Uint8Array }[]): Promise<void> {
  const image = await openImage(path, { readOnly: false });
  try {
    for (const w of writes) await image.write(w.offset, w.data);
  } finally {
    await image.close();
  }
}

/** Replaces a child's parent locator entries (opened alone, writable). */
async function setLocator(path: string, entries: Record<string, string>): Promise<void> {
  const image = await openImage(path, { readOnly: false, parentPath: false });
  try {
    await image.setParentLocator(Object.entries(entries).map(([key, value]) => ({ key, value })));
  } finally {
    await image.close();
  }
}

const BASE_WRITES = [
  { offset: 0, data: patternBytes(3 * MiB + 100, 1) },
  { offset: 9 * MiB + 7, data: patternBytes(70_000, 2) },
];
const CHILD_WRITES = [
  { offset: 1000, data: patternBytes(5000, 3) }, // unaligned, over the parent's data
  { offset: MiB - 300, data: patternBytes(900, 4) }, // across a block boundary
  { offset: 12 * MiB + 5, data: patternBytes(4096, 5) }, // where the parent has nothing
];

describe('differencing disks: errors and recovery through bin/vhdx', () => {
  const dir = tempDir('vhdx-diff-errors-');
  const at = (name: string): string => join(dir.path, name);
  const base = at('base.vhdx');

  before(async () => {
    runOk(VHDX_BIN, ['create', base, '16M', '--block-size', '1M']);
    await writeAll(base, BASE_WRITES);
  });
  after(() => dir.cleanup());

  /** A fresh child of `parent` at `name`, written with CHILD_WRITES. */
  async function child(name: string, parent = base): Promise<string> {
    const path = at(name);
    runOk(VHDX_BIN, ['create', path, '--parent', parent, '--block-size', '1M']);
    await writeAll(path, CHILD_WRITES);
    return path;
  }

  test('a moved or deleted parent: NOT_FOUND naming the child and where it looked; rebase to the new place opens the chain again', async () => {
    const moved = at('moved-base.vhdx');
    copyFileSync(base, moved);
    const c = await child('moving.avhdx', moved);
    mkdirSync(at('elsewhere'));
    const newPlace = at('elsewhere/base-here.vhdx');
    renameSync(moved, newPlace);
    const out = at('moving.raw');
    const notFound = new RegExp(`^vhdx: ${esc(c)}: parent not found \\(tried [^)]*${esc(moved)}[^)]*\\); give its path with --parent\\n$`);
    assertError(vhdx('convert', c, out), 1, notFound, 'convert with the parent moved');
    assert.equal(existsSync(out), false, 'no output is left behind');
    assertError(vhdx('info', c, '--chain'), 1, notFound, 'info --chain with the parent moved');
    assertError(vhdx('map', c), 1, notFound, 'map with the parent moved');
    assert.equal(vhdx('info', c).code, 0, 'info without --chain describes the child alone');
    await assertCode(openImage(c), 'NOT_FOUND', 'openImage with the parent moved');
    // The child alone opens, and a read that needs the parent says so.
    const alone = await openImage(c, { parentPath: false });
    try {
      await assertCode(alone.read(5 * MiB, 512), 'PARENT_REQUIRED', 'reading through a missing parent');
    } finally {
      await alone.close();
    }

    // Rebase: usage first, then the real thing.
    assertError(vhdx('rebase', c), 2, /^vhdx: rebase needs --parent NEW\n$/, 'rebase without --parent');
    const r = vhdx('rebase', c, '--parent', newPlace);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    runOk(VHDX_BIN, ['convert', c, out]);
    assert.ok(readFileSync(out).equals(model([...BASE_WRITES, ...CHILD_WRITES])), 'after rebase the chain reads base + child writes');
    unlinkSync(out);
    assert.match(runOk(VHDX_BIN, ['info', c, '--chain']).toString(), new RegExp(esc(newPlace)));

    // Deleted rather than moved: the same error, from the library too.
    unlinkSync(newPlace);
    assertError(vhdx('convert', c, out), 1, new RegExp(`^vhdx: ${esc(c)}: parent not found \\(tried [^)]*base-here\\.vhdx`), 'convert with the parent deleted');
    assert.equal(existsSync(out), false);
    await assertCode(openImage(c), 'NOT_FOUND', 'openImage with the parent deleted');
  });

  test('a --parent that does not exist: info, commit and rebase name it (NOT_FOUND), exit 1', async () => {
    const c = await child('missing-given.avhdx');
    const missing = at('no-such-parent.vhdx');
    const before = sha256File(c);
    assertError(vhdx('info', c, '--chain', '--parent', missing), 1, new RegExp(`^vhdx: ${esc(c)}: parent ${esc(missing)} does not exist\n$`), 'info --chain --parent MISSING');
    await assertCode(openImage(c, { parentPath: missing }), 'NOT_FOUND', 'openImage with a missing parentPath');
    // The file that does not exist must be named, whichever of the two the message starts with.
    assertError(vhdx('commit', c, '--parent', missing), 1, new RegExp(`^vhdx: [^\n]*${esc(missing)}`), 'commit --parent MISSING');
    assertError(vhdx('rebase', c, '--parent', missing), 1, new RegExp(`^vhdx: [^\n]*${esc(missing)}`), 'rebase --parent MISSING');
    assert.equal(sha256File(c), before, 'the child is untouched');
    assert.equal(existsSync(`${c}.lock`), false, 'no lock is left');
    await assertCode(commitImage(c, { parentPath: missing }), 'NOT_FOUND', 'commitImage with a missing parentPath');
    await assertCode(rebaseImage(c, missing), 'NOT_FOUND', 'rebaseImage onto a file that does not exist');
  });

  test('a parent written after the child was made: PARENT_MISMATCH (its DataWriteGuid changed)', async () => {
    const parent = at('changing.vhdx');
    copyFileSync(base, parent);
    const c = await child('of-changing.avhdx', parent);
    runOk(VHDX_BIN, ['write', parent, '--offset', '0', '--pattern', '0x77', '--length', '4096']);
    const out = at('changing.raw');
    const pattern = new RegExp(`^vhdx: ${esc(c)}: parent ${esc(parent)} has changed since this disk was made from it \\(its DataWriteGuid is \\{[0-9a-f-]{36}\\}, the child expects \\{[0-9a-f-]{36}\\}\\)\\n$`);
    assertError(vhdx('convert', c, out), 1, pattern, 'convert after the parent changed');
    assert.equal(existsSync(out), false);
    assertError(vhdx('info', c, '--chain'), 1, pattern, 'info --chain after the parent changed');
    await assertCode(openImage(c), 'PARENT_MISMATCH', 'openImage after the parent changed');
    const before = sha256File(parent);
    assertError(vhdx('commit', c), 1, pattern, 'commit into a changed parent');
    assert.equal(sha256File(parent), before, 'a refused commit leaves the parent untouched');
    await assertCode(commitImage(c), 'PARENT_MISMATCH', 'commitImage into a changed parent');
  });

  test('a parent locator naming the child itself: PARENT_CHAIN', async () => {
    const c = await child('self.avhdx');
    const linkage = (await openImage(c, { parentPath: false }).then(async (i) => [i.parentLocator!, await i.close()] as const))[0].parent_linkage!;
    await setLocator(c, { parent_linkage: linkage, relative_path: '.\\self.avhdx' });
    const pattern = new RegExp(`^vhdx: ${esc(c)}: the parent locator points at the image itself \\([^)]*self\\.avhdx\\)\\n$`);
    assertError(vhdx('info', c, '--chain'), 1, pattern, 'info --chain of a self-parented disk');
    assertError(vhdx('convert', c, at('self.raw')), 1, pattern, 'convert of a self-parented disk');
    assert.equal(existsSync(at('self.raw')), false);
    assertError(vhdx('commit', c), 1, pattern, 'commit of a self-parented disk');
    await assertCode(openImage(c), 'PARENT_CHAIN', 'openImage of a self-parented disk');
    await assertCode(commitImage(c), 'PARENT_CHAIN', 'commitImage of a self-parented disk');
    await assertCode(rebaseImage(c, c), 'PARENT_CHAIN', 'rebase onto itself');
    assertError(vhdx('rebase', c, '--parent', c), 1, new RegExp(`^vhdx: ${esc(c)}: an image cannot be its own parent\\n$`), 'rebase onto itself');
  });

  test('two children naming each other as parent: PARENT_CHAIN (the loop is found before linkage is checked)', async () => {
    const a = await child('loop-a.avhdx');
    const b = await child('loop-b.avhdx');
    await setLocator(a, { parent_linkage: '{00000000-0000-0000-0000-000000000001}', relative_path: '.\\loop-b.avhdx' });
    await setLocator(b, { parent_linkage: '{00000000-0000-0000-0000-000000000002}', relative_path: '.\\loop-a.avhdx' });
    const pattern = new RegExp(`^vhdx: ${esc(b)}: the chain of parents loops back to [^\\n]*loop-a\\.avhdx\\n$`);
    assertError(vhdx('convert', a, at('loop.raw')), 1, pattern, 'convert of a looping chain');
    assert.equal(existsSync(at('loop.raw')), false);
    assertError(vhdx('info', a, '--chain'), 1, pattern, 'info --chain of a looping chain');
    await assertCode(openImage(a), 'PARENT_CHAIN', 'openImage of a looping chain (from A)');
    await assertCode(openImage(b), 'PARENT_CHAIN', 'openImage of a looping chain (from B)');
  });

  test('a parent of another size or sector size given with --parent: PARENT_MISMATCH, and nothing is written', async () => {
    const c = await child('sized.avhdx');
    const bigger = at('bigger.vhdx');
    const sectors4k = at('sectors4k.vhdx');
    runOk(VHDX_BIN, ['create', bigger, '32M', '--block-size', '1M']);
    runOk(VHDX_BIN, ['create', sectors4k, '16M', '--block-size', '1M', '--logical-sector-size', '4096']);
    const size = new RegExp(`^vhdx: ${esc(c)}: parent ${esc(bigger)} is ${32 * MiB} bytes, the child ${SIZE}\\n$`);
    const sectors = new RegExp(`^vhdx: ${esc(c)}: parent ${esc(sectors4k)} has 4096-byte logical sectors, the child 512\\n$`);
    assertError(vhdx('info', c, '--chain', '--parent', bigger), 1, size, 'info --chain --parent of another size');
    assertError(vhdx('info', c, '--chain', '--parent', sectors4k), 1, sectors, 'info --chain --parent with other sectors');
    const before = [sha256File(c), sha256File(bigger), sha256File(sectors4k)];
    assertError(vhdx('commit', c, '--parent', bigger), 1, size, 'commit --parent of another size');
    assertError(vhdx('commit', c, '--parent', sectors4k), 1, sectors, 'commit --parent with other sectors');
    assertError(vhdx('rebase', c, '--parent', bigger), 1, size, 'rebase onto another size');
    assertError(vhdx('rebase', c, '--parent', sectors4k, '--force'), 1, sectors, 'rebase --force onto other sectors');
    assert.deepEqual([sha256File(c), sha256File(bigger), sha256File(sectors4k)], before, 'no file was changed');
    assert.equal(existsSync(`${c}.lock`) || existsSync(`${bigger}.lock`), false, 'no lock is left');
    await assertCode(openImage(c, { parentPath: bigger }), 'PARENT_MISMATCH', 'openImage with a parent of another size');
    await assertCode(openImage(c, { parentPath: sectors4k }), 'PARENT_MISMATCH', 'openImage with a parent of other sectors');
    await assertCode(commitImage(c, { parentPath: bigger }), 'PARENT_MISMATCH', 'commitImage into a parent of another size');
    await assertCode(rebaseImage(c, sectors4k, { force: true }), 'PARENT_MISMATCH', 'rebaseImage --force onto other sectors');
  });

  test('usage: create --parent with a SIZE, rebase without --parent; commit of a disk that is not differencing', async () => {
    const c = at('sized-child.avhdx');
    assertError(vhdx('create', c, '--parent', base, '16M'), 2, /^vhdx: a differencing disk takes its size from the parent: give no SIZE with --parent\n$/, 'create --parent SIZE');
    assert.equal(existsSync(c), false, 'nothing created');
    assertError(vhdx('create', c, '--parent', base, '--logical-sector-size', '4096'), 2, /the sector sizes are the parent's/, 'create --parent with sector sizes');
    assertError(vhdx('create', c, '--parent', at('no-such.vhdx')), 1, new RegExp(`^vhdx: ${esc(at('no-such.vhdx'))}: `), 'create --parent of a missing file');
    assert.equal(existsSync(c), false, 'nothing created');
    const existing = await child('rebase-usage.avhdx');
    const before = sha256File(existing);
    assertError(vhdx('rebase', existing), 2, /^vhdx: rebase needs --parent NEW\n$/, 'rebase without --parent');
    assert.equal(sha256File(existing), before);
    const baseBefore = sha256File(base);
    // Not a usage slip but a file that cannot be committed: still INVALID_ARGUMENT, which the CLI reports with status 2.
    assertError(vhdx('commit', base), 2, new RegExp(`^vhdx: ${esc(base)}: not a differencing disk: there is nothing to commit\\n$`), 'commit of a dynamic disk');
    assertError(vhdx('rebase', base, '--parent', base), 2, new RegExp(`^vhdx: ${esc(base)}: not a differencing disk`), 'rebase of a dynamic disk');
    assert.equal(sha256File(base), baseBefore, 'the dynamic disk is untouched');
    await assertCode(commitImage(base), 'INVALID_ARGUMENT', 'commitImage of a dynamic disk');
    await assertCode(createChild(at('x.avhdx'), at('no-such.vhdx')), 'NOT_FOUND', 'createChild of a missing parent');
  });

  test('commit: the parent then reads as the chain did; --remove deletes the child', async () => {
    const parent = at('commit-base.vhdx');
    copyFileSync(base, parent);
    const c = await child('commit.avhdx', parent);
    const expected = model([...BASE_WRITES, ...CHILD_WRITES]);
    const chainRaw = at('chain.raw');
    runOk(VHDX_BIN, ['convert', c, chainRaw]);
    assert.ok(readFileSync(chainRaw).equals(expected), 'the chain reads base + child writes');

    const r = vhdx('commit', c);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), new RegExp(`^merged ${esc(c)} into ${esc(parent)}: `));
    assert.ok(existsSync(c), 'without --remove the child stays');
    const parentRaw = at('parent.raw');
    runOk(VHDX_BIN, ['convert', parent, parentRaw]);
    assert.ok(readFileSync(parentRaw).equals(readFileSync(chainRaw)), 'the parent alone now reads as the chain did');
    // The child still opens on its (changed) parent and shows the same disk.
    unlinkSync(chainRaw);
    runOk(VHDX_BIN, ['convert', c, chainRaw, '-O', 'raw']);
    assert.ok(readFileSync(chainRaw).equals(expected), 'the kept child still reads the same');
    assert.equal(vhdx('check', parent).code, 0, 'the parent checks clean after the merge');

    // A second child, more writes, commit --remove.
    const second = await child('commit-2.avhdx', parent);
    const more = [{ offset: 5 * MiB + 3, data: patternBytes(MiB, 9) }];
    await writeAll(second, more);
    const r2 = vhdx('commit', second, '--remove');
    assert.equal(r2.code, 0, r2.stderr);
    assert.match(r2.stdout.toString(), new RegExp(`; ${esc(second)} removed\\n$`));
    assert.equal(existsSync(second), false, '--remove deleted the child');
    unlinkSync(parentRaw);
    runOk(VHDX_BIN, ['convert', parent, parentRaw, '-O', 'raw']);
    assert.ok(readFileSync(parentRaw).equals(model([...BASE_WRITES, ...CHILD_WRITES, ...CHILD_WRITES, ...more])), 'the parent holds every layer');
  });
});
