/** Region table (format reference §4). */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  MAX_REGION_ENTRIES,
  REGION_TABLE_SIGNATURE,
  decodeRegionEntry,
  decodeRegionTable,
  encodeRegionTable,
  type RegionEntry,
} from '../../src/format/region-table.js';
import { assertVhdxError, fixture, hex, seal } from '../helpers.js';

const MiB = 1024 * 1024;
const BAT_GUID = hex('66 77 C2 2D 23 F6 00 42 9D 64 11 5E 9B FD 4A 08');
const METADATA_GUID = hex('06 A2 7C 8B 90 47 9A 4B B8 FE 57 5F 05 0F 88 6E');

/** Bitwise CRC-32C with bytes 4..7 taken as zero, stored at 4 (§0). */

/** A 64 KiB table with signature, EntryCount and the given raw entries, sealed. */
function handTable(count: number, entries: Uint8Array[] = []): Uint8Array {
  const b = new Uint8Array(65536);
  b.set([0x72, 0x65, 0x67, 0x69], 0); // "regi"
  new DataView(b.buffer).setUint32(8, count, true);
  entries.forEach((e, i) => b.set(e, 16 + 32 * i));
  return seal(b);
}

function handEntry(guid: Uint8Array, offsetLo: number, offsetHi: number, length: number, required: number): Uint8Array {
  const e = new Uint8Array(32);
  const dv = new DataView(e.buffer);
  e.set(guid, 0);
  dv.setUint32(16, offsetLo, true);
  dv.setUint32(20, offsetHi, true);
  dv.setUint32(24, length, true);
  dv.setUint32(28, required, true);
  return e;
}

const entryArb: fc.Arbitrary<RegionEntry> = fc.record({
  guid: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  fileOffset: fc.maxSafeNat(),
  length: fc.integer({ min: 0, max: 0xffffffff }),
  required: fc.boolean(),
}, { noNullPrototype: true });

describe('region table: Windows samples', () => {
  const table = fixture('region_table.1');
  const header = fixture('region_table_header.1');
  const entry = fixture('region_table_entry.1');

  test('the pieces are the same bytes as the truncated table', () => {
    assert.equal(table.length, 80);
    assert.equal(header.length, 16);
    assert.equal(entry.length, 32);
    assert.deepEqual(table.subarray(0, 16), header);
    assert.deepEqual(table.subarray(16, 48), entry);
  });

  test('region_table_header.1: signature "regi", EntryCount 2, reserved 0', () => {
    const dv = new DataView(header.buffer);
    assert.equal(dv.getUint32(0, true), 0x69676572);
    assert.equal(dv.getUint32(8, true), 2);
    assert.equal(dv.getUint32(12, true), 0);
  });

  test('region_table_entry.1: BAT region at 3 MiB, 1 MiB long, Required', () => {
    assert.deepEqual(decodeRegionEntry(entry), { guid: BAT_GUID, fileOffset: 3 * MiB, length: MiB, required: true });
  });

  test('region_table.1 entries: BAT at 3 MiB and metadata at 2 MiB, 1 MiB each, both Required', () => {
    assert.deepEqual(decodeRegionEntry(table.subarray(16, 48)), { guid: BAT_GUID, fileOffset: 3 * MiB, length: MiB, required: true });
    assert.deepEqual(decodeRegionEntry(table.subarray(48, 80)), {
      guid: METADATA_GUID,
      fileOffset: 2 * MiB,
      length: MiB,
      required: true,
    });
  });

  test('the truncated 80 bytes are not accepted as a whole table (TRUNCATED)', () => {
    assertVhdxError(() => decodeRegionTable(table), 'TRUNCATED');
  });

  test('re-encoding the two entries reproduces the sample bytes 8..80 (everything but the checksum)', () => {
    const encoded = encodeRegionTable({
      entries: [
        { guid: BAT_GUID, fileOffset: 3 * MiB, length: MiB, required: true },
        { guid: METADATA_GUID, fileOffset: 2 * MiB, length: MiB, required: true },
      ],
    });
    assert.equal(encoded.length, 65536);
    assert.deepEqual(encoded.subarray(0, 4), table.subarray(0, 4));
    assert.deepEqual(encoded.subarray(8, 80), table.subarray(8, 80));
    assert.ok(encoded.subarray(80).every((b) => b === 0));
  });

  // The stored CRC (0xC66B8CAE) matches the sample padded with zeros to 64 KiB, which shows Windows wrote
  // the rest of the table as zeros; so the whole table, checksum included, can be compared.
  test('zero-padded to 64 KiB the sample decodes, and encoding its entries gives it back byte for byte', () => {
    const padded = new Uint8Array(65536);
    padded.set(table);
    assert.equal(new DataView(padded.buffer).getUint32(4, true), 0xc66b8cae);
    const decoded = decodeRegionTable(padded);
    assert.deepEqual(decoded, {
      entries: [
        { guid: BAT_GUID, fileOffset: 3 * MiB, length: MiB, required: true },
        { guid: METADATA_GUID, fileOffset: 2 * MiB, length: MiB, required: true },
      ],
    });
    assert.deepEqual(encodeRegionTable(decoded), padded);
  });
});

