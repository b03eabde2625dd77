/**
 * Differencing disks (AVHDX) made by this project, read by libvhdi. A chain of three images is built
 * with our CLI and library (a dynamic base, a middle child made by `vhdx create --parent`, a top child
 * made by `createChild`), each child with a block size that differs from its parent's, and written
 * with unaligned writes, writes across block boundaries, into blocks the parent has and has not, and
 * zeros (writeZeroes and discard) over whole and partial blocks, which must hide the parent's data.
 *
 * The expected disk is an independent model: a byte array that the same operations are applied to,
 * in order (write copies, writeZeroes and discard zero). Both the middle (a chain of two) and the top
 * (a chain of three) must read exactly as the model after their layer, through libvhdi (each file
 * given its parent with set_parent), through our reader (openImage + read) and through
 * `vhdx convert CHILD out.raw`. `vhdx check` must find no corruption on any layer, `qemu-img check`
 * none on the base.
 *
 * Two known points:
 * - libvhdi (20210425, Debian 12) reads a block in state ZERO of a differencing disk from the parent
 *   (it treats every state below FULLY_PRESENT as "not here"), while the format reference (§7.2)
 *   says ZERO hides the parent. Our writer therefore never leaves ZERO blocks in a child (zeroing
 *   writes zero sectors), which the test checks in the BAT; libvhdi must then equal the model exactly.
 * - A block released by whole-block zeros stays in the file until reused, which `vhdx check` counts as
 *   leaked space (exit 3). Leaks are accepted only up to the bytes such operations released.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { createChild, openImage } from '../../src/node/paths.js';
import { ROOT, SYSTEM_PYTHON, VHDX_BIN, requireProgram, run, runOk, tempDir, tiledBytes } from '../helpers.js';
import { LIBVHDI_DISK_TYPES, MiB, batBlockState, compareFiles, describeDifference, qemuCheckProblem, qemuImgCheck, requirePyvhdi, sameBytes } from './util.js';

/** 48 MiB + 3 sectors of 4 KiB: with 32 MiB blocks the second block is short, with 1 MiB blocks the 49th. */
const SIZE = 48 * MiB + 3 * 4096;

type Op = { kind: 'write'; offset: number; data: Uint8Array } | { kind: 'writeZeroes' | 'discard'; offset: number; length: number };

const write = (offset: number, length: number, seed: number): Op => ({ kind: 'write', offset, data: tiledBytes(length, seed) });

/** The base: data in a few places; with 1 MiB blocks most of its blocks are not present. */
function baseOps(): Op[] {
  return [
    write(0, 3.5 * MiB, 101),
    write(20 * MiB + 123, MiB, 102), // unaligned, crosses a 1 MiB boundary
    write(31 * MiB, MiB, 103), // up to the 32 MiB boundary
    write(44 * MiB, 500 * 1024, 104), // half a 1 MiB block, in the short second 32 MiB block
  ];
}

/**
 * What a child writes (`layer` 1 the middle, 2 the top; `blockSize` the child's own). Whole-block and
 * partial zeros alternate between writeZeroes and discard from layer to layer.
 */
function childOps(layer: number, blockSize: number): Op[] {
  const s = layer * 37;
  const whole = layer % 2 === 1 ? 'writeZeroes' : 'discard';
  const partial = layer % 2 === 1 ? 'discard' : 'writeZeroes';
  // A whole block of the child holding the parent's data: [2, 3) MiB with 1 MiB blocks, the short last block with 32 MiB ones.
  const wholeBlock = blockSize === MiB ? { offset: 2 * MiB, length: MiB } : { offset: 32 * MiB, length: SIZE - 32 * MiB };
  const ops: Op[] = [
    write(1000 + s, 3000, 200 + layer), // unaligned: the first and last sectors only partly covered, over parent data
    write(blockSize - 700 - s, 1500, 210 + layer), // across the child's first block boundary
    write(12 * MiB + 777 + s, 5000, 220 + layer), // where no layer below has written (a block 1 MiB parents do not have)
    write(40 * MiB + 5 + s, 70_000, 230 + layer), // likewise, across a 64 KiB boundary, in the short 32 MiB block
    { kind: whole, offset: wholeBlock.offset, length: wholeBlock.length }, // hides the parent's data of a whole block
    { kind: partial, offset: 20 * MiB + 1000 + s, length: 200_000 + 13 }, // part of a block, unaligned at both ends, over parent data
    { kind: partial, offset: 3 * MiB - 4096, length: 8192 }, // sector-aligned, across a 1 MiB boundary, half over parent data
    write(32 * MiB - 333 - s, 1000, 240 + layer), // across the 32 MiB boundary, into the zeroed block with 32 MiB blocks
    write(2 * MiB + 4096 * layer + 11, 513, 250 + layer), // partial sectors inside the block just zeroed with 1 MiB blocks
    write(SIZE - 4321 + s, 4321 - s, 260 + layer), // the end of the disk, in its short last block
    write(1200 + s, 100, 270 + layer), // overwrites part of the first write
  ];
  if (blockSize === MiB) {
    // The other kind of whole-block zeros too, over a block with parent data ([44, 44.5) MiB in the base).
    ops.push({ kind: whole === 'discard' ? 'writeZeroes' : 'discard', offset: 44 * MiB, length: MiB });
  }
  return ops;
}

