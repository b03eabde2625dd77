/** The 4 KiB header (format reference §3). */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { HEADER_SIGNATURE, decodeHeader, encodeHeader, sameHeaderFields, type Header } from '../../src/format/header.js';
import { assertVhdxError, fixture, hex, seal } from '../helpers.js';

const MiB = 1024 * 1024;

/** Bitwise CRC-32C with bytes 4..7 taken as zero, stored at 4 (§0): independent of the code under test. */

/** A header built byte by byte from the §3.1 table. */
function handHeader(fields: { seq?: bigint; logOffsetLo?: number; logOffsetHi?: number } = {}): Uint8Array {
  const b = new Uint8Array(4096);
  const dv = new DataView(b.buffer);
  b.set([0x68, 0x65, 0x61, 0x64], 0); // "head"
  dv.setBigUint64(8, fields.seq ?? 1n, true);
  for (let i = 0; i < 16; i++) b[16 + i] = 0x10 + i;
  for (let i = 0; i < 16; i++) b[32 + i] = 0x30 + i;
  for (let i = 0; i < 16; i++) b[48 + i] = 0x50 + i;
  dv.setUint16(64, 0, true);
  dv.setUint16(66, 1, true);
  dv.setUint32(68, MiB, true);
  dv.setUint32(72, fields.logOffsetLo ?? MiB, true);
  dv.setUint32(76, fields.logOffsetHi ?? 0, true);
  return seal(b);
}

const guidArb = fc.uint8Array({ minLength: 16, maxLength: 16 });
const headerArb: fc.Arbitrary<Header> = fc.record({
  sequenceNumber: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
  fileWriteGuid: guidArb,
  dataWriteGuid: guidArb,
  logGuid: guidArb,
  logVersion: fc.integer({ min: 0, max: 0xffff }),
  version: fc.integer({ min: 0, max: 0xffff }),
  logLength: fc.integer({ min: 0, max: 0xffffffff }),
  logOffset: fc.maxSafeNat(),
}, { noNullPrototype: true });

describe('header: Windows sample image_header.1', () => {
  const bytes = fixture('image_header.1');

  test('is a whole 4 KiB header whose reserved area (80..4096) is zero', () => {
    assert.equal(bytes.length, 4096);
    assert.ok(bytes.subarray(80).every((b) => b === 0));
  });

  test('the stored CRC-32C is valid', () => {
    const stored = new DataView(bytes.buffer).getUint32(4, true);
    assert.equal(stored, 0x9f69b235);
    assert.equal(new DataView(seal(bytes.slice()).buffer).getUint32(4, true), stored);
  });

  test('decodes every field: SequenceNumber 6, LogGuid zero, LogVersion 0, Version 1, 1 MiB log at 1 MiB', () => {
    const h = decodeHeader(bytes);
    assert.deepEqual(h, {
      sequenceNumber: 6n,
      fileWriteGuid: hex('D4 CD CC A3 CE E8 21 43 92 43 CD AA 37 D5 A0 E2'),
      dataWriteGuid: hex('55 CD FB 0F 20 13 8F 49 9C 15 1A 97 33 5A AF CD'),
      logGuid: new Uint8Array(16),
      logVersion: 0,
      version: 1,
      logLength: MiB,
      logOffset: MiB,
    });
  });

  test('encodeHeader(decodeHeader(x)) reproduces all 4096 bytes, checksum included', () => {
    assert.deepEqual(encodeHeader(decodeHeader(bytes)), bytes);
  });

  test('decoding ignores bytes after the 4 KiB and works from an unaligned subarray', () => {
    const big = new Uint8Array(3 + 4096 + 100).fill(0xab);
    big.set(bytes, 3);
    assert.deepEqual(decodeHeader(big.subarray(3)), decodeHeader(bytes));
  });

  test('decoded GUIDs are copies, not views of the input', () => {
    const copy = bytes.slice();
    const h = decodeHeader(copy);
    copy.fill(0xff, 16, 64);
    assert.deepEqual(h.fileWriteGuid, hex('D4 CD CC A3 CE E8 21 43 92 43 CD AA 37 D5 A0 E2'));
    assert.deepEqual(h.logGuid, new Uint8Array(16));
  });
});

