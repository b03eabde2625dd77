/**
 * Read matrix against QEMU and libvhdi. Images are made by `qemu-img create -f vhdx` (dynamic and fixed,
 * block sizes 1, 8, 32 and 256 MiB, a virtual size that is a multiple of 512 but neither of 1 MiB nor of
 * the block size) and filled by `qemu-io` at unaligned offsets. The reference is `qemu-img convert -O raw`
 * (itself checked against the data the test wrote); `vhdx convert` must match it byte for byte, `vhdx
 * info` must agree with `qemu-img info`, and libvhdi must read the same bytes.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VHDX_BIN, requireProgram, run, runOk, tempDir } from '../helpers.js';
import {
  LARGE_SIZE,
  LIBVHDI_DISK_TYPES,
  MiB,
  SMALL_SIZE,
  compareFiles,
  fillWrite,
  libvhdiRead,
  qemuImgInfo,
  qemuIoWriteArgs,
  requirePyvhdi,
  sha256,
  sha256OfFile,
  vhdxInfo,
  writeModelRaw,
} from './util.js';


/**
 * qemu-io accepts byte-granular offsets and lengths for vhdx (the block layer does the read-modify-write
 * of the 512-byte sectors around them), so none of these is sector aligned except where noted.
 */
function scatteredWrites(blockSize: number, size: number): { offset: number; length: number; pattern: number }[] {
  const lastBlockStart = Math.floor((size - 1) / blockSize) * blockSize;
  return [
    { offset: 1000, length: 3001, pattern: 0x11 }, // unaligned start and length in block 0
    { offset: 2500, length: 100, pattern: 0x12 }, // overwrites the middle of the previous write
    { offset: 7777777, length: 1, pattern: 0x13 }, // a single byte
    { offset: blockSize - 777, length: 5000, pattern: 0x22 }, // crosses the first block boundary
    { offset: 10 * MiB + 17, length: 2 * MiB + 1000, pattern: 0x33 }, // spans several 1 MiB blocks
    { offset: Math.floor(size / 2) + 333, length: 70001, pattern: 0x44 },
    { offset: lastBlockStart - 3, length: 2051, pattern: 0x55 }, // crosses into the last, partial block
    { offset: size - 1234, length: 1234, pattern: 0x66 }, // ends exactly at the end of the disk
  ];
}

interface Case {
  subformat: 'dynamic' | 'fixed';
  blockSize: number;
  size: number;
}

const cases: Case[] = [];
for (const subformat of ['dynamic', 'fixed'] as const) {
  for (const blockMiB of [1, 8, 32, 256]) {
    cases.push({ subformat, blockSize: blockMiB * MiB, size: blockMiB === 256 ? LARGE_SIZE : SMALL_SIZE });
  }
}

describe('images made by qemu-img and written by qemu-io', () => {
  let tmp: { path: string; cleanup: () => void } | undefined;

  before(() => {
    for (const program of ['qemu-img', 'qemu-io']) requireProgram(program);
    requirePyvhdi();
    tmp = tempDir('vhdx-interop-qemu-');
  });
  after(() => tmp?.cleanup());

  for (const [index, c] of cases.entries()) {
    const label = `${c.subformat}, ${c.blockSize / MiB} MiB blocks, ${c.size} bytes`;
    describe(label, () => {
      let image = '';
      let reference = '';
      let model = '';
      let ours = '';
      let converted = false;
      /** Our conversion, made once and shared by the tests of this image. */
      const convertOurs = (): string => {
        if (!converted) {
          runOk(VHDX_BIN, ['convert', image, ours]);
          converted = true;
        }
        return ours;
      };

      before(() => {
        const base = join(tmp!.path, `${c.subformat}-${c.blockSize / MiB}`);
        image = `${base}.vhdx`;
        reference = `${base}.qemu.raw`;
        model = `${base}.model.raw`;
        ours = `${base}.ours.raw`;
        runOk('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', `subformat=${c.subformat},block_size=${c.blockSize}`, image, String(c.size)]);
        const writes = scatteredWrites(c.blockSize, c.size);
        runOk('qemu-io', ['-f', 'vhdx', ...qemuIoWriteArgs(writes), image]);
        runOk('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', image, reference]);
        writeModelRaw(model, c.size, writes.map((w) => fillWrite(w.offset, w.length, w.pattern)));
      });
      after(() => {
        for (const f of [image, reference, model, ours]) if (f) rmSync(f, { force: true });
      });

      it('qemu-img convert returns exactly what qemu-io wrote (the reference is sound)', () => {
        assert.equal(compareFiles(reference, model), null);
      });

      it('vhdx convert is byte-identical to qemu-img convert', () => {
        assert.equal(compareFiles(convertOurs(), reference), null);
      });

      it('vhdx info agrees with qemu-img info on virtual size and block size', () => {
        const qemu = qemuImgInfo(image);
        const mine = vhdxInfo(image);
        assert.equal(qemu['virtual-size'], c.size, 'qemu-img reports the size the image was created with');
        assert.equal(mine.virtualSize, qemu['virtual-size']);
        assert.equal(mine.blockSize, qemu['cluster-size']);
        assert.equal(mine.blockSize, c.blockSize);
        assert.equal(mine.type, c.subformat);
        assert.equal(mine.logState, 'empty');
      });

      it('libvhdi reads the same virtual disk', () => {
        const view = libvhdiRead(image, reference);
        assert.equal(view.firstDifference, null, `libvhdi vs qemu-img convert: ${JSON.stringify(view.firstDifference)}`);
        assert.equal(view.mediaSize, c.size);
        assert.equal(view.bytesPerSector, 512);
        assert.equal(LIBVHDI_DISK_TYPES[view.diskType], c.subformat);
        const mine = vhdxInfo(image);
        assert.equal(mine.logicalSectorSize, view.bytesPerSector);
        assert.equal(mine.type, LIBVHDI_DISK_TYPES[view.diskType]);
        assert.equal(sha256OfFile(convertOurs()), view.sha256, 'our conversion hashes like libvhdi\'s read');
      });

      if (index === 0) {
        it('vhdx convert IMG - writes the same bytes to stdout', () => {
          const r = run(VHDX_BIN, ['convert', image, '-']);
          assert.equal(r.code, 0, r.stderr);
          assert.equal(r.stdout.length, c.size);
          assert.equal(sha256(r.stdout), sha256OfFile(reference));
        });
      }
    });
  }
});
