/** Metadata region: table and known items (format reference §5). */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  FLAG_IS_REQUIRED,
  FLAG_IS_USER,
  FLAG_IS_VIRTUAL_DISK,
  MAX_METADATA_ENTRIES,
  MAX_METADATA_ITEM_LENGTH,
  MAX_USER_METADATA_ENTRIES,
  METADATA_SIGNATURE,
  METADATA_TABLE_SIZE,
  decodeFileParameters,
  decodeMetadataEntry,
  decodeMetadataTable,
  decodeMetadataTableEntryCount,
  decodeSectorSize,
  decodeVirtualDiskId,
  decodeVirtualDiskSize,
  encodeFileParameters,
  encodeMetadataTable,
  encodeU32,
  encodeVirtualDiskSize,
  type FileParameters,
  type MetadataEntry,
} from '../../src/format/metadata.js';
import { assertVhdxError, fixture, hex } from '../helpers.js';

const KiB = 1024;
const MiB = 1024 * 1024;
const FILE_PARAMETERS = hex('37 67 A1 CA 36 FA 43 4D B3 B6 33 F0 AA 44 E7 6B');
const VIRTUAL_DISK_SIZE = hex('24 42 A5 2F 1B CD 76 48 B2 11 5D BE D8 3B F4 B8');
const VIRTUAL_DISK_ID = hex('AB 12 CA BE E6 B2 23 45 93 EF C3 09 E0 00 C7 46');
const LOGICAL_SECTOR_SIZE = hex('1D BF 41 81 6F A9 09 47 BA 47 F2 33 A8 FA AB 5F');
const PHYSICAL_SECTOR_SIZE = hex('C7 48 A3 CD 5D 44 71 44 9C C9 E9 88 52 51 C5 56');

function handEntry(itemId: Uint8Array, offset: number, length: number, flags: number): Uint8Array {
  const e = new Uint8Array(32);
  const dv = new DataView(e.buffer);
  e.set(itemId, 0);
  dv.setUint32(16, offset, true);
  dv.setUint32(20, length, true);
  dv.setUint32(24, flags, true);
  return e;
}

/** Table header bytes: "metadata", EntryCount at 10. */
function handTable(count: number, size = 65536): Uint8Array {
  const b = new Uint8Array(size);
  b.set(hex('6D 65 74 61 64 61 74 61'), 0);
  new DataView(b.buffer).setUint16(10, count, true);
  return b;
}

/** The other four system items as QEMU/DiscUtils pack them after File Parameters (§5, §5.3). */
const OTHER_ENTRIES: MetadataEntry[] = [
  { itemId: VIRTUAL_DISK_SIZE, offset: 64 * KiB + 8, length: 8, isUser: false, isVirtualDisk: true, isRequired: true },
  { itemId: VIRTUAL_DISK_ID, offset: 64 * KiB + 16, length: 16, isUser: false, isVirtualDisk: true, isRequired: true },
  { itemId: LOGICAL_SECTOR_SIZE, offset: 64 * KiB + 32, length: 4, isUser: false, isVirtualDisk: true, isRequired: true },
  { itemId: PHYSICAL_SECTOR_SIZE, offset: 64 * KiB + 36, length: 4, isUser: false, isVirtualDisk: true, isRequired: true },
];
const FILE_PARAMETERS_ENTRY: MetadataEntry = {
  itemId: FILE_PARAMETERS,
  offset: 64 * KiB,
  length: 8,
  isUser: false,
  isVirtualDisk: false,
  isRequired: true,
};

const entryArb: fc.Arbitrary<MetadataEntry> = fc.record({
  itemId: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  offset: fc.integer({ min: 0, max: 0xffffffff }),
  length: fc.integer({ min: 0, max: 0xffffffff }),
  isUser: fc.boolean(),
  isVirtualDisk: fc.boolean(),
  isRequired: fc.boolean(),
}, { noNullPrototype: true });