describe('header decoding of hand-built bytes', () => {
  test('every field is read from its §3.1 offset', () => {
    const b = handHeader({ seq: 0x0102030405060708n, logOffsetLo: 0, logOffsetHi: 0x10 });
    const h = decodeHeader(b);
    assert.equal(h.sequenceNumber, 0x0102030405060708n);
    assert.deepEqual(h.fileWriteGuid, Uint8Array.from({ length: 16 }, (_, i) => 0x10 + i));
    assert.deepEqual(h.dataWriteGuid, Uint8Array.from({ length: 16 }, (_, i) => 0x30 + i));
    assert.deepEqual(h.logGuid, Uint8Array.from({ length: 16 }, (_, i) => 0x50 + i));
    assert.equal(h.logVersion, 0);
    assert.equal(h.version, 1);
    assert.equal(h.logLength, MiB);
    assert.equal(h.logOffset, 0x10 * 2 ** 32);
  });

  test('SequenceNumber 2^64 - 1 is kept exactly (bigint)', () => {
    assert.equal(decodeHeader(handHeader({ seq: 2n ** 64n - 1n })).sequenceNumber, 2n ** 64n - 1n);
  });

  test('LogOffset 2^53 - 1 accepted; 2^53 and 2^64 - 1 rejected with BAD_HEADER', () => {
    assert.equal(decodeHeader(handHeader({ logOffsetLo: 0xffffffff, logOffsetHi: 0x1fffff })).logOffset, Number.MAX_SAFE_INTEGER);
    assertVhdxError(() => decodeHeader(handHeader({ logOffsetLo: 0, logOffsetHi: 0x200000 })), 'BAD_HEADER');
    assertVhdxError(() => decodeHeader(handHeader({ logOffsetLo: 0xffffffff, logOffsetHi: 0xffffffff })), 'BAD_HEADER');
  });

  test('non-zero reserved bytes are covered by the CRC but do not stop decoding', () => {
    const b = handHeader();
    b[4095] = 0x77;
    assertVhdxError(() => decodeHeader(b), 'BAD_HEADER'); // CRC now wrong
    seal(b);
    assert.equal(decodeHeader(b).version, 1);
  });
});

describe('header rejection', () => {
  const bytes = fixture('image_header.1');

  test('signature is "head"', () => assert.equal(HEADER_SIGNATURE, 'head'));

  for (const sig of ['HEAD', 'hea\0', 'regi', 'loge', '\0\0\0\0']) {
    test(`signature ${JSON.stringify(sig)} -> BAD_HEADER even with a valid CRC`, () => {
      const b = bytes.slice();
      for (let i = 0; i < 4; i++) b[i] = sig.charCodeAt(i);
      seal(b);
      assertVhdxError(() => decodeHeader(b), 'BAD_HEADER');
    });
  }

  test('stored checksum off by one bit -> BAD_HEADER', () => {
    for (let bit = 0; bit < 32; bit++) {
      const b = bytes.slice();
      b[4 + (bit >>> 3)] = b[4 + (bit >>> 3)]! ^ (1 << (bit & 7));
      assertVhdxError(() => decodeHeader(b), 'BAD_HEADER');
    }
  });

  test('any single flipped bit in the 4096 bytes -> BAD_HEADER (property)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 4096 * 8 - 1 }), (bit) => {
        const b = bytes.slice();
        b[bit >>> 3] = b[bit >>> 3]! ^ (1 << (bit & 7));
        assertVhdxError(() => decodeHeader(b), 'BAD_HEADER');
      }),
      { numRuns: 200 },
    );
  });

  test('the checksum covers the full 4 KiB, not only the 80 defined bytes', () => {
    const b = bytes.slice();
    b[2000] = 1;
    assertVhdxError(() => decodeHeader(b), 'BAD_HEADER');
  });

  test('fewer than 4096 bytes -> TRUNCATED', () => {
    assertVhdxError(() => decodeHeader(bytes.subarray(0, 4095)), 'TRUNCATED');
    assertVhdxError(() => decodeHeader(bytes.subarray(0, 80)), 'TRUNCATED');
    assertVhdxError(() => decodeHeader(new Uint8Array(0)), 'TRUNCATED');
  });
});

