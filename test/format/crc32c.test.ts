/** CRC-32C (format reference §0): check values, incremental use, and the structure checksum rule. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { crc32c, crc32cFinish, crc32cInit, crc32cUpdate, structureChecksum } from '../../src/format/crc32c.js';
import { fixture } from '../helpers.js';

/** Bit-at-a-time CRC-32C written straight from the definition: an oracle independent of the table code. */
function referenceCrc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (const byte of bytes) {
    c ^= byte;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  return (c ^ 0xffffffff) >>> 0;
}

function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (ch) => ch.charCodeAt(0));
}

describe('crc32c', () => {
  test('check value of ASCII "123456789" is 0xE3069283 (§0)', () => {
    assert.equal(crc32c(ascii('123456789')), 0xe3069283);
  });

  test('the oracle itself gives the published check value', () => {
    assert.equal(referenceCrc32c(ascii('123456789')), 0xe3069283);
  });

  test('CRC of no bytes is 0 (init 0xFFFFFFFF, final XOR 0xFFFFFFFF)', () => {
    assert.equal(crc32cInit, 0xffffffff);
    assert.equal(crc32c(new Uint8Array(0)), 0);
    assert.equal(crc32cFinish(crc32cInit), 0);
  });

  test('iSCSI test vectors (RFC 3720 appendix B.4)', () => {
    const inc = Uint8Array.from({ length: 32 }, (_, i) => i);
    const dec = Uint8Array.from({ length: 32 }, (_, i) => 31 - i);
    assert.equal(crc32c(new Uint8Array(32)), 0x8a9136aa);
    assert.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43);
    assert.equal(crc32c(inc), 0x46dd794e);
    assert.equal(crc32c(dec), 0x113fdb5c);
  });

  test('incremental "1234" then "56789" equals the check value', () => {
    let s = crc32cUpdate(crc32cInit, ascii('1234'));
    s = crc32cUpdate(s, ascii('56789'));
    assert.equal(crc32cFinish(s), 0xe3069283);
  });

  test('incremental byte by byte equals the check value', () => {
    let s = crc32cInit;
    for (const b of ascii('123456789')) s = crc32cUpdate(s, Uint8Array.of(b));
    assert.equal(crc32cFinish(s), 0xe3069283);
  });

  test('matches the bitwise oracle on random data of every length remainder (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 300 }), (bytes) => {
        assert.equal(crc32c(bytes), referenceCrc32c(bytes));
      }),
      { numRuns: 300 },
    );
  });

  test('matches the oracle on a subarray that does not start at offset 0 of its buffer', () => {
    const buffer = new Uint8Array(1000);
    for (let i = 0; i < buffer.length; i++) buffer[i] = (i * 131 + 7) & 0xff;
    for (const start of [1, 2, 3, 5]) {
      const part = buffer.subarray(start, start + 517);
      assert.equal(crc32c(part), referenceCrc32c(part));
    }
  });

  test('incremental update over arbitrary splits equals one-shot (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 0, maxLength: 200 }), fc.array(fc.nat(200), { maxLength: 6 }), (bytes, cuts) => {
        const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b);
        let state = crc32cInit;
        let from = 0;
        for (const p of [...points, bytes.length]) {
          state = crc32cUpdate(state, bytes.subarray(from, p));
          from = p;
        }
        assert.equal(crc32cFinish(state), crc32c(bytes));
      }),
      { numRuns: 300 },
    );
  });

  test('results are unsigned 32-bit numbers (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => {
        const c = crc32c(bytes);
        assert.ok(Number.isInteger(c) && c >= 0 && c <= 0xffffffff, `got ${c}`);
        const s = crc32cUpdate(crc32cInit, bytes);
        assert.ok(Number.isInteger(s) && s >= 0 && s <= 0xffffffff, `state ${s}`);
      }),
    );
  });
});

describe('structureChecksum', () => {
  test('equals the CRC of a copy whose bytes 4..7 are zero (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 8, maxLength: 300 }), (bytes) => {
        const zeroed = bytes.slice();
        zeroed.fill(0, 4, 8);
        assert.equal(structureChecksum(bytes), referenceCrc32c(zeroed));
      }),
      { numRuns: 300 },
    );
  });

  test('does not depend on bytes 4..7 and does not modify its input', () => {
    const a = new Uint8Array(4096);
    for (let i = 0; i < a.length; i++) a[i] = (i * 7) & 0xff;
    const before = a.slice();
    const b = a.slice();
    b.set([0xde, 0xad, 0xbe, 0xef], 4);
    assert.equal(structureChecksum(a), structureChecksum(b));
    assert.deepEqual(a, before);
  });

  test('changes when any single bit outside bytes 4..7 flips (property)', () => {
    const base = new Uint8Array(512);
    for (let i = 0; i < base.length; i++) base[i] = (i * 29 + 3) & 0xff;
    const expected = structureChecksum(base);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 512 * 8 - 1 }), (bit) => {
        const byte = bit >>> 3;
        fc.pre(byte < 4 || byte >= 8);
        const copy = base.slice();
        copy[byte] = copy[byte]! ^ (1 << (bit & 7));
        assert.notEqual(structureChecksum(copy), expected);
      }),
      { numRuns: 300 },
    );
  });

  test('a checksum field at another offset is zeroed there instead', () => {
    const bytes = Uint8Array.from({ length: 40 }, (_, i) => i + 1);
    const zeroed = bytes.slice();
    zeroed.fill(0, 12, 16);
    assert.equal(structureChecksum(bytes, 12), referenceCrc32c(zeroed));
    assert.notEqual(structureChecksum(bytes, 12), structureChecksum(bytes));
  });

  test('Windows header image_header.1: the stored checksum 0x9F69B235 is the structure checksum', () => {
    const header = fixture('image_header.1');
    assert.equal(header.length, 4096);
    const stored = new DataView(header.buffer, header.byteOffset).getUint32(4, true);
    assert.equal(stored, 0x9f69b235);
    assert.equal(structureChecksum(header), stored);
  });
});
