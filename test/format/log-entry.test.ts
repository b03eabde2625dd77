/** Log entries (format reference §8.1 - §8.5). */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeLogEntry,
  decodeLogEntryHeader,
  descriptorSectorCount,
  encodeLogEntry,
  isZeroDescriptor,
  type LogDescriptor,
  type LogEntryInput,
} from '../../src/format/log-entry.js';
import { assertVhdxError, patternBytes, seal } from '../helpers.js';

const MiB = 2 ** 20;
const LOG_GUID = Uint8Array.from({ length: 16 }, (_, i) => 0x40 + i);
const LOG_LENGTH = MiB;

function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

function dvOf(b: Uint8Array): DataView {
  return new DataView(b.buffer, b.byteOffset, b.byteLength);
}

/** Bitwise CRC-32C over all bytes with 4..7 taken as zero, stored at 4 (§0, §8.2). */

type HandDescriptor = { kind: 'zero'; fileOffset: number; zeroLength: number } | { kind: 'data'; fileOffset: number; sector: Uint8Array };

interface HandEntry {
  seq: bigint;
  tail?: number;
  logGuid?: Uint8Array;
  flushed?: number;
  last?: number;
  descriptors: HandDescriptor[];
  padSectors?: number;
}

/** An entry assembled from the §8.2 - §8.4 tables, sealed with the oracle CRC. */
function handEntry(o: HandEntry): Uint8Array {
  const n = o.descriptors.length;
  const descSectors = Math.ceil((n + 2) / 128);
  const dataCount = o.descriptors.filter((d) => d.kind === 'data').length;
  const length = (descSectors + dataCount + (o.padSectors ?? 0)) * 4096;
  const b = new Uint8Array(length);
  const dv = dvOf(b);
  b.set(ascii('loge'), 0);
  dv.setUint32(8, length, true);
  dv.setUint32(12, o.tail ?? 0, true);
  dv.setBigUint64(16, o.seq, true);
  dv.setUint32(24, n, true);
  b.set(o.logGuid ?? LOG_GUID, 32);
  dv.setBigUint64(48, BigInt(o.flushed ?? 4 * MiB), true);
  dv.setBigUint64(56, BigInt(o.last ?? 4 * MiB), true);
  let dataSector = descSectors;
  o.descriptors.forEach((d, i) => {
    const at = 64 + 32 * i;
    dv.setBigUint64(at + 16, BigInt(d.fileOffset), true);
    dv.setBigUint64(at + 24, o.seq, true);
    if (d.kind === 'zero') {
      b.set(ascii('zero'), at);
      dv.setBigUint64(at + 8, BigInt(d.zeroLength), true);
    } else {
      b.set(ascii('desc'), at);
      b.set(d.sector.subarray(4092, 4096), at + 4); // TrailingBytes
      b.set(d.sector.subarray(0, 8), at + 8); // LeadingBytes
      const s = dataSector++ * 4096;
      b.set(ascii('data'), s);
      dv.setUint32(s + 4, Number(o.seq >> 32n), true);
      b.set(d.sector.subarray(8, 4092), s + 8);
      dv.setUint32(s + 4092, Number(o.seq & 0xffffffffn), true);
    }
  });
  return seal(b);
}

/** Base entry for the rejection tests: zero descriptor at 64, data descriptor at 96, data sector at 4096. */
const BASE_SEQ = 0x0000000700000009n;
const BASE_SECTOR = patternBytes(4096, 77);
function baseEntry(tail = 4096): Uint8Array {
  return handEntry({
    seq: BASE_SEQ,
    tail,
    descriptors: [
      { kind: 'zero', fileOffset: 2 * MiB, zeroLength: 8192 },
      { kind: 'data', fileOffset: 3 * MiB + 4096, sector: BASE_SECTOR },
    ],
  });
}

