/**
 * QEMU writes into images we made (write issue acceptance). Images are created and written with our CLI
 * (`vhdx create`, `vhdx write --pattern` and `--from -`), then qemu-io writes at unaligned places,
 * over our data, across block boundaries and into blocks we never allocated (the last, partial one
 * among them). Our reading of the result (`vhdx convert`) must equal `qemu-img convert -O raw` and the
 * model (our writes then QEMU's, in order), `qemu-img check` must stay clean and libvhdi must agree.
 * Then our library writes again into the image QEMU extended (into a block QEMU allocated and into a
 * new one) and everything must still hold.
 */
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openImage } from '../../src/node/paths.js';
import { VHDX_BIN, patternBytes, requireProgram, runOk, tempDir } from '../helpers.js';
import {
  MiB,
  batBlockState,
  compareFiles,
  fillWrite,
  libvhdiRead,
  qemuCheckProblem,
  qemuCompare,
  qemuImgCheck,
  qemuIoWriteArgs,
  requirePyvhdi,
  sha256OfFile,
  writeModelRaw,
  type Write,
} from './util.js';

/** 70 MiB + 7 sectors: three 32 MiB blocks (the last partial), or 71 blocks of 1 MiB (the last partial). */
const SIZE = 70 * MiB + 7 * 512;
const FULLY_PRESENT = 6;
const UNALLOCATED_STATES = [0, 1, 2, 3];

type PatternWrite = { offset: number; length: number; pattern: number };

/** Our CLI's writes: block 0, across the 0/1 boundary, and (from stdin) a run in block 5 or block 0. */
function ourWrites(blockSize: number): { pattern: PatternWrite[]; stdin: Write } {
  return {
    pattern: [
      { offset: 1000, length: 3001, pattern: 0x11 },
      { offset: blockSize - 777, length: 5000, pattern: 0x22 },
    ],
    stdin: { offset: 5 * MiB + 3, data: patternBytes(70_001, 7) },
  };
}

/** A block none of our writes touch, for both block sizes (with 32 MiB blocks, the partial last one). */
const NEVER_ALLOCATED = 2;

/** qemu-io's writes: unaligned, over our data, crossing boundaries, into blocks we never allocated. */
function qemuWrites(blockSize: number): PatternWrite[] {
  return [
    { offset: 2000, length: 1000, pattern: 0x5a }, // inside our first write
    { offset: blockSize - 100, length: 300, pattern: 0x5b }, // across the block 0/1 boundary, over our data
    { offset: NEVER_ALLOCATED * blockSize + 333, length: 4000, pattern: 0x5c }, // a block we never allocated
    { offset: SIZE - 5000, length: 4999, pattern: 0x5d }, // the partial last block (never allocated), up to the byte before the end
    { offset: 5 * MiB + 3 + 70_001 - 50, length: 10_000, pattern: 0x5e }, // the tail of our stdin write and past it
    { offset: 30 * MiB - 5, length: 10, pattern: 0x5f }, // 1 MiB blocks: across two blocks nobody allocated
  ];
}

