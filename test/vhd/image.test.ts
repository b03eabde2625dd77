/** Opening and reading VHD images built independently (test/vhd/build-vhd.ts): fixed, dynamic, differencing. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBackend } from '../../src/io/memory.js';
import { VhdImage } from '../../src/vhd/image.js';
import { checkVhd } from '../../src/ops/check-vhd.js';
import { VhdxError } from '../../src/format/errors.js';
import { patternBytes } from '../helpers.js';
import { buildFixed, buildVhd, HEADER_OFFSET, reseal, TABLE_OFFSET, type BuiltBlock } from './build-vhd.js';

const KiB = 1024;
const MiB = 1024 * KiB;

function open(bytes: Uint8Array, name = 'test.vhd'): Promise<VhdImage> {
  return VhdImage.open(new MemoryBackend(bytes, { name, readOnly: true }));
}

async function rejectsWith(promise: Promise<unknown>, code: string, pattern?: RegExp): Promise<VhdxError> {
  let caught: unknown;
  await promise.catch((e: unknown) => (caught = e));
  assert.ok(caught instanceof VhdxError, `expected a VhdxError, got ${String(caught)}`);
  assert.equal(caught.code, code, caught.message);
  if (pattern) assert.match(caught.message, pattern);
  assert.ok(!caught.message.includes('\n'), 'one line');
  return caught;
}

/** A 5 MiB + 3 sectors dynamic disk with 1 MiB blocks: blocks 0, 2 and the short last one (5) hold data. */
function dynamicSpec(): { size: number; blockSize: number; blocks: Map<number, BuiltBlock>; expected: Uint8Array } {
  const size = 5 * MiB + 3 * 512;
  const blockSize = MiB;
  const expected = new Uint8Array(size);
  const blocks = new Map<number, BuiltBlock>();
  for (const b of [0, 2, 5]) {
    const data = patternBytes(blockSize, b + 1);
    blocks.set(b, { data });
    expected.set(data.subarray(0, Math.min(blockSize, size - b * blockSize)), b * blockSize);
  }
  return { size, blockSize, blocks, expected };
}

