/**
 * `vhdx compare` against `qemu-img compare`: on the same pairs of images (VHDX made by our writer, raw
 * files; equal, different at an unaligned byte, different sizes with a zero or a non-zero tail, strict
 * mode on a size mismatch) both must give the same exit status, and where the disks differ QEMU's
 * offset (the start of the first differing 512-byte sector) must hold our exact byte.
 */
import assert from 'node:assert/strict';
import { closeSync, ftruncateSync, openSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VHDX_BIN, requireProgram, run, tempDir, tiledBytes } from '../helpers.js';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { create } from '../../src/ops/create.js';
import { openImage } from '../../src/node/paths.js';

const MiB = 1024 * 1024;

interface Write {
  offset: number;
  data: Uint8Array;
}

/** 9 MiB + 7 sectors: a multiple of 512, not of 1 MiB. */
const SIZE = 9 * MiB + 7 * 512;
const RANDOM_AT = 4 * MiB + 17;
const RANDOM = tiledBytes(MiB + 1000, 3);
const WRITES: Write[] = [
  { offset: 1000, data: new Uint8Array(3001).fill(0x11) },
  { offset: RANDOM_AT, data: RANDOM },
  { offset: SIZE - 1234, data: new Uint8Array(1234).fill(0x66) },
];
const IN_DATA = RANDOM_AT + 123457;
const IN_HOLE = 7 * MiB + 5;
const RAW_TAIL = SIZE + 777777;
const VHDX_TAIL = SIZE + 10 * MiB + 3;

function withByte(writes: readonly Write[], offset: number, value: number): Write[] {
  return [...writes, { offset, data: new Uint8Array([value]) }];
}

interface ImageSpec {
  format: 'vhdx' | 'raw';
  size: number;
  writes: Write[];
  blockSize?: number;
  type?: 'dynamic' | 'fixed';
}

const IMAGES: Record<string, ImageSpec> = {
  'a.vhdx': { format: 'vhdx', size: SIZE, writes: WRITES, blockSize: MiB },
  'b.vhdx': { format: 'vhdx', size: SIZE, writes: WRITES, blockSize: 32 * MiB },
  'c.vhdx': { format: 'vhdx', size: SIZE, writes: WRITES, blockSize: 8 * MiB, type: 'fixed' },
  'a.raw': { format: 'raw', size: SIZE, writes: WRITES },
  'empty.vhdx': { format: 'vhdx', size: SIZE, writes: [], blockSize: MiB },
  'empty.raw': { format: 'raw', size: SIZE, writes: [] },
  'data.vhdx': { format: 'vhdx', size: SIZE, writes: withByte(WRITES, IN_DATA, RANDOM[IN_DATA - RANDOM_AT]! ^ 0x5a), blockSize: 2 * MiB },
  'hole.vhdx': { format: 'vhdx', size: SIZE, writes: withByte(WRITES, IN_HOLE, 1), blockSize: MiB },
  'hole.raw': { format: 'raw', size: SIZE, writes: withByte(WRITES, IN_HOLE, 1) },
  'big.raw': { format: 'raw', size: SIZE + 3 * MiB + 512, writes: WRITES },
  'big.vhdx': { format: 'vhdx', size: SIZE + 16 * MiB, writes: WRITES },
  'tail.raw': { format: 'raw', size: SIZE + 2 * MiB, writes: withByte(WRITES, RAW_TAIL, 0x5a) },
  'tail.vhdx': { format: 'vhdx', size: SIZE + 16 * MiB, writes: withByte(WRITES, VHDX_TAIL, 0xff), blockSize: MiB },
};

interface Pair {
  a: string;
  b: string;
  strict?: boolean;
  /** Our expected answer: null when the disks are equal, else the first differing byte. */
  differsAt: number | null;
}