describe('descriptor sectors (§8.1)', () => {
  test('ceil((DescriptorCount + 2) / 128): 126 fit with the header, then 128 per sector', () => {
    const cases: [number, number][] = [[0, 1], [1, 1], [126, 1], [127, 2], [254, 2], [255, 3], [382, 3], [383, 4]];
    for (const [count, sectors] of cases) assert.equal(descriptorSectorCount(count), sectors, `${count} descriptors`);
  });

  test('isZeroDescriptor tells the two kinds apart', () => {
    assert.equal(isZeroDescriptor({ fileOffset: 0, zeroLength: 0 }), true);
    assert.equal(isZeroDescriptor({ fileOffset: 0, data: new Uint8Array(4096) }), false);
  });
});

describe('log entry decoding of hand-built bytes', () => {
  test('data sector reconstruction: LeadingBytes || data[8..4092) || TrailingBytes (§8.4)', () => {
    const seq = 0x1122334455667788n;
    const b = new Uint8Array(8192);
    const dv = dvOf(b);
    b.set(ascii('loge'), 0);
    dv.setUint32(8, 8192, true); // EntryLength
    dv.setUint32(12, 0, true); // Tail
    dv.setBigUint64(16, seq, true);
    dv.setUint32(24, 1, true); // DescriptorCount
    b.set(LOG_GUID, 32);
    dv.setBigUint64(48, 5n * 2n ** 20n, true); // FlushedFileOffset
    dv.setBigUint64(56, 6n * 2n ** 20n, true); // LastFileOffset
    // data descriptor at 64
    b.set(ascii('desc'), 64);
    b.set([0xf1, 0xf2, 0xf3, 0xf4], 68); // TrailingBytes
    b.set([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08], 72); // LeadingBytes
    dv.setBigUint64(80, 0x300000n, true); // FileOffset
    dv.setBigUint64(88, seq, true);
    // data sector at 4096
    b.set(ascii('data'), 4096);
    b.set([0x44, 0x33, 0x22, 0x11], 4100); // SequenceHigh 0x11223344
    for (let i = 8; i < 4092; i++) b[4096 + i] = (i * 3) & 0xff;
    b.set([0x88, 0x77, 0x66, 0x55], 4096 + 4092); // SequenceLow 0x55667788
    seal(b);

    const expected = new Uint8Array(4096);
    expected.set([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08], 0);
    for (let i = 8; i < 4092; i++) expected[i] = (i * 3) & 0xff;
    expected.set([0xf1, 0xf2, 0xf3, 0xf4], 4092);

    const entry = decodeLogEntry(b, LOG_GUID, LOG_LENGTH);
    assert.deepEqual(entry, {
      header: {
        entryLength: 8192,
        tail: 0,
        sequenceNumber: seq,
        descriptorCount: 1,
        logGuid: LOG_GUID,
        flushedFileOffset: 5 * MiB,
        lastFileOffset: 6 * MiB,
      },
      descriptors: [{ fileOffset: 0x300000, data: expected }],
    });
    // ...and the encoder writes exactly these bytes back.
    assert.deepEqual(
      encodeLogEntry({ sequenceNumber: seq, tail: 0, logGuid: LOG_GUID, flushedFileOffset: 5 * MiB, lastFileOffset: 6 * MiB, descriptors: [{ fileOffset: 0x300000, data: expected }] }),
      b,
    );
  });

  test('zero and data descriptors interleaved: only data descriptors consume data sectors, in order', () => {
    const s1 = patternBytes(4096, 1);
    const s2 = patternBytes(4096, 2);
    const b = handEntry({
      seq: 42n,
      tail: 4096,
      descriptors: [
        { kind: 'zero', fileOffset: 0x100000, zeroLength: 0x10000 },
        { kind: 'data', fileOffset: 0x201000, sector: s1 },
        { kind: 'zero', fileOffset: 0x400000, zeroLength: 4096 },
        { kind: 'data', fileOffset: 0x202000, sector: s2 },
      ],
    });
    assert.equal(b.length, 3 * 4096);
    const entry = decodeLogEntry(b, LOG_GUID, LOG_LENGTH);
    assert.equal(entry.header.descriptorCount, 4);
    assert.equal(entry.header.tail, 4096);
    assert.deepEqual(entry.descriptors, [
      { fileOffset: 0x100000, zeroLength: 0x10000 },
      { fileOffset: 0x201000, data: s1 },
      { fileOffset: 0x400000, zeroLength: 4096 },
      { fileOffset: 0x202000, data: s2 },
    ]);
  });

  test('an entry with no descriptors is one 4 KiB sector', () => {
    const b = handEntry({ seq: 1n, descriptors: [] });
    assert.equal(b.length, 4096);
    assert.deepEqual(decodeLogEntry(b, LOG_GUID, LOG_LENGTH).descriptors, []);
  });

  test('127 descriptors: descriptor 126 opens the second descriptor sector, data follows both', () => {
    const sector = patternBytes(4096, 9);
    const descriptors: HandDescriptor[] = Array.from({ length: 126 }, (_, i) => ({ kind: 'zero' as const, fileOffset: i * 4096, zeroLength: 4096 }));
    descriptors.push({ kind: 'data', fileOffset: 0x500000, sector });
    const b = handEntry({ seq: 7n, descriptors });
    assert.equal(b.length, 3 * 4096);
    assert.deepEqual(b.subarray(4096, 4100), ascii('desc'));
    assert.deepEqual(b.subarray(8192, 8196), ascii('data'));
    const entry = decodeLogEntry(b, LOG_GUID, LOG_LENGTH);
    assert.equal(entry.descriptors.length, 127);
    assert.deepEqual(entry.descriptors[126], { fileOffset: 0x500000, data: sector });
    assert.deepEqual(entry.descriptors[125], { fileOffset: 125 * 4096, zeroLength: 4096 });
  });

  test('a longer EntryLength with padding sectors (covered by the CRC) is accepted (§8.1)', () => {
    const b = handEntry({ seq: 3n, descriptors: [{ kind: 'data', fileOffset: 4096, sector: BASE_SECTOR }], padSectors: 2 });
    assert.equal(b.length, 4 * 4096);
    const entry = decodeLogEntry(b, LOG_GUID, LOG_LENGTH);
    assert.equal(entry.header.entryLength, 4 * 4096);
    assert.deepEqual(entry.descriptors, [{ fileOffset: 4096, data: BASE_SECTOR }]);
  });

  test('SequenceNumber 2^64 - 1 splits into SequenceHigh and SequenceLow 0xFFFFFFFF', () => {
    const b = handEntry({ seq: 2n ** 64n - 1n, descriptors: [{ kind: 'data', fileOffset: 0, sector: BASE_SECTOR }] });
    assert.equal(decodeLogEntry(b, LOG_GUID, LOG_LENGTH).header.sequenceNumber, 2n ** 64n - 1n);
  });

  test('the base entry used by the rejection tests is valid', () => {
    const entry = decodeLogEntry(baseEntry(), LOG_GUID, LOG_LENGTH);
    assert.deepEqual(entry.descriptors, [
      { fileOffset: 2 * MiB, zeroLength: 8192 },
      { fileOffset: 3 * MiB + 4096, data: BASE_SECTOR },
    ]);
    assert.equal(entry.header.sequenceNumber, BASE_SEQ);
  });
});