/** The model: `ops` applied to `disk` in order. */
function applyModel(disk: Uint8Array, ops: readonly Op[]): void {
  for (const op of ops) {
    if (op.kind === 'write') disk.set(op.data, op.offset);
    else disk.fill(0, op.offset, op.offset + op.length);
  }
}

async function applyImage(path: string, ops: readonly Op[]): Promise<void> {
  const image = await openImage(path, { readOnly: false });
  try {
    for (const op of ops) {
      if (op.kind === 'write') await image.write(op.offset, op.data);
      else if (op.kind === 'writeZeroes') await image.writeZeroes(op.offset, op.length);
      else await image.discard(op.offset, op.length);
    }
  } finally {
    await image.close();
  }
}

interface ChainView {
  mediaSize: number;
  bytesPerSector: number;
  diskType: number;
  sha256: string;
  firstDifference: { offset: number; libvhdi: number | null; expected: number | string | null } | null;
  layers: { diskType: number; identifier: string; parentIdentifier: string | null }[];
}

const VHDI_CHAIN = join(ROOT, 'test', 'interop', 'vhdi-chain.py');

/** libvhdi's reading of the chain `files` (top first), compared with the raw file `model` and written to `dump`. */
function libvhdiChain(files: string[], model: string, dump: string): ChainView {
  const args = [VHDI_CHAIN, '--compare', model, '--dump', dump, ...files];
  const r = run(SYSTEM_PYTHON, args);
  if (r.code !== 0) throw new Error(`libvhdi could not read the chain ${files.join(' <- ')} (exited ${r.code ?? r.signal}): ${r.stderr.trim()}`);
  return JSON.parse(r.stdout.toString()) as ChainView;
}

/** Bytes of blocks that whole-block zeros may have released in a layer: an upper bound for leaks. */
function releasable(ops: readonly Op[], blockSize: number): number {
  return ops.filter((op) => op.kind !== 'write' && op.offset % blockSize === 0 && (op.length >= blockSize || op.offset + op.length === SIZE)).length * blockSize;
}

/** `vhdx check`: clean, or (exit 3) leaked space only, no more than `maxLeak` bytes. Never corruption or warnings. */
function vhdxCheck(path: string, maxLeak: number): void {
  const r = run(VHDX_BIN, ['check', path, '--json']);
  const report = JSON.parse(r.stdout.toString()) as { exitCode: number; corruptions: number; warnings: number; leakedBytes: number; findings: { code: string; severity: string }[] };
  const text = `vhdx check ${path} exited ${r.code}: ${r.stdout.toString()}${r.stderr}`;
  assert.equal(report.corruptions, 0, text);
  assert.equal(report.warnings, 0, text);
  if (r.code === 0) {
    assert.equal(report.findings.length, 0, text);
    return;
  }
  assert.equal(r.code, 3, text);
  assert.ok(report.findings.every((f) => f.severity === 'leak' && /^(LEAKED|TRAILING)_SPACE$/.test(f.code)), text);
  assert.ok(report.leakedBytes > 0 && report.leakedBytes <= maxLeak, `${text} (at most ${maxLeak} bytes could have been released)`);
}

