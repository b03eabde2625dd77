import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { built, openBytes, patchHeader, patchRegionTables, regionTable, model, expectCode, readHeader, MiB } from './fixtures.js';
import { patternBytes } from '../helpers.js';
import { guidFromString } from '../../src/format/guid.js';
import { HEADER1_OFFSET, HEADER2_OFFSET, REGION_TABLE1_OFFSET, METADATA_FILE_PARAMETERS, METADATA_VIRTUAL_DISK_SIZE } from '../../src/format/constants.js';
import { decodeMetadataTable, encodeFileParameters, encodeMetadataTable } from '../../src/format/metadata.js';
import { MemoryBackend } from '../../src/io/memory.js';
import { VhdxImage } from '../../src/image/image.js';

function flip(bytes: Uint8Array, at: number, mask: number): void {
  bytes[at] = bytes[at]! ^ mask;
}

const writes = [
  { offset: 0, data: patternBytes(4096, 1) },
  { offset: MiB - 100, data: patternBytes(300, 2) }, // crosses a 1 MiB block boundary
  { offset: 3 * MiB + 7, data: patternBytes(70_001, 3) },
];
const SIZE = 5 * MiB + 512; // not a multiple of the block size: the last block is partial

describe('open and read built images', () => {
  for (const logicalSectorSize of [512, 4096] as const) {
    for (const type of ['dynamic', 'fixed'] as const) {
      for (const layout of ['windows', 'qemu'] as const) {
        test(`${type}, ${logicalSectorSize}-byte sectors, ${layout} layout`, async () => {
          const size = logicalSectorSize === 4096 ? 5 * MiB + 4096 : SIZE;
          const bytes = await built({ virtualSize: size, blockSize: MiB, logicalSectorSize, type, layout, writes });
          const image = await openBytes(bytes);
          assert.equal(image.virtualSize, size);
          assert.equal(image.logicalSectorSize, logicalSectorSize);
          assert.equal(image.type, type);
          assert.deepEqual(await image.read(0, size), model(size, writes));
          // Unaligned reads of every size class.
          const expected = model(size, writes);
          for (const [off, len] of [[1, 1], [MiB - 101, 302], [3 * MiB, 2 * MiB], [size - 3, 3], [size, 0]] as const) {
            assert.deepEqual(await image.read(off, len), expected.subarray(off, off + len), `read ${off}+${len}`);
          }
          await image.close();
        });
      }
    }
  }

  test('extents describe data, holes and file offsets', async () => {
    const bytes = await built({ virtualSize: SIZE, blockSize: MiB, writes });
    const image = await openBytes(bytes);
    const extents = (await image.extents());
    assert.deepEqual(
      extents.map((e) => [e.offset, e.length, e.kind]),
      [
        [0, 2 * MiB, 'data'],
        [2 * MiB, MiB, 'unallocated'],
        [3 * MiB, MiB, 'data'],
        [4 * MiB, MiB + 512, 'unallocated'],
      ],
    );
    assert.equal(extents.reduce((n, e) => n + e.length, 0), SIZE);
  });

  test('reads outside the virtual disk are refused', async () => {
    const image = await openBytes(await built({ virtualSize: 2 * MiB, blockSize: MiB }));
    await expectCode(image.read(2 * MiB - 1, 2), 'OUT_OF_RANGE');
    await expectCode(image.read(-1, 1), 'OUT_OF_RANGE');
  });

  test('zero, unmapped (3 and legacy 5) and undefined blocks read as zeros', async () => {
    const all = [{ offset: 0, data: patternBytes(5 * MiB, 9) }];
    const bytes = await built({
      virtualSize: 5 * MiB,
      blockSize: MiB,
      writes: all,
      blockStates: [
        { block: 0, state: 2 },
        { block: 1, state: 3 },
        { block: 2, state: 5 },
        { block: 3, state: 1 },
      ],
    });
    const image = await openBytes(bytes);
    const got = await image.read(0, 5 * MiB);
    assert.ok(got.subarray(0, 4 * MiB).every((b) => b === 0));
    assert.deepEqual(got.subarray(4 * MiB), all[0]!.data.subarray(4 * MiB));
    assert.deepEqual(
      (await image.extents()).map((e) => [e.state, e.length]),
      [['zero', MiB], ['unmapped', 2 * MiB], ['undefined', MiB], ['fully-present', MiB]],
    );
  });

  test('reserved block state 4 is refused', async () => {
    const bytes = await built({ virtualSize: 2 * MiB, blockSize: MiB, blockStates: [{ block: 1, state: 4 }] });
    await expectCode(openBytes(bytes), 'BAD_BAT');
  });
});