describe('metadata: Windows samples', () => {
  const header = fixture('metadata_table_header.1');
  const entry = fixture('metadata_table_entry.1');

  test('metadata_table_header.1: signature "metadata" (0x617461646174656D as a LE u64), 5 entries, reserved zero', () => {
    assert.equal(header.length, 32);
    const dv = new DataView(header.buffer);
    assert.equal(dv.getBigUint64(0, true), 0x617461646174656dn);
    assert.equal(decodeMetadataTableEntryCount(header), 5);
    assert.equal(dv.getUint16(8, true), 0);
    assert.ok(header.subarray(12).every((b) => b === 0));
  });

  test('metadata_table_entry.1: File Parameters at offset 64 KiB, length 8, IsRequired only', () => {
    assert.equal(entry.length, 32);
    assert.deepEqual(decodeMetadataEntry(entry), FILE_PARAMETERS_ENTRY);
  });

  test('the header alone is too short for its 5 entries (TRUNCATED)', () => {
    assertVhdxError(() => decodeMetadataTable(header), 'TRUNCATED');
  });

  test('sample header + sample entry + four more entries decode as a 5-entry table', () => {
    const table = new Uint8Array(32 + 5 * 32);
    table.set(header, 0);
    table.set(entry, 32);
    OTHER_ENTRIES.forEach((e, i) => {
      const flags = (e.isUser ? 1 : 0) | (e.isVirtualDisk ? 2 : 0) | (e.isRequired ? 4 : 0);
      table.set(handEntry(e.itemId, e.offset, e.length, flags), 64 + 32 * i);
    });
    assert.deepEqual(decodeMetadataTable(table), { entries: [FILE_PARAMETERS_ENTRY, ...OTHER_ENTRIES] });
  });

  test('re-encoding a 5-entry table starting with the sample entry reproduces both samples', () => {
    const encoded = encodeMetadataTable({ entries: [decodeMetadataEntry(entry), ...OTHER_ENTRIES] });
    assert.equal(encoded.length, 64 * KiB);
    assert.deepEqual(encoded.subarray(0, 32), header);
    assert.deepEqual(encoded.subarray(32, 64), entry);
    assert.ok(encoded.subarray(32 + 5 * 32).every((b) => b === 0));
  });
});