describe('header encoding', () => {
  test('fields land at their §3.1 offsets, reserved bytes zero, CRC valid', () => {
    const h: Header = {
      sequenceNumber: 0x1122334455667788n,
      fileWriteGuid: Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i),
      dataWriteGuid: Uint8Array.from({ length: 16 }, (_, i) => 0xb0 + i),
      logGuid: Uint8Array.from({ length: 16 }, (_, i) => 0xc0 + i),
      logVersion: 0,
      version: 1,
      logLength: 2 * MiB,
      logOffset: 5 * 2 ** 40,
    };
    const b = encodeHeader(h);
    assert.equal(b.length, 4096);
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    assert.deepEqual(b.subarray(0, 4), hex('68 65 61 64'));
    assert.equal(dv.getBigUint64(8, true), 0x1122334455667788n);
    assert.deepEqual(b.subarray(16, 32), h.fileWriteGuid);
    assert.deepEqual(b.subarray(32, 48), h.dataWriteGuid);
    assert.deepEqual(b.subarray(48, 64), h.logGuid);
    assert.equal(dv.getUint16(64, true), 0);
    assert.equal(dv.getUint16(66, true), 1);
    assert.equal(dv.getUint32(68, true), 2 * MiB);
    assert.equal(dv.getBigUint64(72, true), 5n * 2n ** 40n);
    assert.ok(b.subarray(80).every((x) => x === 0));
    const stored = dv.getUint32(4, true);
    assert.equal(new DataView(seal(b.slice()).buffer).getUint32(4, true), stored);
  });

  test('decode(encode(h)) = h for any field values (property)', () => {
    fc.assert(
      fc.property(headerArb, (h) => {
        const b = encodeHeader(h);
        assert.equal(b.length, 4096);
        assert.deepEqual(decodeHeader(b), h);
      }),
      { numRuns: 200 },
    );
  });

  test('encode(decode(b)) = b for any valid header with a zero reserved area (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 72, maxLength: 72 }), fc.integer({ min: 0, max: 0x1fffff }), (fields, hi) => {
        const b = new Uint8Array(4096);
        b.set([0x68, 0x65, 0x61, 0x64], 0);
        b.set(fields, 8);
        new DataView(b.buffer).setUint32(76, hi, true); // keep LogOffset a safe integer
        seal(b);
        assert.deepEqual(encodeHeader(decodeHeader(b)), b);
      }),
      { numRuns: 200 },
    );
  });
});

describe('sameHeaderFields', () => {
  const a = fixture('image_header.1');

  test('identical copies agree', () => assert.equal(sameHeaderFields(a, a.slice()), true));

  test('a difference in the checksum or in the reserved area is ignored', () => {
    const b = a.slice();
    b[5] = b[5]! ^ 0xff;
    b[80] = 1;
    b[4095] = 1;
    assert.equal(sameHeaderFields(a, b), true);
  });

  test('a difference in any defined field byte (0..3, 8..79) is seen', () => {
    for (let i = 0; i < 80; i++) {
      if (i >= 4 && i < 8) continue;
      const b = a.slice();
      b[i] = b[i]! ^ 0x01;
      assert.equal(sameHeaderFields(a, b), false, `byte ${i}`);
    }
  });
});