describe('qemu-io writes into images we created and wrote', () => {
  let tmp: { path: string; cleanup: () => void } | undefined;
  before(() => {
    for (const program of ['qemu-img', 'qemu-io']) requireProgram(program);
    requirePyvhdi();
    tmp = tempDir('vhdx-interop-write-qemu-io-');
  });
  after(() => tmp?.cleanup());

  for (const type of ['dynamic', 'fixed'] as const) {
    for (const blockSize of [MiB, 32 * MiB]) {
      describe(`${type}, ${blockSize / MiB} MiB blocks, ${SIZE} bytes`, () => {
        let image = '';
        let model = '';
        let writes: Write[] = [];
        const files: string[] = [];
        const base = (): string => join(tmp!.path, `${type}-${blockSize / MiB}`);

        before(() => {
          image = `${base()}.vhdx`;
          model = `${base()}.model.raw`;
          files.push(image, model);
          runOk(VHDX_BIN, ['create', image, String(SIZE), '--type', type, '--block-size', `${blockSize / MiB}M`, '--physical-sector-size', blockSize === MiB ? '512' : '4096']);
          const ours = ourWrites(blockSize);
          for (const w of ours.pattern) runOk(VHDX_BIN, ['write', image, '--offset', String(w.offset), '--pattern', `0x${w.pattern.toString(16)}`, '--length', String(w.length)]);
          runOk(VHDX_BIN, ['write', image, '--offset', String(ours.stdin.offset), '--from', '-'], { input: ours.stdin.data });
          if (type === 'dynamic') {
            assert.ok(UNALLOCATED_STATES.includes(batBlockState(image, NEVER_ALLOCATED, blockSize)), `block ${NEVER_ALLOCATED} is unallocated before qemu-io writes`);
          }
          const theirs = qemuWrites(blockSize);
          runOk('qemu-io', ['-f', 'vhdx', ...qemuIoWriteArgs(theirs), image]);
          writes = [...ours.pattern.map((w) => fillWrite(w.offset, w.length, w.pattern)), ours.stdin, ...theirs.map((w) => fillWrite(w.offset, w.length, w.pattern))];
          writeModelRaw(model, SIZE, writes);
        });
        after(() => {
          for (const f of files) rmSync(f, { force: true });
        });

        it('qemu-io allocated the block we never allocated (dynamic) and qemu-img check stays clean', () => {
          if (type === 'dynamic') assert.equal(batBlockState(image, NEVER_ALLOCATED, blockSize), FULLY_PRESENT);
          const problem = qemuCheckProblem(qemuImgCheck(image));
          assert.equal(problem, null, problem ?? '');
        });

        it('vhdx convert equals qemu-img convert -O raw, and both equal the model', () => {
          const ours = `${base()}.ours.raw`;
          const reference = `${base()}.qemu.raw`;
          files.push(ours, reference);
          runOk('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', image, reference]);
          runOk(VHDX_BIN, ['convert', image, ours]);
          assert.equal(compareFiles(reference, model), null, 'qemu-img convert vs the model');
          assert.equal(compareFiles(ours, reference), null, 'vhdx convert vs qemu-img convert');
        });

        it('libvhdi reads the model\'s bytes', () => {
          const view = libvhdiRead(image, model);
          assert.equal(view.firstDifference, null, `libvhdi vs model: ${JSON.stringify(view.firstDifference)}`);
          assert.equal(view.sha256, sha256OfFile(model));
        });

        it('our library writes again after QEMU (into a QEMU-allocated block and a new one); peers agree', async () => {
          const again = `${base()}.again.vhdx`;
          const againModel = `${base()}.again.model.raw`;
          files.push(again, againModel);
          runOk('cp', ['--sparse=always', image, again]);
          const more: Write[] = [
            { offset: NEVER_ALLOCATED * blockSize + 1000, data: patternBytes(2000, 21) }, // inside QEMU's block
            { offset: 40 * MiB + 11, data: patternBytes(3000, 22) }, // 1 MiB blocks: block 40, which nobody wrote yet (32 MiB blocks: block 1)
            { offset: SIZE - 700, data: patternBytes(700, 23) }, // QEMU's last-block write, to the end of the disk
          ];
          const img = await openImage(again, { readOnly: false });
          try {
            for (const w of more) await img.write(w.offset, w.data);
          } finally {
            await img.close();
          }
          writeModelRaw(againModel, SIZE, [...writes, ...more]);
          const problem = qemuCheckProblem(qemuImgCheck(again));
          assert.equal(problem, null, problem ?? '');
          const r = qemuCompare(again, againModel);
          assert.equal(r.code, 0, `qemu-img compare: ${r.output.trim()}`);
          const view = libvhdiRead(again, againModel);
          assert.equal(view.firstDifference, null, `libvhdi vs model: ${JSON.stringify(view.firstDifference)}`);
        });
      });
    }
  }
});