describe('header selection (§3.2)', () => {
  test('the copy with the higher sequence number is current', async () => {
    const bytes = await built({ virtualSize: MiB, blockSize: MiB });
    patchHeader(bytes, 0, (h) => ({ ...h, sequenceNumber: 10n, dataWriteGuid: guidFromString('11111111-2222-3333-4444-555555555555') }));
    const image = await openBytes(bytes);
    assert.equal(image.info().headerSequence, '10');
    assert.equal(image.info().dataWriteGuid, '11111111-2222-3333-4444-555555555555');
  });

  test('a corrupt copy falls back to the other with a warning', async () => {
    for (const bad of [HEADER1_OFFSET, HEADER2_OFFSET]) {
      const bytes = await built({ virtualSize: MiB, blockSize: MiB });
      flip(bytes, bad + 100, 0xff);
      const image = await openBytes(bytes);
      assert.equal(image.warnings.length, 1);
      assert.match(image.warnings[0]!, /header copy/);
      assert.equal(image.info().headerSequence, bad === HEADER1_OFFSET ? '2' : '1');
    }
  });

  test('no valid copy is BAD_HEADER', async () => {
    const bytes = await built({ virtualSize: MiB, blockSize: MiB });
    flip(bytes, HEADER1_OFFSET + 8, 1);
    flip(bytes, HEADER2_OFFSET + 8, 1);
    await expectCode(openBytes(bytes), 'BAD_HEADER');
  });

  test('equal sequence numbers: accepted when identical, refused when not', async () => {
    const bytes = await built({ virtualSize: MiB, blockSize: MiB });
    const h1 = readHeader(bytes, 0);
    patchHeader(bytes, 1, () => h1);
    await openBytes(bytes.slice());
    patchHeader(bytes, 1, (h) => ({ ...h, fileWriteGuid: guidFromString('01234567-89ab-cdef-0123-456789abcdef') }));
    await expectCode(openBytes(bytes), 'BAD_HEADER');
  });

  test('version other than 1 is refused, not skipped (§3.2 step 4)', async () => {
    const bytes = await built({ virtualSize: MiB, blockSize: MiB });
    patchHeader(bytes, 1, (h) => ({ ...h, version: 2 }));
    await expectCode(openBytes(bytes), 'UNSUPPORTED');
  });
});