/** Virtual byte ranges of `file` whose blocks are ZERO (state 2) in its BAT, read from the file. */
function zeroBlocks(file: string, blockSize: number, logicalSectorSize: number): [number, number][] {
  const out: [number, number][] = [];
  for (let block = 0; block * blockSize < SIZE; block++) {
    if (batBlockState(file, block, blockSize, logicalSectorSize) === 2) out.push([block * blockSize, Math.min(SIZE, (block + 1) * blockSize)]);
  }
  return out;
}

/** Runs of offsets where `a` and `b` differ (differences less than a 4 KiB sector apart are one run). */
function differingRuns(a: Uint8Array, b: Uint8Array): [number, number][] {
  const runs: [number, number][] = [];
  const CH = 64 * 1024;
  for (let base = 0; base < a.length; base += CH) {
    const end = Math.min(a.length, base + CH);
    if (Buffer.from(a.buffer, a.byteOffset + base, end - base).equals(Buffer.from(b.buffer, b.byteOffset + base, end - base))) continue;
    for (let i = base; i < end; i++) {
      if (a[i] === b[i]) continue;
      const last = runs[runs.length - 1];
      if (last && i - last[1] < 4096) last[1] = i + 1;
      else runs.push([i, i + 1]);
    }
  }
  return runs;
}

interface Case {
  logicalSectorSize: 512 | 4096;
  /** Block sizes of the base, the middle and the top. */
  blocks: [number, number, number];
}

const cases: Case[] = [];
for (const logicalSectorSize of [512, 4096] as const) {
  cases.push({ logicalSectorSize, blocks: [MiB, 32 * MiB, MiB] });
  cases.push({ logicalSectorSize, blocks: [32 * MiB, MiB, 32 * MiB] });
}