describe('metadata table', () => {
  test('constants from §5', () => {
    assert.equal(METADATA_SIGNATURE, 'metadata');
    assert.equal(METADATA_TABLE_SIZE, 65536);
    assert.equal(MAX_METADATA_ENTRIES, 2047);
    assert.equal(MAX_USER_METADATA_ENTRIES, 1024);
    assert.equal(MAX_METADATA_ITEM_LENGTH, MiB);
    assert.equal(FLAG_IS_USER, 1);
    assert.equal(FLAG_IS_VIRTUAL_DISK, 2);
    assert.equal(FLAG_IS_REQUIRED, 4);
  });

  test('each flag bit maps to its own field; reserved bits 3..31 are ignored', () => {
    const cases: [number, boolean, boolean, boolean][] = [
      [0, false, false, false],
      [1, true, false, false],
      [2, false, true, false],
      [4, false, false, true],
      [7, true, true, true],
      [0xfffffff8, false, false, false],
      [0xffffffff, true, true, true],
    ];
    for (const [flags, isUser, isVirtualDisk, isRequired] of cases) {
      const e = decodeMetadataEntry(handEntry(FILE_PARAMETERS, 64 * KiB, 8, flags));
      assert.deepEqual([e.isUser, e.isVirtualDisk, e.isRequired], [isUser, isVirtualDisk, isRequired], `flags 0x${flags.toString(16)}`);
    }
  });

  test('offset and length are full u32 values', () => {
    const e = decodeMetadataEntry(handEntry(FILE_PARAMETERS, 0xfffffff0, 0x80000001, 0));
    assert.equal(e.offset, 0xfffffff0);
    assert.equal(e.length, 0x80000001);
  });

  test('a 31-byte entry -> TRUNCATED; a header shorter than 32 bytes -> TRUNCATED', () => {
    assertVhdxError(() => decodeMetadataEntry(new Uint8Array(31)), 'TRUNCATED');
    assertVhdxError(() => decodeMetadataTableEntryCount(new Uint8Array(31)), 'TRUNCATED');
    assertVhdxError(() => decodeMetadataTable(handTable(0, 31)), 'TRUNCATED');
  });

  test('EntryCount 0 gives no entries', () => {
    assert.deepEqual(decodeMetadataTable(handTable(0)), { entries: [] });
  });

  test('EntryCount 2047 is accepted; the last entry ends at byte 65536', () => {
    const b = handTable(2047);
    b.set(handEntry(VIRTUAL_DISK_ID, 64 * KiB + 100, 16, 6), 32 + 2046 * 32);
    const t = decodeMetadataTable(b);
    assert.equal(t.entries.length, 2047);
    assert.deepEqual(t.entries[2046], { itemId: VIRTUAL_DISK_ID, offset: 64 * KiB + 100, length: 16, isUser: false, isVirtualDisk: true, isRequired: true });
  });

  for (const count of [2048, 0x8000, 0xffff]) {
    test(`EntryCount ${count} -> BAD_METADATA`, () => {
      assertVhdxError(() => decodeMetadataTable(handTable(count, 64 * KiB + 32 * 0x10000)), 'BAD_METADATA');
    });
  }

  for (const sig of ['METADATA', 'metadat\0', 'metadatx', '\0\0\0\0\0\0\0\0']) {
    test(`signature ${JSON.stringify(sig)} -> BAD_METADATA`, () => {
      const b = handTable(0);
      for (let i = 0; i < 8; i++) b[i] = sig.charCodeAt(i);
      assertVhdxError(() => decodeMetadataTable(b), 'BAD_METADATA');
    });
  }

  test('encoding lays out header and entries as §5.1/§5.2 say', () => {
    const b = encodeMetadataTable({
      entries: [
        FILE_PARAMETERS_ENTRY,
        { itemId: VIRTUAL_DISK_SIZE, offset: 0, length: 0, isUser: true, isVirtualDisk: true, isRequired: false },
      ],
    });
    assert.equal(b.length, 65536);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    assert.deepEqual(b.subarray(0, 8), hex('6D 65 74 61 64 61 74 61'));
    assert.equal(dv.getUint16(8, true), 0);
    assert.equal(dv.getUint16(10, true), 2);
    assert.ok(b.subarray(12, 32).every((x) => x === 0));
    assert.deepEqual(b.subarray(32, 64), handEntry(FILE_PARAMETERS, 64 * KiB, 8, 4));
    assert.deepEqual(b.subarray(64, 96), handEntry(VIRTUAL_DISK_SIZE, 0, 0, 3));
    assert.ok(b.subarray(96).every((x) => x === 0));
  });

  test('decode(encode(t)) = t (property)', () => {
    fc.assert(
      fc.property(fc.array(entryArb, { maxLength: 60 }), (entries) => {
        assert.deepEqual(decodeMetadataTable(encodeMetadataTable({ entries })), { entries });
      }),
      { numRuns: 100 },
    );
  });

  test('encode(decode(b)) = b for 64 KiB tables with zero reserved fields (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.uint8Array({ minLength: 24, maxLength: 24 }), fc.integer({ min: 0, max: 7 })), { maxLength: 40 }), (raw) => {
        const b = handTable(raw.length);
        raw.forEach(([idOffsetLength, flags], i) => {
          b.set(idOffsetLength, 32 + 32 * i);
          new DataView(b.buffer).setUint32(32 + 32 * i + 24, flags, true);
        });
        assert.deepEqual(encodeMetadataTable(decodeMetadataTable(b)), b);
      }),
      { numRuns: 100 },
    );
  });

  test('2047 entries encode; 2048 -> INVALID_ARGUMENT', () => {
    const entries = Array.from({ length: 2047 }, () => FILE_PARAMETERS_ENTRY);
    assert.equal(decodeMetadataTable(encodeMetadataTable({ entries })).entries.length, 2047);
    assertVhdxError(() => encodeMetadataTable({ entries: [...entries, FILE_PARAMETERS_ENTRY] }), 'INVALID_ARGUMENT');
  });
});

describe('File Parameters item (§5.3, §5.4)', () => {
  test('hand-built bytes: 32 MiB blocks, HasParent', () => {
    assert.deepEqual(decodeFileParameters(hex('00 00 00 02 02 00 00 00')), { blockSize: 32 * MiB, leaveBlockAllocated: false, hasParent: true });
    assert.deepEqual(decodeFileParameters(hex('00 00 10 00 01 00 00 00')), { blockSize: MiB, leaveBlockAllocated: true, hasParent: false });
    assert.deepEqual(decodeFileParameters(hex('00 00 00 10 03 00 00 00')), { blockSize: 256 * MiB, leaveBlockAllocated: true, hasParent: true });
  });

  test('reserved flag bits 2..31 do not set either flag', () => {
    assert.deepEqual(decodeFileParameters(hex('00 00 00 02 FC FF FF FF')), { blockSize: 32 * MiB, leaveBlockAllocated: false, hasParent: false });
  });

  test('encoding writes BlockSize then the flags', () => {
    assert.deepEqual(encodeFileParameters({ blockSize: 32 * MiB, leaveBlockAllocated: true, hasParent: false }), hex('00 00 00 02 01 00 00 00'));
    assert.deepEqual(encodeFileParameters({ blockSize: MiB, leaveBlockAllocated: false, hasParent: true }), hex('00 00 10 00 02 00 00 00'));
  });

  test('round trip (property)', () => {
    const arb: fc.Arbitrary<FileParameters> = fc.record({
      blockSize: fc.integer({ min: 0, max: 0xffffffff }),
      leaveBlockAllocated: fc.boolean(),
      hasParent: fc.boolean(),
    }, { noNullPrototype: true });
    fc.assert(
      fc.property(arb, (p) => {
        const b = encodeFileParameters(p);
        assert.equal(b.length, 8);
        assert.deepEqual(decodeFileParameters(b), p);
      }),
    );
  });

  for (const n of [0, 4, 7, 9, 16]) {
    test(`a ${n}-byte item -> BAD_METADATA`, () => assertVhdxError(() => decodeFileParameters(new Uint8Array(n)), 'BAD_METADATA'));
  }
});

