/** VHD BAT and sector bitmap helpers: sizes from the specification, and bit order (most significant bit first). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeVhdBat, encodeVhdBat, vhdBatBytes, vhdBitmapBytes, vhdMarkSectors, vhdSectorPresent, vhdSectorRuns, VHD_UNALLOCATED } from '../../src/vhd/bat.js';
import { assertVhdxError } from '../helpers.js';

describe('VHD BAT and bitmaps', () => {
  test('sizes: the BAT and each bitmap are padded to whole sectors', () => {
    const bat: [number, number][] = [[1, 512], [128, 512], [129, 1024], [2048, 8192]];
    for (const [entries, bytes] of bat) assert.equal(vhdBatBytes(entries), bytes, `${entries} entries`);
    // 2 MiB: 4096 sectors, 512 bytes of bits; 512 bytes: one bit, still a whole sector; 8 MiB: 2 KiB.
    const bitmaps: [number, number][] = [[512, 512], [2 << 20, 512], [4 << 20, 1024], [8 << 20, 2048], [256 << 20, 65536]];
    for (const [blockSize, bytes] of bitmaps) assert.equal(vhdBitmapBytes(blockSize), bytes, `${blockSize}-byte blocks`);
  });

  test('entries are big-endian; the padding reads as unallocated', () => {
    const bytes = encodeVhdBat([3, VHD_UNALLOCATED, 0x01020304]);
    assert.equal(bytes.length, 512);
    assert.deepEqual([...bytes.subarray(0, 12)], [0, 0, 0, 3, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4]);
    assert.ok(bytes.subarray(12).every((b) => b === 0xff));
    assert.deepEqual([...decodeVhdBat(bytes, 3)], [3, VHD_UNALLOCATED, 0x01020304]);
    assertVhdxError(() => decodeVhdBat(bytes, 129), 'BAD_VHD');
  });

  test('bit 7 of byte 0 is sector 0', () => {
    const bitmap = new Uint8Array(512);
    vhdMarkSectors(bitmap, 0, 1);
    vhdMarkSectors(bitmap, 9, 2);
    assert.deepEqual([...bitmap.subarray(0, 2)], [0x80, 0x60]);
    assert.equal(vhdSectorPresent(bitmap, 0), true);
    assert.equal(vhdSectorPresent(bitmap, 1), false);
    assert.equal(vhdSectorPresent(bitmap, 10), true);
  });

  test('sector runs agree with a bit-by-bit reading', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 64, maxLength: 64 }), fc.integer({ min: 0, max: 511 }), fc.integer({ min: 1, max: 512 }), (bitmap, first, wanted) => {
        const count = Math.min(wanted, 512 - first);
        const expected: boolean[] = [];
        for (let s = first; s < first + count; s++) expected.push(((bitmap[s >> 3]! >> (7 - (s & 7))) & 1) === 1);
        const runs = vhdSectorRuns(bitmap, first, count);
        const flattened = runs.flatMap(([present, n]) => Array<boolean>(n).fill(present));
        assert.deepEqual(flattened, expected);
        for (let i = 1; i < runs.length; i++) assert.notEqual(runs[i]![0], runs[i - 1]![0], 'adjacent runs differ');
      }),
    );
  });
});