describe('VhdImage', () => {
  test('a fixed disk reads its payload; one data extent', async () => {
    const data = patternBytes(64 * KiB, 7);
    const image = await open(buildFixed(data));
    assert.equal(image.type, 'fixed');
    assert.equal(image.virtualSize, data.length);
    assert.deepEqual(await image.read(0, data.length), data);
    assert.deepEqual(await image.read(1000, 3000), data.subarray(1000, 4000));
    assert.deepEqual(await image.extents(), [{ offset: 0, length: data.length, kind: 'data', fileOffset: 0 }]);
    assert.equal(image.info().blockSize, null);
    await image.close();
  });

  test('a dynamic disk reads blocks, zeros where unallocated, and walks without reading data', async () => {
    const { size, blockSize, blocks, expected } = dynamicSpec();
    const image = await open(buildVhd({ type: 'dynamic', size, blockSize, blocks }));
    assert.equal(image.type, 'dynamic');
    assert.equal(image.virtualSize, size);
    assert.equal(image.blockSize, blockSize);
    assert.deepEqual(await image.read(0, size), expected);
    for (const [offset, length] of [[MiB - 100, 200], [2 * MiB + 1, 5], [5 * MiB, 3 * 512], [3 * MiB, MiB]] as const) {
      assert.deepEqual(await image.read(offset, length), expected.subarray(offset, offset + length), `[${offset}, +${length})`);
    }
    assert.deepEqual((await image.extents()).map((e) => [e.offset, e.length, e.kind]), [
      [0, MiB, 'data'],
      [MiB, MiB, 'unallocated'],
      [2 * MiB, MiB, 'data'],
      [3 * MiB, 2 * MiB, 'unallocated'],
      [5 * MiB, 3 * 512, 'data'],
    ]);
    assert.equal(await image.knownZero(MiB, MiB), true);
    assert.equal(await image.knownZero(3 * MiB, 2 * MiB), true);
    assert.equal(await image.knownZero(MiB, 2 * MiB), false);
    assert.equal(image.info().allocatedBytes, 3 * MiB);
    await image.close();
  });

  test('reads past the end are OUT_OF_RANGE', async () => {
    const { size, blockSize, blocks } = dynamicSpec();
    const image = await open(buildVhd({ type: 'dynamic', size, blockSize, blocks }));
    await rejectsWith(image.read(size - 1, 2), 'OUT_OF_RANGE');
    await rejectsWith(image.read(-1, 1), 'OUT_OF_RANGE');
  });

  test('a damaged end footer falls back to the copy at offset 0 with a warning; a damaged copy is a warning', async () => {
    const { size, blockSize, blocks, expected } = dynamicSpec();
    const bytes = buildVhd({ type: 'dynamic', size, blockSize, blocks });
    const endDamaged = bytes.slice();
    endDamaged[endDamaged.length - 512 + 100]! ^= 0xff;
    const a = await open(endDamaged);
    assert.match(a.warnings.join('\n'), /footer at the end of the file is damaged/);
    assert.deepEqual(await a.read(0, size), expected);
    const copyDamaged = bytes.slice();
    copyDamaged[100]! ^= 0xff;
    const b = await open(copyDamaged);
    assert.match(b.warnings.join('\n'), /footer copy at offset 0 differs/);
    const both = endDamaged.slice();
    both[100]! ^= 0xff;
    await rejectsWith(open(both, 'both.vhd'), 'BAD_VHD', /checksum/);
  });

  test('a differencing disk reads present sectors from itself and the rest from its parent', async () => {
    const size = 4 * MiB;
    const blockSize = MiB;
    const parentData = patternBytes(size, 99);
    const parentId = Uint8Array.from({ length: 16 }, (_, i) => i + 1);
    const parent = await open(buildFixed(parentData, parentId), 'parent.vhd');
    const childBlock = patternBytes(blockSize, 5);
    // Block 1: sectors 0-9 and 100 present; block 3: all present.
    const blocks = new Map<number, BuiltBlock>([
      [1, { data: childBlock, present: (s) => s < 10 || s === 100 }],
      [3, { data: childBlock }],
    ]);
    const childBytes = buildVhd({ type: 'differencing', size, blockSize, blocks, parentUniqueId: parentId, parentName: 'parent.vhd', locators: [{ code: 'W2ku', path: 'C:\\disks\\parent.vhd' }, { code: 'W2ru', path: '.\\parent.vhd' }] });
    const child = await open(childBytes, 'child.vhd');
    assert.equal(child.type, 'differencing');
    assert.deepEqual(await child.parentPaths(), [
      { platformCode: 'W2ru', path: '.\\parent.vhd' },
      { platformCode: 'W2ku', path: 'C:\\disks\\parent.vhd' },
    ]);
    await rejectsWith(child.read(0, 10), 'PARENT_REQUIRED');
    child.attachParent(parent, { owned: true });
    const expected = parentData.slice();
    expected.set(childBlock.subarray(0, 10 * 512), MiB);
    expected.set(childBlock.subarray(100 * 512, 101 * 512), MiB + 100 * 512);
    expected.set(childBlock, 3 * MiB);
    assert.deepEqual(await child.read(0, size), expected);
    assert.deepEqual(await child.read(MiB + 9 * 512 + 100, 1000), expected.subarray(MiB + 9 * 512 + 100, MiB + 9 * 512 + 1100));
    assert.deepEqual((await child.extents()).map((e) => [e.offset, e.length, e.kind]), [
      [0, MiB, 'parent'],
      [MiB, 10 * 512, 'data'],
      [MiB + 10 * 512, 90 * 512, 'parent'],
      [MiB + 100 * 512, 512, 'data'],
      [MiB + 101 * 512, 2 * MiB - 101 * 512, 'parent'], // the rest of block 1 and unallocated block 2, merged
      [3 * MiB, MiB, 'data'],
    ]);
    assert.equal(await child.knownZero(0, MiB), false, 'the parent holds data there');
    await child.close();
  });

  test('a parent with another Unique Id or size is PARENT_MISMATCH', async () => {
    const child = await open(buildVhd({ type: 'differencing', size: 2 * MiB, blockSize: MiB, blocks: new Map(), parentUniqueId: new Uint8Array(16).fill(1) }));
    const other = await open(buildFixed(new Uint8Array(2 * MiB), new Uint8Array(16).fill(2)));
    assert.throws(() => child.attachParent(other), (e: unknown) => e instanceof VhdxError && e.code === 'PARENT_MISMATCH');
    const small = await open(buildFixed(new Uint8Array(MiB), new Uint8Array(16).fill(1)));
    assert.throws(() => child.attachParent(small), (e: unknown) => e instanceof VhdxError && e.code === 'PARENT_MISMATCH');
    child.attachParent(other, { ignoreParentLinkage: true });
  });

  test('hostile structures are BAD_VHD naming the file, before anything is allocated from them', async () => {
    const { size, blockSize, blocks } = dynamicSpec();
    const good = buildVhd({ type: 'dynamic', size, blockSize, blocks });
    const cases: [string, (b: Uint8Array, dv: DataView) => void, RegExp][] = [
      ['BAT entry past the end', (b, dv) => dv.setUint32(TABLE_OFFSET, 0x7fff_0000), /BAT entry 0 .* outside/],
      ['BAT entry at the footer copy', (b, dv) => dv.setUint32(TABLE_OFFSET, 0), /BAT entry 0 .* outside/],
      ['BAT entry over the BAT', (b, dv) => dv.setUint32(TABLE_OFFSET, TABLE_OFFSET / 512), /overlaps/],
      ['absurd max table entries', (b, dv) => dv.setUint32(HEADER_OFFSET + 28, 0xffff_fff0), /BAT \(4294967280 entries/],
      ['too few table entries', (b, dv) => dv.setUint32(HEADER_OFFSET + 28, 2), /needs 6 blocks/],
      ['table past the end', (b, dv) => dv.setBigUint64(HEADER_OFFSET + 16, 1n << 40n), /outside/],
      ['block size not a power of two', (b, dv) => dv.setUint32(HEADER_OFFSET + 32, 3 * MiB), /power of two/],
      ['block size 1 GiB', (b, dv) => dv.setUint32(HEADER_OFFSET + 32, 1 << 30), /power of two/],
    ];
    for (const [what, mutate, pattern] of cases) {
      const bytes = good.slice();
      mutate(bytes, new DataView(bytes.buffer));
      reseal(bytes, HEADER_OFFSET, 36, 1024);
      const error = await rejectsWith(open(bytes, 'hostile.vhd'), 'BAD_VHD', pattern);
      assert.equal(error.file, 'hostile.vhd', what);
    }
    // The footer's data offset outside the file, on both copies.
    const offset = good.slice();
    for (const at of [0, offset.length - 512]) {
      new DataView(offset.buffer).setBigUint64(at + 16, 1n << 40n);
      reseal(offset, at, 64, 512);
    }
    await rejectsWith(open(offset), 'BAD_VHD', /dynamic header offset/);
    await rejectsWith(open(new Uint8Array(100)), 'BAD_VHD', /too small/);
    await rejectsWith(open(new Uint8Array(4096)), 'BAD_VHD', /cookie/);
    // A fixed footer claiming more bytes than the file holds.
    const fixed = buildFixed(new Uint8Array(4096));
    new DataView(fixed.buffer).setBigUint64(4096 + 48, 1n << 30n);
    reseal(fixed, 4096, 64, 512);
    await rejectsWith(open(fixed), 'BAD_VHD', /holds 4096 bytes/);
  });

  test('random damage to the header, BAT and footers: typed errors or correct reads, never a crash', async () => {
    const { size, blockSize, blocks, expected } = dynamicSpec();
    const good = buildVhd({ type: 'dynamic', size, blockSize, blocks });
    let seed = 12345;
    const random = (n: number): number => {
      seed = (seed * 1103515245 + 12345) >>> 0;
      return seed % n;
    };
    const regions = [[0, 512], [HEADER_OFFSET, HEADER_OFFSET + 1024], [TABLE_OFFSET, TABLE_OFFSET + 512], [good.length - 512, good.length]] as const;
    let opened = 0;
    for (let round = 0; round < 200; round++) {
      const bytes = good.slice();
      const [from, to] = regions[round % regions.length]!;
      for (let k = 0; k <= random(4); k++) bytes[from + random(to - from)] = random(256);
      // Half the rounds keep the checksums valid, so the damage reaches the field checks.
      if (round % 2 === 0) {
        reseal(bytes, 0, 64, 512);
        reseal(bytes, bytes.length - 512, 64, 512);
        reseal(bytes, HEADER_OFFSET, 36, 1024);
      }
      // A check of the same bytes always ends in a report: corrupt exactly when the open refuses them.
      const report = await checkVhd(new MemoryBackend(bytes.slice(), { readOnly: true }));
      const refused = await open(bytes, 'fuzz.vhd').then(
        (image) => (void image.close(), false),
        () => true,
      );
      if (refused) assert.equal(report.verdict, 'corrupt', `round ${round}: check of what no open takes`);
      try {
        const image = await open(bytes, 'fuzz.vhd');
        opened++;
        const length = Math.min(image.virtualSize, size);
        const got = await image.read(0, length);
        // What still opens either reads as built or differs only where the BAT was damaged.
        if (from !== TABLE_OFFSET && image.virtualSize === size && image.blockSize === blockSize) assert.deepEqual(got, expected.subarray(0, length));
      } catch (error) {
        assert.ok(error instanceof VhdxError, `round ${round}: ${String(error)}`);
        assert.ok(!error.message.includes('\n'));
      }
    }
    assert.ok(opened > 0);
  });
});
