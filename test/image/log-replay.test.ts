import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { built, openBytes, patchHeader, readHeader, regionTable, model, expectCode, MiB } from './fixtures.js';
import { patternBytes } from '../helpers.js';
import { MemoryBackend } from '../../src/io/memory.js';
import { VhdxImage } from '../../src/image/image.js';
import { encodeLogEntry } from '../../src/format/log-entry.js';
import { encodeBatEntry, PAYLOAD_BLOCK_FULLY_PRESENT, PAYLOAD_BLOCK_ZERO } from '../../src/format/bat.js';
import { guidEquals, guidIsZero, randomGuid, type Guid } from '../../src/format/guid.js';
import { REGION_BAT } from '../../src/format/constants.js';

const sha = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex');
const LOG_OFFSET = MiB; // where the fixture generator puts the log

// Blocks in three different BAT sectors (512 entries per 4 KiB sector, 1 MiB blocks): one sector per entry.
const SIZE = 1600 * MiB;
const writes = [
  { offset: 10 * MiB + 5, data: patternBytes(5000, 11) },
  { offset: 600 * MiB, data: patternBytes(MiB + 17, 12) },
  { offset: 1300 * MiB - 3, data: patternBytes(4099, 13) },
];

describe('read-only open of a dirty log (replay in memory)', () => {
  for (const dirtyLog of [{ entries: 1 }, { entries: 3 }, { entries: 3, wrap: true }]) {
    test(`${JSON.stringify(dirtyLog)}: content as replayed, file untouched`, async () => {
      const bytes = await built({ virtualSize: SIZE, blockSize: MiB, writes, dirtyLog });
      assert.ok(!guidIsZero(readHeader(bytes, 1).logGuid));
      const before = sha(bytes);
      // Without the log the data is invisible: the BAT in place still says not present.
      const image = await openBytes(bytes);
      assert.equal(image.info().logState, 'replayed-in-memory');
      const expected = model(SIZE, writes);
      for (const w of writes) {
        const from = Math.floor(w.offset / MiB) * MiB;
        const to = Math.ceil((w.offset + w.data.length) / MiB) * MiB;
        assert.deepEqual(await image.read(from, to - from), expected.subarray(from, to));
      }
      await image.close();
      assert.equal(sha(bytes), before);
    });
  }
});

describe('writable open of a dirty log (replay to the file)', () => {
  test('replays, clears LogGuid, changes FileWriteGuid but not DataWriteGuid', async () => {
    const bytes = await built({ virtualSize: SIZE, blockSize: MiB, writes, dirtyLog: { entries: 3, wrap: true } });
    const before = readHeader(bytes, 1);
    const backend = new MemoryBackend(bytes);
    const image = await VhdxImage.open(backend, { readOnly: false });
    assert.equal(image.info().logState, 'replayed');
    await image.close();
    const after = backend.contents().slice();
    const h = [readHeader(after, 0), readHeader(after, 1)];
    const current = h[0]!.sequenceNumber > h[1]!.sequenceNumber ? h[0]! : h[1]!;
    assert.ok(guidIsZero(current.logGuid));
    assert.ok(!guidEquals(current.fileWriteGuid, before.fileWriteGuid));
    assert.ok(guidEquals(current.dataWriteGuid, before.dataWriteGuid));
    assert.equal(current.sequenceNumber, before.sequenceNumber + 4n); // two updates, each written to both slots
    const reopened = await openBytes(after);
    assert.equal(reopened.info().logState, 'empty');
    const expected = model(SIZE, writes);
    for (const w of writes) assert.deepEqual(await reopened.read(w.offset, w.data.length), expected.subarray(w.offset, w.offset + w.data.length));
  });
});

/** Writes one log entry into the image's log ring at `logPosition`. */
function placeEntry(bytes: Uint8Array, logPosition: number, entry: Uint8Array): void {
  bytes.set(entry, LOG_OFFSET + logPosition);
}

function batSector(bytes: Uint8Array, block: number, state: number, offset: number): { fileOffset: number; data: Uint8Array } {
  const bat = regionTable(bytes).entries.find((e) => guidEquals(e.guid, REGION_BAT))!;
  const data = bytes.slice(bat.fileOffset, bat.fileOffset + 4096);
  encodeBatEntry(data, block, state, offset);
  return { fileOffset: bat.fileOffset, data };
}

function setLogGuid(bytes: Uint8Array, logGuid: Guid): void {
  patchHeader(bytes, 1, (h) => ({ ...h, logGuid }));
}

