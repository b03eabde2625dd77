/**
 * Write interop (write issue acceptance): images this library creates and writes, checked by the peers.
 *
 * - 512-byte logical sectors, dynamic and fixed, 1, 32 and 256 MiB blocks, a virtual size that is not a
 *   multiple of the block size: a workload of unaligned, block-spanning and last-block writes,
 *   overwrites, discards, writeZeroes, flushes and a close/reopen, closed cleanly. `qemu-img check` must
 *   be clean (exit 0, no leaks), `qemu-img compare` must find the image identical to the model, and
 *   libvhdi must read the model's bytes.
 *   Fixed images are fully allocated, except the 256 MiB-block one, created --sparse to keep the test
 *   small (test/interop/write-allocation.test.ts covers allocation).
 * - 4096-byte logical sectors (which QEMU refuses to open), dynamic and fixed, 1 and 32 MiB blocks: the
 *   same workload; libvhdi must read the model's bytes.
 *
 * The model (expected raw disk) is built from the operations alone (`writesOfOps`), never from our reader.
 */
import assert from 'node:assert/strict';
import { existsSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { openImage } from '../../src/node/paths.js';
import { create, type CreateOptions } from '../../src/ops/create.js';
import { VHDX_BIN, patternBytes, requireProgram, runOk, tempDir } from '../helpers.js';
import { applyOp, type Op } from '../model.js';
import {
  LARGE_SIZE,
  LIBVHDI_DISK_TYPES,
  MiB,
  SMALL_SIZE,
  compareFiles,
  libvhdiRead,
  qemuCheckProblem,
  qemuCompare,
  qemuImgCheck,
  qemuImgInfo,
  requirePyvhdi,
  sha256OfFile,
  writeModelRaw,
  writesOfOps,
} from './util.js';

/** 4 KiB sectors: 33 MiB + 3 sectors, the last block partial for both 1 and 32 MiB blocks. */
const SIZE_4K = 33 * MiB + 3 * 4096;

/**
 * The workload, for a disk of `size` bytes in `blockSize` blocks. Every kind of change, at awkward
 * places; whole-block zeroing of block 0 only where a block is at most 32 MiB (a 256 MiB block would
 * mean writing or reallocating 256 MiB for little more coverage).
 */
function workload(blockSize: number, size: number): Op[] {
  const last = (Math.ceil(size / blockSize) - 1) * blockSize;
  let seed = 1000;
  const w = (offset: number, length: number): Op => ({ kind: 'write', offset, data: patternBytes(length, seed++) });
  const ops: Op[] = [
    w(1000, 3001), // unaligned start and length, allocates block 0
    w(blockSize - 777, 5000), // crosses the block 0 / block 1 boundary
    w(10 * MiB + 17, 2 * MiB + 1000), // several 1 MiB blocks, or the middle of a large one
    { kind: 'flush' },
    w(2500, 100), // overwrite in place, inside the first write
    w(last - 3, 2051), // crosses into the partial last block
    w(size - 1234, 1234), // ends exactly at the end of the disk
    { kind: 'discard', offset: 1500, length: 1000 }, // partial discard: zero-filled in place
    { kind: 'writeZeroes', offset: blockSize + 100, length: 300 }, // partial zeroing in block 1
    { kind: 'flush' },
    { kind: 'discard', offset: last, length: size - last }, // the whole partial last block
    { kind: 'flush' },
    w(size - 3000, 2000), // the last block again (dynamic: reallocated, reusing released space)
    w(blockSize - 100, 1), // a single byte, unflushed when the image is reopened
    { kind: 'reopen' },
  ];
  if (blockSize <= 32 * MiB) {
    ops.push(
      { kind: 'writeZeroes', offset: 0, length: blockSize }, // whole block 0 (dynamic: ZERO state, space released)
      w(77, 1000), // block 0 again
    );
  }
  ops.push(
    w(7_777_777, 1), // a single byte
    { kind: 'writeZeroes', offset: 10 * MiB + 500, length: 2 * MiB }, // 1 MiB blocks: partial, whole, partial
    w(11 * MiB + 100, 200), // 1 MiB blocks: the block just zeroed is allocated again
    { kind: 'flush' },
    w(3 * MiB + 5, 4 * MiB), // a long unaligned write, spanning 1 MiB blocks
    { kind: 'discard', offset: 4 * MiB, length: 2 * MiB }, // 1 MiB blocks: two whole blocks unmapped, unflushed at close
  );
  return ops;
}

/** Creates `path` with `options` and runs `ops` against it through the library; closes cleanly. */
async function createAndWrite(path: string, options: CreateOptions, ops: readonly Op[]): Promise<void> {
  const backend = await NodeFileBackend.open(path, { readOnly: false, create: true });
  try {
    await create(backend, options);
  } finally {
    await backend.close();
  }
  const open = () => openImage(path, { readOnly: false });
  let image = await open();
  try {
    for (const op of ops) image = await applyOp(image, op, open);
  } finally {
    await image.close();
  }
}

interface Case {
  type: 'dynamic' | 'fixed';
  blockSize: number;
  size: number;
  physicalSectorSize: 512 | 4096;
  /** Fixed images only: the payload area left as a hole (used for 256 MiB blocks, to keep the test small). */
  sparse: boolean;
}

const cases512: Case[] = [];
for (const type of ['dynamic', 'fixed'] as const) {
  for (const [i, blockMiB] of [1, 32, 256].entries()) {
    cases512.push({
      type,
      blockSize: blockMiB * MiB,
      size: blockMiB === 256 ? LARGE_SIZE : SMALL_SIZE,
      physicalSectorSize: (i + (type === 'fixed' ? 1 : 0)) % 2 === 0 ? 4096 : 512,
      sparse: type === 'fixed' && blockMiB === 256,
    });
  }
}

describe('images we create and write, 512-byte sectors: qemu-img check, qemu-img compare, libvhdi', () => {
  let tmp: { path: string; cleanup: () => void } | undefined;
  before(() => {
    requireProgram('qemu-img');
    requirePyvhdi();
    tmp = tempDir('vhdx-interop-write-');
  });
  after(() => tmp?.cleanup());

  for (const c of cases512) {
    const label = `${c.type}${c.sparse ? ' (sparse)' : ''}, ${c.blockSize / MiB} MiB blocks, ${c.size} bytes, physical ${c.physicalSectorSize}`;
    describe(label, () => {
      let image = '';
      let model = '';
      const files: string[] = [];

      before(async () => {
        const base = join(tmp!.path, `${c.type}-${c.blockSize / MiB}`);
        image = `${base}.vhdx`;
        model = `${base}.model.raw`;
        files.push(image, model);
        const ops = workload(c.blockSize, c.size);
        await createAndWrite(image, { virtualSize: c.size, type: c.type, blockSize: c.blockSize, logicalSectorSize: 512, physicalSectorSize: c.physicalSectorSize, sparse: c.sparse }, ops);
        writeModelRaw(model, c.size, writesOfOps(ops));
      });
      after(() => {
        for (const f of files) rmSync(f, { force: true });
      });

      it('the write lock is released on close', () => {
        assert.equal(existsSync(`${image}.lock`), false);
      });

      it('qemu-img check: exit 0, no errors, no leaks', () => {
        const problem = qemuCheckProblem(qemuImgCheck(image));
        assert.equal(problem, null, problem ?? '');
      });

      it('qemu-img info sees the shape we created', () => {
        const info = qemuImgInfo(image);
        assert.equal(info['virtual-size'], c.size);
        assert.equal(info['cluster-size'], c.blockSize);
      });

      it('qemu-img compare: the image equals the model', () => {
        const r = qemuCompare(image, model);
        assert.equal(r.code, 0, `qemu-img compare ${image} ${model}: ${r.output.trim()}`);
        assert.match(r.output, /Images are identical/);
      });

      it('libvhdi reads the model\'s bytes', () => {
        const view = libvhdiRead(image, model);
        assert.equal(view.firstDifference, null, `libvhdi vs model: ${JSON.stringify(view.firstDifference)}`);
        assert.equal(view.mediaSize, c.size);
        assert.equal(view.bytesPerSector, 512);
        assert.equal(LIBVHDI_DISK_TYPES[view.diskType], c.type);
        assert.equal(view.sha256, sha256OfFile(model), 'libvhdi\'s sha256 vs the model\'s');
      });

      it('our reader (vhdx convert) returns the model', () => {
        const ours = `${image}.ours.raw`;
        files.push(ours);
        runOk(VHDX_BIN, ['convert', image, ours]);
        assert.equal(compareFiles(ours, model), null);
      });
    });
  }
});

describe('images we create and write, 4096-byte logical sectors: libvhdi', () => {
  let tmp: { path: string; cleanup: () => void } | undefined;
  before(() => {
    requirePyvhdi();
    tmp = tempDir('vhdx-interop-write-4k-');
  });
  after(() => tmp?.cleanup());

  for (const type of ['dynamic', 'fixed'] as const) {
    for (const blockSize of [MiB, 32 * MiB]) {
      const physicalSectorSize = blockSize === MiB ? 4096 : 512;
      it(`${type}, ${blockSize / MiB} MiB blocks, ${SIZE_4K} bytes, physical ${physicalSectorSize}`, async () => {
        const base = join(tmp!.path, `${type}-${blockSize / MiB}`);
        const image = `${base}.vhdx`;
        const model = `${base}.model.raw`;
        const ours = `${base}.ours.raw`;
        try {
          const ops = workload(blockSize, SIZE_4K);
          await createAndWrite(image, { virtualSize: SIZE_4K, type, blockSize, logicalSectorSize: 4096, physicalSectorSize }, ops);
          writeModelRaw(model, SIZE_4K, writesOfOps(ops));
          const view = libvhdiRead(image, model);
          assert.equal(view.bytesPerSector, 4096, 'libvhdi bytes per sector');
          assert.equal(view.mediaSize, SIZE_4K);
          assert.equal(LIBVHDI_DISK_TYPES[view.diskType], type);
          assert.equal(view.firstDifference, null, `libvhdi vs model: ${JSON.stringify(view.firstDifference)}`);
          assert.equal(view.sha256, sha256OfFile(model), 'libvhdi\'s sha256 vs the model\'s');
          runOk(VHDX_BIN, ['convert', image, ours]);
          assert.equal(compareFiles(ours, model), null, 'our reader vs the model');
        } finally {
          for (const f of [image, model, ours]) rmSync(f, { force: true });
        }
      });
    }
  }
});