const PAIRS: Pair[] = [
  { a: 'a.vhdx', b: 'a.raw', differsAt: null },
  { a: 'a.raw', b: 'a.vhdx', differsAt: null },
  { a: 'a.vhdx', b: 'b.vhdx', differsAt: null },
  { a: 'b.vhdx', b: 'c.vhdx', differsAt: null },
  { a: 'c.vhdx', b: 'a.raw', differsAt: null },
  { a: 'empty.vhdx', b: 'empty.raw', differsAt: null },
  { a: 'a.vhdx', b: 'data.vhdx', differsAt: IN_DATA },
  { a: 'data.vhdx', b: 'a.raw', differsAt: IN_DATA },
  { a: 'a.vhdx', b: 'hole.vhdx', differsAt: IN_HOLE },
  { a: 'hole.vhdx', b: 'a.vhdx', differsAt: IN_HOLE },
  { a: 'b.vhdx', b: 'hole.raw', differsAt: IN_HOLE },
  { a: 'hole.raw', b: 'empty.vhdx', differsAt: 1000 },
  { a: 'a.vhdx', b: 'big.raw', differsAt: null },
  { a: 'big.vhdx', b: 'a.vhdx', differsAt: null },
  { a: 'big.vhdx', b: 'big.raw', differsAt: null },
  { a: 'a.vhdx', b: 'tail.raw', differsAt: RAW_TAIL },
  { a: 'tail.raw', b: 'c.vhdx', differsAt: RAW_TAIL },
  { a: 'tail.vhdx', b: 'a.raw', differsAt: VHDX_TAIL },
  { a: 'big.raw', b: 'tail.vhdx', differsAt: VHDX_TAIL },
  { a: 'a.vhdx', b: 'big.raw', strict: true, differsAt: SIZE },
  { a: 'big.vhdx', b: 'a.raw', strict: true, differsAt: SIZE },
];

async function makeImage(path: string, spec: ImageSpec): Promise<void> {
  if (spec.format === 'raw') {
    const fd = openSync(path, 'w');
    try {
      ftruncateSync(fd, spec.size);
      for (const w of spec.writes) writeSync(fd, w.data, 0, w.data.length, w.offset);
    } finally {
      closeSync(fd);
    }
    return;
  }
  const backend = await NodeFileBackend.open(path, { readOnly: false, create: true });
  const shape: { blockSize?: number; type?: 'dynamic' | 'fixed' } = {};
  if (spec.blockSize !== undefined) shape.blockSize = spec.blockSize;
  if (spec.type !== undefined) shape.type = spec.type;
  await create(backend, { virtualSize: spec.size, ...shape });
  await backend.close();
  const image = await openImage(path, { readOnly: false });
  try {
    for (const w of spec.writes) await image.write(w.offset, w.data);
  } finally {
    await image.close();
  }
}

describe('vhdx compare agrees with qemu-img compare', () => {
  let dir: { path: string; cleanup: () => void };
  before(async () => {
    requireProgram('qemu-img');
    dir = tempDir('vhdx-compare-interop-');
    for (const [name, spec] of Object.entries(IMAGES)) await makeImage(join(dir.path, name), spec);
  });
  after(() => dir?.cleanup());

  for (const pair of PAIRS) {
    const label = `${pair.a} vs ${pair.b}${pair.strict ? ' (strict)' : ''}: ${pair.differsAt === null ? 'equal' : `differ at ${pair.differsAt}`}`;
    it(label, () => {
      const a = join(dir.path, pair.a);
      const b = join(dir.path, pair.b);
      const strict = pair.strict ? ['-s'] : [];
      const qemu = run('qemu-img', ['compare', ...strict, '-f', IMAGES[pair.a]!.format, '-F', IMAGES[pair.b]!.format, a, b]);
      const qemuOutput = `${qemu.stdout.toString()}${qemu.stderr}`;
      const ours = run(VHDX_BIN, ['compare', ...(pair.strict ? ['--strict'] : []), '--json', a, b]);
      const expected = pair.differsAt === null ? 0 : 1;
      assert.equal(qemu.code, expected, `qemu-img compare: ${qemuOutput}`);
      assert.equal(ours.code, qemu.code, `vhdx compare exited ${ours.code}, qemu-img compare ${qemu.code}: ${ours.stderr}${qemuOutput}`);
      const result = JSON.parse(ours.stdout.toString()) as { equal: boolean; firstDifference: number | null; sizeMismatch: boolean };
      assert.equal(result.equal, pair.differsAt === null);
      assert.equal(result.firstDifference, pair.differsAt);
      assert.equal(result.sizeMismatch, IMAGES[pair.a]!.size !== IMAGES[pair.b]!.size);
      assert.equal(/size mismatch/i.test(qemuOutput), result.sizeMismatch, `qemu-img compare: ${qemuOutput}`);
      if (pair.differsAt !== null && !pair.strict) {
        const reported = /Content mismatch at offset (\d+)!/.exec(qemuOutput);
        assert.ok(reported, `qemu-img compare names no offset: ${qemuOutput}`);
        assert.equal(Number(reported[1]), Math.floor(pair.differsAt / 512) * 512, 'QEMU names the sector holding our byte');
      }
    });
  }
});