describe('log entry header (§8.2, §8.5)', () => {
  function headerSector(fields: { entryLength?: number; tail?: number; seq?: bigint; count?: number; flushedHi?: number; lastHi?: number }): Uint8Array {
    const b = new Uint8Array(4096);
    const dv = dvOf(b);
    b.set(ascii('loge'), 0);
    dv.setUint32(8, fields.entryLength ?? 4096, true);
    dv.setUint32(12, fields.tail ?? 0, true);
    dv.setBigUint64(16, fields.seq ?? 1n, true);
    dv.setUint32(24, fields.count ?? 0, true);
    b.set(LOG_GUID, 32);
    dv.setUint32(48, MiB, true);
    dv.setUint32(52, fields.flushedHi ?? 0, true);
    dv.setUint32(56, 2 * MiB, true);
    dv.setUint32(60, fields.lastHi ?? 0, true);
    return b;
  }

  test('fields are read from their offsets (no CRC needed for the header alone)', () => {
    assert.deepEqual(decodeLogEntryHeader(headerSector({ entryLength: 3 * 4096, tail: 8192, seq: 0xabcdef0123n, count: 5, flushedHi: 1 }), LOG_LENGTH), {
      entryLength: 3 * 4096,
      tail: 8192,
      sequenceNumber: 0xabcdef0123n,
      descriptorCount: 5,
      logGuid: LOG_GUID,
      flushedFileOffset: 2 ** 32 + MiB,
      lastFileOffset: 2 * MiB,
    });
  });

  test('EntryLength equal to the log length is accepted', () => {
    assert.equal(decodeLogEntryHeader(headerSector({ entryLength: LOG_LENGTH }), LOG_LENGTH).entryLength, LOG_LENGTH);
  });

  test('DescriptorCount 126 fits one sector; 254 fits two', () => {
    assert.equal(decodeLogEntryHeader(headerSector({ entryLength: 4096, count: 126 }), LOG_LENGTH).descriptorCount, 126);
    assert.equal(decodeLogEntryHeader(headerSector({ entryLength: 8192, count: 254 }), LOG_LENGTH).descriptorCount, 254);
  });

  const bad: [string, Parameters<typeof headerSector>[0]][] = [
    ['EntryLength 0', { entryLength: 0 }],
    ['EntryLength 4095', { entryLength: 4095 }],
    ['EntryLength 4097', { entryLength: 4097 }],
    ['EntryLength 8191', { entryLength: 8191 }],
    ['EntryLength larger than the log', { entryLength: LOG_LENGTH + 4096 }],
    ['EntryLength 0xFFFFF000', { entryLength: 0xfffff000 }],
    ['SequenceNumber 0', { seq: 0n }],
    ['127 descriptors in a one-sector entry', { entryLength: 4096, count: 127 }],
    ['255 descriptors in a two-sector entry', { entryLength: 8192, count: 255 }],
    ['DescriptorCount 0xFFFFFFFF', { entryLength: LOG_LENGTH, count: 0xffffffff }],
    ['Tail not 4 KiB aligned', { tail: 100 }],
    ['Tail at the log length', { tail: LOG_LENGTH }],
    ['FlushedFileOffset >= 2^53', { flushedHi: 0x200000 }],
    ['LastFileOffset >= 2^53', { lastHi: 0xffffffff }],
  ];
  for (const [what, fields] of bad) {
    test(`${what} -> BAD_LOG`, () => assertVhdxError(() => decodeLogEntryHeader(headerSector(fields), LOG_LENGTH), 'BAD_LOG'));
  }

  for (const sig of ['LOGE', 'log\0', 'head', 'data']) {
    test(`signature ${JSON.stringify(sig)} -> BAD_LOG`, () => {
      const b = headerSector({});
      b.set(ascii(sig), 0);
      assertVhdxError(() => decodeLogEntryHeader(b, LOG_LENGTH), 'BAD_LOG');
    });
  }

  test('a header sector shorter than 4096 bytes -> BAD_LOG', () => {
    assertVhdxError(() => decodeLogEntryHeader(headerSector({}).subarray(0, 4095), LOG_LENGTH), 'BAD_LOG');
  });
});

