/**
 * Compaction of a real file system's disk. An ext4 file system (mkfs.ext4, 96 MiB) gets files written
 * with debugfs and is converted to VHDX; then, as a guest would, files are deleted and the freed space
 * reaches the image, in the two ways a guest can send it:
 *  - zeros written over the free blocks (what a zero-fill tool does): `vhdx compact` (full) must find
 *    the blocks that now read as zeros;
 *  - discards of the free blocks (what fstrim sends through `vhdx serve`, here through `image.discard`,
 *    the call the NBD server makes for a TRIM): `vhdx compact --mode quick` reuses the space.
 * Either way the compacted file must be within one block of what `qemu-img convert -O vhdx` makes of the
 * same disk at the same block size, and the disk converted back to raw must pass `e2fsck -fn` and equal
 * the guest's disk byte for byte.
 */
import assert from 'node:assert/strict';
import { closeSync, openSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { VhdxImage } from '../../src/image/image.js';
import { VHDX_BIN, patternBytes, requireProgram, run, runOk, tempDir } from '../helpers.js';
import { MiB, compareFiles, fileSize } from './util.js';

const DISK = 96 * MiB;
const FS_BLOCK = 4096;

/** Free block ranges of the (single-group) file system, as dumpe2fs lists them, in bytes. */
function freeRanges(raw: string): { offset: number; length: number }[] {
  const out: { offset: number; length: number }[] = [];
  for (const line of runOk('dumpe2fs', [raw], { env: {} }).toString().split('\n')) {
    const m = /^\s+Free blocks: (.+)$/.exec(line);
    if (!m) continue;
    for (const part of m[1]!.split(',')) {
      const [a, b] = part.trim().split('-').map(Number);
      out.push({ offset: a! * FS_BLOCK, length: ((b ?? a!) - a! + 1) * FS_BLOCK });
    }
  }
  return out;
}

function debugfs(raw: string, dir: string, commands: string[]): void {
  const script = join(dir, 'debugfs.cmds');
  writeFileSync(script, commands.join('\n') + '\n');
  runOk('debugfs', ['-w', '-f', script, raw]);
}

/** The guest disk: a file system with six files of 10 MiB, converted to VHDX, then three files deleted and the free space zeroed. */
function makeGuestDisk(dir: string, name: string): { raw: string; image: string; free: { offset: number; length: number }[] } {
  const raw = join(dir, `${name}.raw`);
  const image = join(dir, `${name}.vhdx`);
  writeFileSync(raw, '');
  runOk('truncate', ['-s', String(DISK), raw]);
  runOk('mkfs.ext4', ['-q', '-F', '-b', String(FS_BLOCK), '-E', 'lazy_itable_init=0,nodiscard', raw]);
  const files: string[] = [];
  for (let i = 0; i < 6; i++) {
    const host = join(dir, `file${i}`);
    writeFileSync(host, patternBytes(10 * MiB + i * 12345, 100 + i));
    files.push(`write ${host} f${i}`);
  }
  debugfs(raw, dir, files);
  runOk(VHDX_BIN, ['convert', raw, image, '--block-size', '1M']);
  debugfs(raw, dir, ['rm f1', 'rm f3', 'rm f4']);
  const free = freeRanges(raw);
  const fd = openSync(raw, 'r+');
  try {
    for (const r of free) writeSync(fd, new Uint8Array(r.length), 0, r.length, r.offset);
  } finally {
    closeSync(fd);
  }
  return { raw, image, free };
}

/** Every 1 MiB of the guest disk that differs from the image is written into it (zeros included). */
async function writeChanges(image: string, raw: string): Promise<number> {
  const vhdx = await VhdxImage.open(await NodeFileBackend.open(image, { readOnly: false }), { readOnly: false });
  const fd = openSync(raw, 'r');
  const chunk = new Uint8Array(MiB);
  let changed = 0;
  try {
    for (let at = 0; at < DISK; at += MiB) {
      readSync(fd, chunk, 0, MiB, at);
      const now = await vhdx.read(at, MiB);
      if (Buffer.from(now).equals(chunk)) continue;
      await vhdx.write(at, chunk);
      changed++;
    }
  } finally {
    closeSync(fd);
    await vhdx.close();
  }
  return changed;
}

/** The free ranges discarded, as the NBD server does for a guest's TRIM requests. */
async function discardFree(image: string, free: { offset: number; length: number }[]): Promise<void> {
  const vhdx = await VhdxImage.open(await NodeFileBackend.open(image, { readOnly: false }), { readOnly: false });
  try {
    for (const r of free) await vhdx.discard(r.offset, r.length);
  } finally {
    await vhdx.close();
  }
}

function judge(dir: string, image: string, raw: string, label: string): { ours: number; qemu: number } {
  const qemuImage = join(dir, `${label}-qemu.vhdx`);
  runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=1M', raw, qemuImage]);
  const ours = fileSize(image);
  const qemu = fileSize(qemuImage);
  assert.ok(ours <= qemu + MiB, `${label}: compacted file ${ours} bytes, qemu-img convert ${qemu} bytes: more than one block apart`);
  const back = join(dir, `${label}-back.raw`);
  runOk(VHDX_BIN, ['convert', image, back]);
  assert.equal(compareFiles(back, raw), null, `${label}: the disk converted back differs from the guest's`);
  const fsck = run('e2fsck', ['-fn', back]);
  assert.equal(fsck.code, 0, `${label}: e2fsck -fn: ${fsck.stdout.toString()}${fsck.stderr}`);
  console.log(`# ${label}: compacted ${ours} bytes, qemu-img convert ${qemu} bytes`);
  return { ours, qemu };
}

describe('compacting an ext4 guest disk', () => {
  const dir = tempDir('vhdx-compact-ext4-');
  before(() => {
    for (const p of ['mkfs.ext4', 'debugfs', 'dumpe2fs', 'e2fsck', 'qemu-img', 'truncate']) requireProgram(p);
  });
  after(() => dir.cleanup());

  it('free space zeroed by the guest: full compaction finds the zero blocks', async () => {
    const { raw, image } = makeGuestDisk(dir.path, 'zeroed');
    const before = fileSize(image);
    assert.ok((await writeChanges(image, raw)) >= 25, 'the deletions changed the disk');
    assert.ok(fileSize(image) >= before, 'writing zeros does not shrink the file by itself');
    const report = JSON.parse(runOk(VHDX_BIN, ['compact', image, '--json']).toString()) as { zeroBlocks: number; bytesReclaimed: number };
    assert.ok(report.zeroBlocks >= 25, `zero blocks: ${report.zeroBlocks}`);
    const { ours } = judge(dir.path, image, raw, 'zeroed');
    assert.ok(ours <= before - 25 * MiB, `file ${before} -> ${ours}`);
  });

  it('free space discarded (fstrim through the NBD server): quick compaction reuses it', async () => {
    const { raw, image, free } = makeGuestDisk(dir.path, 'trimmed');
    const before = fileSize(image);
    // The deletions themselves (inode, bitmaps, directory) reach the image as writes, the free space as discards.
    await discardFree(image, free);
    await writeChanges(image, raw);
    const report = JSON.parse(runOk(VHDX_BIN, ['compact', image, '--mode', 'quick', '--json']).toString()) as { zeroBlocks: number; blocksMoved: number };
    assert.equal(report.zeroBlocks, 0, 'quick mode reads no block');
    const { ours } = judge(dir.path, image, raw, 'trimmed');
    assert.ok(ours <= before - 25 * MiB, `file ${before} -> ${ours}`);
  });
});