describe('Virtual Disk Size item', () => {
  test('hand-built bytes: 100 GiB and 64 TiB', () => {
    assert.equal(decodeVirtualDiskSize(hex('00 00 00 00 19 00 00 00')), 100 * 1024 * MiB);
    assert.equal(decodeVirtualDiskSize(hex('00 00 00 00 00 40 00 00')), 2 ** 46);
    assert.deepEqual(encodeVirtualDiskSize(100 * 1024 * MiB), hex('00 00 00 00 19 00 00 00'));
  });

  test('2^53 - 1 accepted; 2^53 and 2^64 - 1 -> BAD_METADATA', () => {
    assert.equal(decodeVirtualDiskSize(hex('FF FF FF FF FF FF 1F 00')), Number.MAX_SAFE_INTEGER);
    assertVhdxError(() => decodeVirtualDiskSize(hex('00 00 00 00 00 00 20 00')), 'BAD_METADATA');
    assertVhdxError(() => decodeVirtualDiskSize(hex('FF FF FF FF FF FF FF FF')), 'BAD_METADATA');
  });

  test('round trip (property)', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (size) => {
        assert.equal(decodeVirtualDiskSize(encodeVirtualDiskSize(size)), size);
      }),
    );
  });

  for (const n of [0, 4, 7, 9, 16]) {
    test(`a ${n}-byte item -> BAD_METADATA`, () => assertVhdxError(() => decodeVirtualDiskSize(new Uint8Array(n)), 'BAD_METADATA'));
  }
});

describe('Virtual Disk ID item', () => {
  test('16 bytes are the GUID, copied', () => {
    const raw = Uint8Array.from({ length: 16 }, (_, i) => 0xf0 - i);
    const id = decodeVirtualDiskId(raw);
    assert.deepEqual(id, Uint8Array.from({ length: 16 }, (_, i) => 0xf0 - i));
    raw.fill(0);
    assert.equal(id[0], 0xf0);
  });

  for (const n of [0, 8, 15, 17, 256]) {
    test(`a ${n}-byte item -> BAD_METADATA`, () => assertVhdxError(() => decodeVirtualDiskId(new Uint8Array(n)), 'BAD_METADATA'));
  }
});

describe('sector size items', () => {
  test('hand-built bytes: 512 and 4096', () => {
    assert.equal(decodeSectorSize(hex('00 02 00 00'), 'Logical Sector Size'), 512);
    assert.equal(decodeSectorSize(hex('00 10 00 00'), 'Physical Sector Size'), 4096);
    assert.deepEqual(encodeU32(512), hex('00 02 00 00'));
    assert.deepEqual(encodeU32(4096), hex('00 10 00 00'));
  });

  test('round trip through encodeU32 (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 0xffffffff }), (v) => {
        assert.equal(decodeSectorSize(encodeU32(v), 'x'), v);
      }),
    );
  });

  test('an 8-byte Physical Sector Size (VirtualBox\'s declared width, §12) -> BAD_METADATA', () => {
    assertVhdxError(() => decodeSectorSize(hex('00 10 00 00 00 00 00 00'), 'Physical Sector Size'), 'BAD_METADATA');
  });

  for (const n of [0, 2, 3, 5]) {
    test(`a ${n}-byte item -> BAD_METADATA`, () => assertVhdxError(() => decodeSectorSize(new Uint8Array(n), 'x'), 'BAD_METADATA'));
  }
});