describe('log entry validation (§8.5): every failure is BAD_LOG', () => {
  /** Applies a change to the base entry, then re-seals the CRC so only the change itself can be the reason. */
  function tampered(change: (b: Uint8Array, dv: DataView) => void, reseal = true): Uint8Array {
    const b = baseEntry();
    change(b, dvOf(b));
    return reseal ? seal(b) : b;
  }

  const cases: [string, (b: Uint8Array, dv: DataView) => void][] = [
    ['data sector signature "DATA"', (b) => b.set(ascii('DATA'), 4096)],
    ['data sector signature zeroed', (b) => b.fill(0, 4096, 4100)],
    ['data sector SequenceHigh off by one', (_b, dv) => dv.setUint32(4096 + 4, 8, true)],
    ['data sector SequenceLow off by one', (_b, dv) => dv.setUint32(4096 + 4092, 10, true)],
    ['data sector halves swapped', (_b, dv) => {
      dv.setUint32(4096 + 4, 9, true);
      dv.setUint32(4096 + 4092, 7, true);
    }],
    ['zero descriptor SequenceNumber differs', (_b, dv) => dv.setBigUint64(64 + 24, BASE_SEQ + 1n, true)],
    ['data descriptor SequenceNumber differs', (_b, dv) => dv.setBigUint64(96 + 24, BASE_SEQ - 1n, true)],
    ['descriptor with neither "zero" nor "desc"', (b) => b.set(ascii('DESC'), 96)],
    ['descriptor signature zeroed', (b) => b.fill(0, 64, 68)],
    ['zero descriptor FileOffset not 4 KiB aligned', (_b, dv) => dv.setBigUint64(64 + 16, BigInt(2 * MiB + 512), true)],
    ['data descriptor FileOffset not 4 KiB aligned', (_b, dv) => dv.setBigUint64(96 + 16, BigInt(3 * MiB + 1), true)],
    ['ZeroLength not a multiple of 4 KiB', (_b, dv) => dv.setBigUint64(64 + 8, 4097n, true)],
    ['descriptor FileOffset >= 2^53', (_b, dv) => dv.setBigUint64(96 + 16, 2n ** 53n, true)],
    ['ZeroLength >= 2^53', (_b, dv) => dv.setBigUint64(64 + 8, 2n ** 60n, true)],
    [
      'a third data descriptor without a data sector',
      (b, dv) => {
        dv.setUint32(24, 3, true);
        b.set(ascii('desc'), 128);
        dv.setBigUint64(128 + 24, BASE_SEQ, true);
      },
    ],
    ['DescriptorCount needing 3 descriptor sectors in an 8 KiB entry', (_b, dv) => dv.setUint32(24, 255, true)],
    ['SequenceNumber 0 everywhere (entry, descriptors, data sector)', (_b, dv) => {
      dv.setBigUint64(16, 0n, true);
      dv.setBigUint64(64 + 24, 0n, true);
      dv.setBigUint64(96 + 24, 0n, true);
      dv.setUint32(4096 + 4, 0, true);
      dv.setUint32(4096 + 4092, 0, true);
    }],
    ['EntryLength 4096 for an 8 KiB entry', (_b, dv) => dv.setUint32(8, 4096, true)],
    ['EntryLength 12288 for an 8 KiB entry', (_b, dv) => dv.setUint32(8, 12288, true)],
    ['EntryLength 8190', (_b, dv) => dv.setUint32(8, 8190, true)],
    ['signature "logE"', (b) => b.set(ascii('logE'), 0)],
  ];
  for (const [what, change] of cases) {
    test(what, () => assertVhdxError(() => decodeLogEntry(tampered(change), LOG_GUID, LOG_LENGTH), 'BAD_LOG'));
  }

  test('a LogGuid other than the header\'s -> BAD_LOG', () => {
    const other = LOG_GUID.slice();
    other[15] = other[15]! ^ 1;
    assertVhdxError(() => decodeLogEntry(baseEntry(), other, LOG_LENGTH), 'BAD_LOG');
    assertVhdxError(() => decodeLogEntry(baseEntry(), new Uint8Array(16), LOG_LENGTH), 'BAD_LOG');
  });

  test('EntryLength larger than the log -> BAD_LOG', () => {
    assertVhdxError(() => decodeLogEntry(baseEntry(0), LOG_GUID, 4096), 'BAD_LOG');
    assert.equal(decodeLogEntry(baseEntry(0), LOG_GUID, 8192).header.entryLength, 8192);
  });

  test('more bytes than EntryLength -> BAD_LOG', () => {
    const b = new Uint8Array(3 * 4096);
    b.set(baseEntry());
    assertVhdxError(() => decodeLogEntry(b, LOG_GUID, LOG_LENGTH), 'BAD_LOG');
  });

  test('stored checksum off by one bit -> BAD_LOG', () => {
    for (let bit = 0; bit < 32; bit++) {
      const b = baseEntry();
      b[4 + (bit >>> 3)] = b[4 + (bit >>> 3)]! ^ (1 << (bit & 7));
      assertVhdxError(() => decodeLogEntry(b, LOG_GUID, LOG_LENGTH), 'BAD_LOG');
    }
  });

  test('CRC mismatch from a change in the data sector payload (not re-sealed) -> BAD_LOG', () => {
    const b = tampered((x) => (x[5000] = x[5000]! ^ 0x40), false);
    assertVhdxError(() => decodeLogEntry(b, LOG_GUID, LOG_LENGTH), 'BAD_LOG');
    // The same change re-sealed is a valid entry carrying different data.
    const resealed = seal(b.slice());
    const entry = decodeLogEntry(resealed, LOG_GUID, LOG_LENGTH);
    const d = entry.descriptors[1];
    assert.ok(d !== undefined && !isZeroDescriptor(d));
    assert.equal(d.data[5000 - 4096], BASE_SECTOR[5000 - 4096]! ^ 0x40);
  });

  test('CRC mismatch from a change in the unused part of the descriptor sector -> BAD_LOG', () => {
    assertVhdxError(() => decodeLogEntry(tampered((x) => (x[4000] = 1), false), LOG_GUID, LOG_LENGTH), 'BAD_LOG');
  });

  test('any single flipped bit anywhere in the entry -> BAD_LOG (property)', () => {
    const good = baseEntry();
    fc.assert(
      fc.property(fc.integer({ min: 0, max: good.length * 8 - 1 }), (bit) => {
        const b = good.slice();
        b[bit >>> 3] = b[bit >>> 3]! ^ (1 << (bit & 7));
        assertVhdxError(() => decodeLogEntry(b, LOG_GUID, LOG_LENGTH), 'BAD_LOG');
      }),
      { numRuns: 300 },
    );
  });
});