describe('region table and metadata validation', () => {
  test('a corrupt region table copy 1 falls back to copy 2', async () => {
    const bytes = await built({ virtualSize: 2 * MiB, blockSize: MiB, writes });
    flip(bytes, REGION_TABLE1_OFFSET + 20, 0x40);
    const image = await openBytes(bytes);
    assert.ok(image.warnings.some((w) => /region table copy 1/.test(w)));
    assert.deepEqual(await image.read(0, 4096), writes[0]!.data);
  });

  test('unknown region: refused when required, ignored when not', async () => {
    const unknown = guidFromString('AAAAAAAA-BBBB-CCCC-DDDD-EEEEEEEEEEEE');
    for (const required of [true, false]) {
      const bytes = await built({ virtualSize: 2 * MiB, blockSize: MiB });
      const end = Math.max(...regionTable(bytes).entries.map((e) => e.fileOffset + e.length));
      patchRegionTables(bytes, (t) => ({ entries: [...t.entries, { guid: unknown, fileOffset: end, length: MiB, required }] }));
      const grown = new Uint8Array(Math.max(bytes.length, end + MiB));
      grown.set(bytes);
      if (required) await expectCode(openBytes(grown), 'UNKNOWN_REQUIRED_REGION');
      else await openBytes(grown);
    }
  });

  test('overlapping regions are refused', async () => {
    const bytes = await built({ virtualSize: 2 * MiB, blockSize: MiB });
    patchRegionTables(bytes, (t) => ({ entries: t.entries.map((e, i) => (i === 0 ? { ...e, fileOffset: MiB } : e)) })); // BAT onto the log
    await expectCode(openBytes(bytes), 'OVERLAP');
  });

  test('illegal block size in File Parameters is refused', async () => {
    const bytes = await built({ virtualSize: 2 * MiB, blockSize: MiB });
    const meta = regionTable(bytes).entries[1]!;
    const table = decodeMetadataTable(bytes.subarray(meta.fileOffset, meta.fileOffset + 65536));
    const fp = table.entries.find((e) => e.itemId.every((b, i) => b === METADATA_FILE_PARAMETERS[i]))!;
    bytes.set(encodeFileParameters({ blockSize: 3 * MiB, leaveBlockAllocated: false, hasParent: false }), meta.fileOffset + fp.offset);
    await expectCode(openBytes(bytes), 'BAD_METADATA');
  });

  test('metadata items are found wherever they lie in the region: together, or one far from the rest', async () => {
    // Readers fetch items lying close together in one read; an item far away must be read on its own.
    for (const farAt of [null, 256 * 1024, MiB - 8]) {
      const bytes = await built({ virtualSize: 5 * MiB + 512, blockSize: MiB, writes });
      const meta = regionTable(bytes).entries[1]!;
      const table = decodeMetadataTable(bytes.subarray(meta.fileOffset, meta.fileOffset + 65536));
      const sizeEntry = table.entries.find((e) => e.itemId.every((b, i) => b === METADATA_VIRTUAL_DISK_SIZE[i]))!;
      if (farAt !== null) {
        assert.ok(farAt + 8 <= meta.length);
        bytes.copyWithin(meta.fileOffset + farAt, meta.fileOffset + sizeEntry.offset, meta.fileOffset + sizeEntry.offset + 8);
        bytes.fill(0xee, meta.fileOffset + sizeEntry.offset, meta.fileOffset + sizeEntry.offset + 8); // the old place holds garbage
        sizeEntry.offset = farAt;
        bytes.set(encodeMetadataTable(table), meta.fileOffset);
      }
      const image = await openBytes(bytes);
      assert.equal(image.virtualSize, 5 * MiB + 512, `Virtual Disk Size at ${farAt ?? 'its place'}`);
      assert.equal(image.blockSize, MiB);
      assert.equal(image.logicalSectorSize, 512);
      assert.deepEqual(await image.read(0, 5 * MiB + 512), model(5 * MiB + 512, writes));
      await image.close();
    }
  });

  test('not a VHDX and truncated files', async () => {
    await expectCode(openBytes(new Uint8Array(4096)), 'NOT_VHDX');
    await expectCode(openBytes(new Uint8Array(0)), 'NOT_VHDX');
    const bytes = await built({ virtualSize: 2 * MiB, blockSize: MiB, writes });
    await expectCode(openBytes(bytes.slice(0, 600 * 1024)), 'TRUNCATED');
    // Cut inside the last data block: its BAT entry now points past the end of the file.
    await expectCode(openBytes(bytes.slice(0, bytes.length - 2 * MiB)), 'BAD_BAT');
  });
});

describe('read-only opens never write', () => {
  test('the backend refuses writes and the bytes are unchanged', async () => {
    const bytes = await built({ virtualSize: 2 * MiB, blockSize: MiB, writes });
    const before = bytes.slice();
    const backend = new MemoryBackend(bytes, { readOnly: true });
    const image = await VhdxImage.open(backend);
    assert.equal(image.readOnly, true);
    await image.read(0, 2 * MiB);
    await image.close();
    assert.deepEqual(backend.contents(), before);
  });
});