describe('differencing chains made by us, read by libvhdi, by our reader and by vhdx convert', () => {
  let tmp: { path: string; cleanup: () => void } | undefined;
  before(() => {
    requirePyvhdi();
    requireProgram('qemu-img');
    tmp = tempDir('vhdx-interop-diff-');
  });
  after(() => tmp?.cleanup());

  for (const c of cases) {
    const name = `lss${c.logicalSectorSize}-${c.blocks.map((b) => b / MiB).join('-')}M`;
    it(`${c.logicalSectorSize}-byte sectors, blocks ${c.blocks.map((b) => `${b / MiB} MiB`).join(' <- ')}: depth 2 and 3`, async (t) => {
      const at = (file: string): string => join(tmp!.path, `${name}-${file}`);
      const base = at('base.vhdx');
      const mid = at('mid.avhdx');
      const top = at('top.avhdx');
      const model = at('model.raw');
      const out = at('out.raw');
      try {
        const disk = new Uint8Array(SIZE);

        // Base: created by the CLI, written by the library.
        runOk(VHDX_BIN, ['create', base, String(SIZE), '--block-size', String(c.blocks[0]), '--logical-sector-size', String(c.logicalSectorSize)]);
        const ops0 = baseOps();
        await applyImage(base, ops0);
        applyModel(disk, ops0);

        // Middle: `vhdx create --parent`, with its own block size; the parent is never written again.
        runOk(VHDX_BIN, ['create', mid, '--parent', base, '--block-size', String(c.blocks[1])]);
        const ops1 = childOps(1, c.blocks[1]);
        await applyImage(mid, ops1);
        applyModel(disk, ops1);
        const afterMid = disk.slice();

        // Top: the library's createChild.
        await createChild(top, mid, { blockSize: c.blocks[2] });
        const ops2 = childOps(2, c.blocks[2]);
        await applyImage(top, ops2);
        applyModel(disk, ops2);

        // The model must really differ between the layers, or the test would prove little.
        assert.notEqual(createHash('sha256').update(afterMid).digest('hex'), createHash('sha256').update(disk).digest('hex'));

        const afterBase = new Uint8Array(SIZE);
        applyModel(afterBase, ops0);
        // Per layer (top first): its file, block size and the model after it.
        const layers = [
          { file: top, blockSize: c.blocks[2], model: disk },
          { file: mid, blockSize: c.blocks[1], model: afterMid },
          { file: base, blockSize: c.blocks[0], model: afterBase },
        ];
        const chains: { files: string[]; expected: Uint8Array }[] = [
          { files: [mid, base], expected: afterMid },
          { files: [top, mid, base], expected: disk },
        ];
        for (const { files, expected } of chains) {
          const what = `chain of ${files.length}`;
          writeFileSync(model, expected);

          // libvhdi, every parent given explicitly.
          const view = libvhdiChain(files, model, out);
          assert.equal(view.mediaSize, SIZE, `${what}: libvhdi media size`);
          assert.equal(view.bytesPerSector, c.logicalSectorSize, `${what}: libvhdi bytes per sector`);
          assert.equal(LIBVHDI_DISK_TYPES[view.diskType], 'differencing', `${what}: libvhdi disk type`);
          assert.equal(LIBVHDI_DISK_TYPES[view.layers.at(-1)!.diskType], 'dynamic', `${what}: libvhdi sees a dynamic base`);
          const seen = new Uint8Array(readFileSync(out));
          rmSync(out, { force: true });
          assert.equal(seen.length, SIZE, `${what}: libvhdi read the whole disk`);
          // libvhdi reads a differencing disk's ZERO blocks from the parent (the format says they hide
          // it), so the writer never makes ZERO blocks in a child: zeroing writes zero sectors instead.
          // Then libvhdi must equal the model byte for byte.
          const chainLayers = layers.slice(layers.length - files.length);
          for (const l of chainLayers.slice(0, -1)) {
            assert.deepEqual(zeroBlocks(l.file, l.blockSize, c.logicalSectorSize), [], `${what}: ${l.file} holds ZERO blocks`);
          }
          const deviations = differingRuns(seen, expected);
          if (deviations.length > 0) {
            const [start, end] = deviations[0]!;
            assert.fail(`${what}: libvhdi differs from the model in ${deviations.length} run(s), first ${describeDifference(seen.subarray(start, end), expected.subarray(start, end), start, 'libvhdi', 'model')}`);
          }
          assert.equal(view.firstDifference, null);
          // libvhdi's linkage: each child names its parent's DataWriteGuid, as we report it.
          for (let i = 0; i + 1 < files.length; i++) {
            assert.equal(view.layers[i]!.parentIdentifier, view.layers[i + 1]!.identifier, `${what}: ${files[i]} names its parent's DataWriteGuid`);
          }

          // Our reader: in 4 MiB chunks, then unaligned reads across block boundaries and the end.
          const image = await openImage(files[0]!);
          try {
            assert.equal(image.chain().length, files.length, `${what}: our chain depth`);
            assert.equal(image.type, 'differencing');
            const hash = createHash('sha256');
            for (let offset = 0; offset < SIZE; offset += 4 * MiB) {
              const got = await image.read(offset, Math.min(4 * MiB, SIZE - offset));
              const want = expected.subarray(offset, offset + got.length);
              if (!sameBytes(got, want)) assert.fail(`${what}: our reader: ${describeDifference(got, want, offset, 'ours', 'model')}`);
              hash.update(got);
            }
            if (deviations.length === 0) assert.equal(hash.digest('hex'), view.sha256, `${what}: our read hashes like libvhdi's`);
            for (const [offset, length] of [[MiB - 1001, 3002], [32 * MiB - 777, 2000], [SIZE - 5001, 5001], [1001, 3333], [20 * MiB + 999, 200_100]] as const) {
              const got = await image.read(offset, length);
              assert.ok(sameBytes(got, expected.subarray(offset, offset + length)), `${what}: read(${offset}, ${length})`);
            }
          } finally {
            await image.close();
          }

          // The CLI flattens the chain.
          runOk(VHDX_BIN, ['convert', files[0]!, out]);
          const difference = compareFiles(out, model);
          assert.equal(difference, null, `${what}: vhdx convert vs the model: ${difference}`);
          rmSync(out, { force: true });
        }

        vhdxCheck(base, 0);
        vhdxCheck(mid, releasable(ops1, c.blocks[1]));
        vhdxCheck(top, releasable(ops2, c.blocks[2]));
        const qemu = qemuImgCheck(base);
        if (c.logicalSectorSize === 512) {
          assert.equal(qemuCheckProblem(qemu), null, `qemu-img check ${base}`);
        } else if (qemu.code !== 0) {
          // QEMU 7 opens no VHDX with 4096-byte logical sectors; anything else it says is a finding.
          assert.match(qemu.output, /Operation not supported/, `qemu-img check ${base}: ${qemu.output}`);
        } else {
          assert.equal(qemuCheckProblem(qemu), null, `qemu-img check ${base}`);
        }
      } finally {
        for (const f of [base, mid, top, model, out]) rmSync(f, { force: true });
      }
    });
  }
});