describe('log entry encoding', () => {
  test('layout follows §8.2 - §8.4', () => {
    const sector = patternBytes(4096, 5);
    const b = encodeLogEntry({
      sequenceNumber: 0x0000000200000003n,
      tail: 12288,
      logGuid: LOG_GUID,
      flushedFileOffset: 7 * MiB,
      lastFileOffset: 9 * MiB,
      descriptors: [
        { fileOffset: 0x600000, data: sector },
        { fileOffset: 0x700000, zeroLength: 0x3000 },
      ],
    });
    assert.equal(b.length, 8192);
    const dv = dvOf(b);
    assert.deepEqual(b.subarray(0, 4), ascii('loge'));
    assert.equal(dv.getUint32(8, true), 8192);
    assert.equal(dv.getUint32(12, true), 12288);
    assert.equal(dv.getBigUint64(16, true), 0x0000000200000003n);
    assert.equal(dv.getUint32(24, true), 2);
    assert.equal(dv.getUint32(28, true), 0);
    assert.deepEqual(b.subarray(32, 48), LOG_GUID);
    assert.equal(dv.getBigUint64(48, true), BigInt(7 * MiB));
    assert.equal(dv.getBigUint64(56, true), BigInt(9 * MiB));
    // data descriptor
    assert.deepEqual(b.subarray(64, 68), ascii('desc'));
    assert.deepEqual(b.subarray(68, 72), sector.subarray(4092, 4096));
    assert.deepEqual(b.subarray(72, 80), sector.subarray(0, 8));
    assert.equal(dv.getBigUint64(80, true), 0x600000n);
    assert.equal(dv.getBigUint64(88, true), 0x0000000200000003n);
    // zero descriptor
    assert.deepEqual(b.subarray(96, 100), ascii('zero'));
    assert.equal(dv.getUint32(100, true), 0);
    assert.equal(dv.getBigUint64(104, true), 0x3000n);
    assert.equal(dv.getBigUint64(112, true), 0x700000n);
    assert.equal(dv.getBigUint64(120, true), 0x0000000200000003n);
    assert.ok(b.subarray(128, 4096).every((x) => x === 0));
    // data sector
    assert.deepEqual(b.subarray(4096, 4100), ascii('data'));
    assert.equal(dv.getUint32(4100, true), 2);
    assert.deepEqual(b.subarray(4104, 8188), sector.subarray(8, 4092));
    assert.equal(dv.getUint32(8188, true), 3);
    // CRC over the whole entry
    const stored = dv.getUint32(4, true);
    assert.equal(dvOf(seal(b.slice())).getUint32(4, true), stored);
  });

  test('encoding equals the hand assembly for the base entry', () => {
    assert.deepEqual(
      encodeLogEntry({
        sequenceNumber: BASE_SEQ,
        tail: 4096,
        logGuid: LOG_GUID,
        flushedFileOffset: 4 * MiB,
        lastFileOffset: 4 * MiB,
        descriptors: [
          { fileOffset: 2 * MiB, zeroLength: 8192 },
          { fileOffset: 3 * MiB + 4096, data: BASE_SECTOR },
        ],
      }),
      baseEntry(),
    );
  });

  test('unaligned FileOffset or a data sector that is not 4096 bytes is refused', () => {
    const input = (d: LogDescriptor): LogEntryInput => ({ sequenceNumber: 1n, tail: 0, logGuid: LOG_GUID, flushedFileOffset: 0, lastFileOffset: 0, descriptors: [d] });
    assert.throws(() => encodeLogEntry(input({ fileOffset: 512, zeroLength: 4096 })), RangeError);
    assert.throws(() => encodeLogEntry(input({ fileOffset: 4097, data: new Uint8Array(4096) })), RangeError);
    assert.throws(() => encodeLogEntry(input({ fileOffset: 4096, data: new Uint8Array(4095) })), RangeError);
    assert.throws(() => encodeLogEntry(input({ fileOffset: 4096, data: new Uint8Array(8192) })), RangeError);
  });
});