describe('active sequence discovery (§8.6, §8.7)', () => {
  /** An image with block 0 written, grown by three spare 1 MiB blocks the log entries can point at. */
  async function base(): Promise<{ bytes: Uint8Array; dataAt: number; spare: number[] }> {
    const small = await built({ virtualSize: 4 * MiB, blockSize: MiB, writes: [{ offset: 0, data: patternBytes(MiB, 5) }] });
    const bytes = new Uint8Array(small.length + 3 * MiB);
    bytes.set(small);
    const spare = [small.length, small.length + MiB, small.length + 2 * MiB];
    return { bytes, dataAt: spare[0]!, spare };
  }
  const entry = (sequenceNumber: bigint, tail: number, logGuid: Guid, sector: { fileOffset: number; data: Uint8Array }, fileSize: number) =>
    encodeLogEntry({ sequenceNumber, tail, logGuid, flushedFileOffset: fileSize, lastFileOffset: fileSize, descriptors: [sector] });

  test('the complete sequence with the highest sequence number wins; stale GUIDs are ignored', async () => {
    const { bytes, spare } = await base();
    const logGuid = randomGuid();
    setLogGuid(bytes, logGuid);
    // Older sequence maps block 1; the newer one maps block 2; a stale entry of another log maps block 3.
    placeEntry(bytes, 0, entry(5n, 0, logGuid, batSector(bytes, 1, PAYLOAD_BLOCK_FULLY_PRESENT, spare[0]!), bytes.length));
    placeEntry(bytes, 64 * 1024, entry(9n, 64 * 1024, logGuid, batSector(bytes, 2, PAYLOAD_BLOCK_FULLY_PRESENT, spare[1]!), bytes.length));
    placeEntry(bytes, 128 * 1024, entry(50n, 128 * 1024, randomGuid(), batSector(bytes, 3, PAYLOAD_BLOCK_FULLY_PRESENT, spare[2]!), bytes.length));
    const image = await openBytes(bytes);
    assert.deepEqual((await image.extents()).map((e) => e.kind), ['data', 'unallocated', 'data', 'unallocated']);
  });

  test('a torn head (bad checksum) leaves the earlier complete entries in force', async () => {
    const { bytes, dataAt } = await base();
    const logGuid = randomGuid();
    setLogGuid(bytes, logGuid);
    const first = entry(7n, 0, logGuid, batSector(bytes, 3, PAYLOAD_BLOCK_ZERO, 0), bytes.length);
    placeEntry(bytes, 0, first);
    const torn = entry(8n, 0, logGuid, batSector(bytes, 2, PAYLOAD_BLOCK_FULLY_PRESENT, dataAt), bytes.length);
    torn[5000] = torn[5000]! ^ 0xff; // the data sector was only partly written
    placeEntry(bytes, first.length, torn);
    const image = await openBytes(bytes);
    assert.deepEqual((await image.extents()).map((e) => e.state), ['fully-present', 'not-present', 'zero']);
  });

  test('only the entries from the head\'s tail onwards are replayed', async () => {
    const { bytes, dataAt } = await base();
    const logGuid = randomGuid();
    setLogGuid(bytes, logGuid);
    // Entry 1 (already applied, outside the tail) would zero block 0; entry 2's tail points at itself.
    const e1 = entry(1n, 0, logGuid, batSector(bytes, 0, PAYLOAD_BLOCK_ZERO, 0), bytes.length);
    placeEntry(bytes, 0, e1);
    placeEntry(bytes, e1.length, entry(2n, e1.length, logGuid, batSector(bytes, 3, PAYLOAD_BLOCK_FULLY_PRESENT, dataAt), bytes.length));
    const image = await openBytes(bytes);
    // e1 is not replayed, but e2 carries the whole BAT sector as it stands (block 0 present).
    assert.deepEqual((await image.extents()).map((e) => e.kind), ['data', 'unallocated', 'data']);
  });

  test('LogGuid set but no complete entry: opens clean with a warning, or BAD_LOG when strict', async () => {
    const { bytes } = await base();
    setLogGuid(bytes, randomGuid());
    const image = await openBytes(bytes);
    assert.equal(image.info().logState, 'uncommitted');
    assert.ok(image.warnings.some((w) => /no complete entry sequence/.test(w)));
    assert.deepEqual((await image.extents()).map((e) => e.kind), ['data', 'unallocated']);
    await expectCode(VhdxImage.open(new MemoryBackend(bytes, { readOnly: true }), { strictLog: true }), 'BAD_LOG');
    // A writable open repairs it: LogGuid cleared.
    const backend = new MemoryBackend(bytes.slice());
    await (await VhdxImage.open(backend, { readOnly: false })).close();
    assert.equal((await openBytes(backend.contents().slice())).info().logState, 'empty');
  });

  test('a file shorter than the head\'s FlushedFileOffset is TRUNCATED', async () => {
    const { bytes, dataAt } = await base();
    const logGuid = randomGuid();
    setLogGuid(bytes, logGuid);
    placeEntry(bytes, 0, entry(3n, 0, logGuid, batSector(bytes, 1, PAYLOAD_BLOCK_FULLY_PRESENT, dataAt), bytes.length + MiB));
    await expectCode(openBytes(bytes), 'TRUNCATED');
  });

  test('a log entry aimed at the headers is refused', async () => {
    const { bytes } = await base();
    const logGuid = randomGuid();
    setLogGuid(bytes, logGuid);
    placeEntry(bytes, 0, entry(3n, 0, logGuid, { fileOffset: 64 * 1024, data: new Uint8Array(4096) }, bytes.length));
    await expectCode(openBytes(bytes), 'BAD_LOG');
  });
});
