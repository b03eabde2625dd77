/** The VHD dynamic disk header codec, from the specification's field table. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeVhdDynamicHeader, encodeVhdDynamicHeader, VHD_DYNAMIC_HEADER_SIZE, type VhdDynamicHeader } from '../../src/vhd/dynamic-header.js';
import { assertVhdxError } from '../helpers.js';
import { buildVhd, HEADER_OFFSET, reseal, TABLE_OFFSET } from './build-vhd.js';

/** The header of a differencing disk built by the independent test builder. */
function builtHeader(): Uint8Array {
  const file = buildVhd({
    type: 'differencing',
    size: 8 << 20,
    blockSize: 2 << 20,
    blocks: new Map(),
    parentUniqueId: Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i),
    parentName: 'base disk.vhd',
    locators: [{ code: 'W2ru', path: '.\\base disk.vhd' }],
  });
  return file.slice(HEADER_OFFSET, HEADER_OFFSET + VHD_DYNAMIC_HEADER_SIZE);
}

describe('VHD dynamic header', () => {
  test('decodes every field the specification lays out', () => {
    const h = decodeVhdDynamicHeader(builtHeader(), 'child.vhd');
    assert.equal(h.tableOffset, TABLE_OFFSET);
    assert.equal(h.maxTableEntries, 4);
    assert.equal(h.blockSize, 2 << 20);
    assert.equal(h.version, 0x0001_0000);
    assert.deepEqual([...h.parentUniqueId], Array.from({ length: 16 }, (_, i) => 0xa0 + i));
    assert.equal(h.parentName, 'base disk.vhd');
    assert.equal(h.parentLocators.length, 8);
    assert.equal(h.parentLocators[0]!.platformCode, 'W2ru');
    assert.equal(h.parentLocators[0]!.dataLength, '.\\base disk.vhd'.length * 2);
    assert.equal(h.parentLocators[1]!.platformCode, '');
  });

  test('re-encodes a built header byte for byte', () => {
    const bytes = builtHeader();
    assert.deepEqual(encodeVhdDynamicHeader(decodeVhdDynamicHeader(bytes)), bytes);
  });

  test('round trip of any header', () => {
    const locator = fc.record({
      platformCode: fc.constantFrom('', 'W2ku', 'W2ru', 'Mac '),
      dataSpace: fc.integer({ min: 0, max: 0xffff_ffff }),
      dataLength: fc.integer({ min: 0, max: 0xffff_ffff }),
      dataOffset: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
    }).map((entry) => ({ ...entry })); // plain objects, as the decoder makes
    fc.assert(
      fc.property(
        fc.record({
          tableOffset: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
          maxTableEntries: fc.integer({ min: 0, max: 0xffff_ffff }),
          blockSize: fc.integer({ min: 9, max: 28 }).map((k) => 2 ** k),
          version: fc.integer({ min: 0x0001_0000, max: 0x0001_ffff }),
          parentUniqueId: fc.uint8Array({ minLength: 16, maxLength: 16 }),
          parentTimestamp: fc.integer({ min: 0, max: 0xffff_ffff }),
          parentName: fc.string({ maxLength: 256, unit: fc.integer({ min: 1, max: 0xffff }).map((c) => String.fromCharCode(c)) }),
          parentLocators: fc.array(locator, { minLength: 8, maxLength: 8 }),
        }),
        (generated) => {
          const header: VhdDynamicHeader = { ...generated }; // a plain object, as the decoder makes
          const bytes = encodeVhdDynamicHeader(header);
          assert.equal(bytes.length, VHD_DYNAMIC_HEADER_SIZE);
          assert.deepEqual(decodeVhdDynamicHeader(bytes), header);
        },
      ),
    );
  });

  test('block sizes: powers of two from 512 bytes to 256 MiB are accepted, nothing else', () => {
    const table: [number, boolean][] = [
      [256, false],
      [512, true],
      [4096, true],
      [2 << 20, true],
      [256 << 20, true],
      [512 << 20, false],
      [3 << 20, false],
      [0, false],
      [0xffff_ffff, false],
    ];
    for (const [blockSize, ok] of table) {
      const bytes = builtHeader();
      new DataView(bytes.buffer).setUint32(32, blockSize);
      reseal(bytes, 0, 36, VHD_DYNAMIC_HEADER_SIZE);
      if (ok) assert.equal(decodeVhdDynamicHeader(bytes).blockSize, blockSize);
      else assertVhdxError(() => decodeVhdDynamicHeader(bytes), 'BAD_VHD');
    }
  });

  test('a wrong cookie, checksum or length is BAD_VHD; version 2 is UNSUPPORTED', () => {
    const cookie = builtHeader();
    cookie[0] = 0;
    assertVhdxError(() => decodeVhdDynamicHeader(cookie), 'BAD_VHD');
    const sum = builtHeader();
    sum[700]! ^= 1;
    assertVhdxError(() => decodeVhdDynamicHeader(sum), 'BAD_VHD');
    assertVhdxError(() => decodeVhdDynamicHeader(builtHeader().subarray(0, 1023)), 'BAD_VHD');
    const version = builtHeader();
    new DataView(version.buffer).setUint32(24, 0x0002_0000);
    reseal(version, 0, 36, VHD_DYNAMIC_HEADER_SIZE);
    assertVhdxError(() => decodeVhdDynamicHeader(version), 'UNSUPPORTED');
    const offset = builtHeader();
    new DataView(offset.buffer).setBigUint64(16, 1n << 60n);
    reseal(offset, 0, 36, VHD_DYNAMIC_HEADER_SIZE);
    assertVhdxError(() => decodeVhdDynamicHeader(offset), 'BAD_VHD');
  });
});