describe('log entry round trip (property)', () => {
  const zeroArb = fc.record({
    fileOffset: fc.integer({ min: 0, max: 2 ** 41 - 1 }).map((n) => n * 4096),
    zeroLength: fc.integer({ min: 0, max: 2 ** 41 - 1 }).map((n) => n * 4096),
  }, { noNullPrototype: true });
  const dataArb = fc.record({
    fileOffset: fc.integer({ min: 0, max: 2 ** 41 - 1 }).map((n) => n * 4096),
    seed: fc.integer({ min: 1, max: 0xffffffff }),
  }, { noNullPrototype: true });
  const descriptorArb = (dataWeight: number): fc.Arbitrary<LogDescriptor> =>
    fc.oneof(
      { weight: 4, arbitrary: zeroArb },
      { weight: dataWeight, arbitrary: dataArb.map(({ fileOffset, seed }) => ({ fileOffset, data: patternBytes(4096, seed) })) },
    );
  const logLength = 64 * MiB;
  const inputArb = (descriptors: fc.Arbitrary<LogDescriptor[]>): fc.Arbitrary<LogEntryInput> =>
    fc.record({
      sequenceNumber: fc.oneof(fc.bigInt({ min: 1n, max: 2n ** 64n - 1n }), fc.constantFrom(1n, 2n ** 32n - 1n, 2n ** 32n, 2n ** 64n - 1n)),
      tail: fc.integer({ min: 0, max: logLength / 4096 - 1 }).map((n) => n * 4096),
      logGuid: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      flushedFileOffset: fc.maxSafeNat(),
      lastFileOffset: fc.maxSafeNat(),
      descriptors,
    }, { noNullPrototype: true });

  function check(input: LogEntryInput): void {
    const bytes = encodeLogEntry(input);
    const n = input.descriptors.length;
    const dataCount = input.descriptors.filter((d) => !isZeroDescriptor(d)).length;
    assert.equal(bytes.length, (Math.ceil((n + 2) / 128) + dataCount) * 4096);
    const entry = decodeLogEntry(bytes, input.logGuid, logLength);
    assert.deepEqual(entry, {
      header: {
        entryLength: bytes.length,
        tail: input.tail,
        sequenceNumber: input.sequenceNumber,
        descriptorCount: n,
        logGuid: input.logGuid,
        flushedFileOffset: input.flushedFileOffset,
        lastFileOffset: input.lastFileOffset,
      },
      descriptors: input.descriptors,
    });
  }

  test('random mixes of up to 40 zero and data descriptors', () => {
    fc.assert(fc.property(inputArb(fc.array(descriptorArb(2), { maxLength: 40 })), check), { numRuns: 60 });
  });

  test('127 to 400 descriptors, so a second (or third, fourth) descriptor sector is needed', () => {
    fc.assert(fc.property(inputArb(fc.array(descriptorArb(1), { minLength: 127, maxLength: 400 })), check), { numRuns: 15 });
  });
});