describe('region entry decoding', () => {
  test('FileOffset is a u64: 2^53 - 1 accepted, 2^53 and above BAD_REGION_TABLE', () => {
    assert.equal(decodeRegionEntry(handEntry(BAT_GUID, 0xffffffff, 0x1fffff, MiB, 1)).fileOffset, Number.MAX_SAFE_INTEGER);
    assertVhdxError(() => decodeRegionEntry(handEntry(BAT_GUID, 0, 0x200000, MiB, 1)), 'BAD_REGION_TABLE');
    assertVhdxError(() => decodeRegionEntry(handEntry(BAT_GUID, 0xffffffff, 0xffffffff, MiB, 1)), 'BAD_REGION_TABLE');
  });

  test('a FileOffset above 4 GiB uses the high word', () => {
    assert.equal(decodeRegionEntry(handEntry(BAT_GUID, 0x00100000, 1, MiB, 1)).fileOffset, 2 ** 32 + MiB);
  });

  test('Required is bit 0 of the field (as QEMU and VirtualBox read it, §4.2)', () => {
    const cases: [number, boolean][] = [
      [0, false],
      [1, true],
      [3, true],
      [2, false],
      [0x80000000, false],
      [0xffffffff, true],
    ];
    for (const [raw, required] of cases) {
      assert.equal(decodeRegionEntry(handEntry(BAT_GUID, 0, 0, 0, raw)).required, required, `raw 0x${raw.toString(16)}`);
    }
  });

  test('fewer than 32 bytes -> TRUNCATED', () => {
    assertVhdxError(() => decodeRegionEntry(new Uint8Array(31)), 'TRUNCATED');
  });
});

describe('region table decoding', () => {
  test('EntryCount 0 gives no entries', () => {
    assert.deepEqual(decodeRegionTable(handTable(0)), { entries: [] });
  });

  test('EntryCount 2047 (the maximum, §4.1) is accepted and every entry decoded', () => {
    assert.equal(MAX_REGION_ENTRIES, 2047);
    const last = handEntry(METADATA_GUID, 0, 0x10, 5 * MiB, 0);
    const entries: Uint8Array[] = Array.from({ length: 2047 }, () => new Uint8Array(32));
    entries[2046] = last;
    const t = decodeRegionTable(handTable(2047, entries));
    assert.equal(t.entries.length, 2047);
    assert.deepEqual(t.entries[2046], { guid: METADATA_GUID, fileOffset: 0x10 * 2 ** 32, length: 5 * MiB, required: false });
  });

  for (const count of [2048, 4096, 0xffffffff]) {
    test(`EntryCount ${count} -> BAD_REGION_TABLE`, () => {
      assertVhdxError(() => decodeRegionTable(handTable(count)), 'BAD_REGION_TABLE');
    });
  }

  for (const sig of ['REGI', 'head', 'reg\0', '\0\0\0\0']) {
    test(`signature ${JSON.stringify(sig)} -> BAD_REGION_TABLE even with a valid CRC`, () => {
      const b = handTable(1, [handEntry(BAT_GUID, 0, 0, MiB, 1)]);
      for (let i = 0; i < 4; i++) b[i] = sig.charCodeAt(i);
      seal(b);
      assertVhdxError(() => decodeRegionTable(b), 'BAD_REGION_TABLE');
    });
  }

  test('stored checksum off by one bit -> BAD_REGION_TABLE', () => {
    const good = handTable(1, [handEntry(BAT_GUID, 0x300000, 0, MiB, 1)]);
    assert.equal(decodeRegionTable(good).entries.length, 1);
    for (let bit = 0; bit < 32; bit++) {
      const b = good.slice();
      b[4 + (bit >>> 3)] = b[4 + (bit >>> 3)]! ^ (1 << (bit & 7));
      assertVhdxError(() => decodeRegionTable(b), 'BAD_REGION_TABLE');
    }
  });

  test('the checksum covers the full 64 KiB: a flip in the reserved tail -> BAD_REGION_TABLE', () => {
    const b = handTable(1, [handEntry(BAT_GUID, 0x300000, 0, MiB, 1)]);
    b[65535] = 1;
    assertVhdxError(() => decodeRegionTable(b), 'BAD_REGION_TABLE');
  });

  test('any single flipped bit -> BAD_REGION_TABLE (property)', () => {
    const good = handTable(2, [handEntry(BAT_GUID, 0x300000, 0, MiB, 1), handEntry(METADATA_GUID, 0x200000, 0, MiB, 1)]);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 65536 * 8 - 1 }), (bit) => {
        const b = good.slice();
        b[bit >>> 3] = b[bit >>> 3]! ^ (1 << (bit & 7));
        assertVhdxError(() => decodeRegionTable(b), 'BAD_REGION_TABLE');
      }),
      { numRuns: 30 },
    );
  });

  test('an entry with FileOffset >= 2^53 inside a valid table -> BAD_REGION_TABLE', () => {
    assertVhdxError(() => decodeRegionTable(handTable(1, [handEntry(BAT_GUID, 0, 0x200000, MiB, 1)])), 'BAD_REGION_TABLE');
  });

  test('fewer than 64 KiB -> TRUNCATED', () => {
    assertVhdxError(() => decodeRegionTable(handTable(0).subarray(0, 65535)), 'TRUNCATED');
  });

  test('bytes after the 64 KiB are ignored', () => {
    const b = new Uint8Array(65536 + 10).fill(0x55);
    b.set(handTable(1, [handEntry(BAT_GUID, 0x300000, 0, MiB, 1)]));
    assert.equal(decodeRegionTable(b).entries.length, 1);
  });
});

describe('region table encoding', () => {
  test('entries land at 16 + 32 i with Required written as 1, reserved zero', () => {
    const b = encodeRegionTable({
      entries: [
        { guid: BAT_GUID, fileOffset: 3 * MiB, length: MiB, required: true },
        { guid: METADATA_GUID, fileOffset: 2 ** 40, length: 2 * MiB, required: false },
      ],
    });
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    assert.equal(REGION_TABLE_SIGNATURE, 'regi');
    assert.deepEqual(b.subarray(0, 4), hex('72 65 67 69'));
    assert.equal(dv.getUint32(8, true), 2);
    assert.equal(dv.getUint32(12, true), 0);
    assert.deepEqual(b.subarray(16, 48), handEntry(BAT_GUID, 3 * MiB, 0, MiB, 1));
    assert.deepEqual(b.subarray(48, 80), handEntry(METADATA_GUID, 0, 0x100, 2 * MiB, 0));
    assert.ok(b.subarray(80).every((x) => x === 0));
    const stored = dv.getUint32(4, true);
    assert.equal(new DataView(seal(b.slice()).buffer).getUint32(4, true), stored);
  });

  test('decode(encode(t)) = t (property)', () => {
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 40 }), (entries) => {
        assert.deepEqual(decodeRegionTable(encodeRegionTable({ entries })), { entries });
      }),
      { numRuns: 100 },
    );
  });

  test('2047 entries encode and decode; 2048 -> INVALID_ARGUMENT', () => {
    const entries: RegionEntry[] = Array.from({ length: 2047 }, (_, i) => ({
      guid: Uint8Array.from({ length: 16 }, (_, j) => (i + j) & 0xff),
      fileOffset: (i + 1) * MiB,
      length: MiB,
      required: i % 2 === 0,
    }));
    assert.deepEqual(decodeRegionTable(encodeRegionTable({ entries })), { entries });
    const tooMany = [...entries, { guid: BAT_GUID, fileOffset: MiB, length: MiB, required: true }];
    assertVhdxError(() => encodeRegionTable({ entries: tooMany }), 'INVALID_ARGUMENT');
  });
});
