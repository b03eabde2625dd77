/** Little-endian field helpers shared by the codecs (format reference §0, §13). */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  GiB,
  KiB,
  MiB,
  TiB,
  bytesEqual,
  decodeUtf16le,
  encodeUtf16le,
  hasSignature,
  isAllZero,
  isMultipleOf,
  readU64,
  requireLength,
  roundUp,
  view,
  writeSignature,
  writeU64,
} from '../../src/format/bytes.js';
import { hex, assertVhdxError } from '../helpers.js';

describe('readU64', () => {
  const accepted: [string, string, number][] = [
    ['zero', '00 00 00 00 00 00 00 00', 0],
    ['one', '01 00 00 00 00 00 00 00', 1],
    ['little-endian order', '07 06 05 04 03 02 01 00', 0x0001020304050607],
    ['2^32', '00 00 00 00 01 00 00 00', 2 ** 32],
    ['1 MiB', '00 00 10 00 00 00 00 00', MiB],
    ['64 TiB = 2^46', '00 00 00 00 00 40 00 00', 2 ** 46],
    ['2^53 - 1 (largest safe integer)', 'FF FF FF FF FF FF 1F 00', Number.MAX_SAFE_INTEGER],
  ];
  for (const [what, bytes, value] of accepted) {
    test(`accepts ${what}`, () => {
      const b = hex(bytes);
      assert.equal(readU64(view(b), 0, 'BAD_HEADER', 'field'), value);
    });
  }

  const rejected: [string, string][] = [
    ['2^53', '00 00 00 00 00 00 20 00'],
    ['2^53 + 1', '01 00 00 00 00 00 20 00'],
    ['2^63', '00 00 00 00 00 00 00 80'],
    ['2^64 - 1', 'FF FF FF FF FF FF FF FF'],
  ];
  for (const [what, bytes] of rejected) {
    test(`rejects ${what} with the caller's code`, () => {
      const b = hex(bytes);
      assertVhdxError(() => readU64(view(b), 0, 'BAD_LOG', 'field'), 'BAD_LOG');
      assertVhdxError(() => readU64(view(b), 0, 'BAD_METADATA', 'field'), 'BAD_METADATA');
    });
  }

  test('reads at a non-zero offset of a view over a subarray', () => {
    const buffer = new Uint8Array(32).fill(0xee);
    buffer.set(hex('00 00 30 00 00 00 00 00'), 13);
    const sub = buffer.subarray(5, 30);
    assert.equal(readU64(view(sub), 8, 'BAD_HEADER', 'field'), 3 * MiB);
  });
});

describe('writeU64', () => {
  test('writes little-endian bytes', () => {
    const b = new Uint8Array(10);
    writeU64(view(b), 1, 0x0123456789abc);
    assert.deepEqual(b, hex('00 BC 9A 78 56 34 12 00 00 00'));
    const c = new Uint8Array(8);
    writeU64(view(c), 0, Number.MAX_SAFE_INTEGER);
    assert.deepEqual(c, hex('FF FF FF FF FF FF 1F 00'));
  });

  for (const bad of [-1, 2 ** 53, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
    test(`refuses ${bad}`, () => {
      assert.throws(() => writeU64(view(new Uint8Array(8)), 0, bad), RangeError);
    });
  }

  test('readU64 inverts writeU64 for every safe integer (property)', () => {
    fc.assert(
      fc.property(fc.maxSafeNat(), (value) => {
        const b = new Uint8Array(8);
        writeU64(view(b), 0, value);
        assert.equal(readU64(view(b), 0, 'BAD_HEADER', 'field'), value);
        assert.equal(new DataView(b.buffer).getBigUint64(0, true), BigInt(value));
      }),
    );
  });
});

describe('signatures and lengths', () => {
  test('hasSignature compares raw ASCII bytes at an offset', () => {
    const b = Uint8Array.from('xxheadyy', (c) => c.charCodeAt(0));
    assert.equal(hasSignature(b, 2, 'head'), true);
    assert.equal(hasSignature(b, 0, 'head'), false);
    assert.equal(hasSignature(b, 2, 'HEAD'), false);
    assert.equal(hasSignature(b, 5, 'dyy'), true);
    assert.equal(hasSignature(b, 6, 'yyz'), false); // runs off the end
    assert.equal(hasSignature(new Uint8Array(0), 0, 'head'), false);
  });

  test('writeSignature writes ASCII bytes; the little-endian integers match §0', () => {
    const b = new Uint8Array(12);
    writeSignature(b, 0, 'head');
    writeSignature(b, 4, 'loge');
    writeSignature(b, 8, 'regi');
    const dv = view(b);
    assert.equal(dv.getUint32(0, true), 0x64616568);
    assert.equal(dv.getUint32(4, true), 0x65676f6c);
    assert.equal(dv.getUint32(8, true), 0x69676572);
    const m = new Uint8Array(8);
    writeSignature(m, 0, 'metadata');
    assert.equal(view(m).getBigUint64(0, true), 0x617461646174656dn);
  });

  test('requireLength throws TRUNCATED only when too short', () => {
    requireLength(new Uint8Array(16), 16, 'x');
    requireLength(new Uint8Array(17), 16, 'x');
    assertVhdxError(() => requireLength(new Uint8Array(15), 16, 'x'), 'TRUNCATED');
    assertVhdxError(() => requireLength(new Uint8Array(0), 1, 'x'), 'TRUNCATED');
  });

  test('view covers exactly the subarray', () => {
    const buffer = new Uint8Array(16);
    buffer[5] = 0x2a;
    const dv = view(buffer.subarray(5, 9));
    assert.equal(dv.byteLength, 4);
    assert.equal(dv.getUint8(0), 0x2a);
  });
});

describe('isAllZero', () => {
  test('empty and all-zero arrays of many lengths are zero', () => {
    for (const n of [0, 1, 7, 8, 63, 64, 65, 4096, 4099]) assert.equal(isAllZero(new Uint8Array(n)), true, `length ${n}`);
  });

  test('a single non-zero byte anywhere is found, at any byte offset (property)', () => {
    const buffer = new Uint8Array(400);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 16 }), fc.integer({ min: 1, max: 300 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (start, length, pos, value) => {
        buffer.fill(0);
        const sub = buffer.subarray(start, start + length);
        const at = pos % length;
        sub[at] = value;
        assert.equal(isAllZero(sub), false);
        sub[at] = 0;
        assert.equal(isAllZero(sub), true);
      }),
      { numRuns: 500 },
    );
  });

  test('large arrays: a single non-zero byte is found across 64 KiB pages, at any alignment (property)', () => {
    const buffer = new Uint8Array(300 * 1024 + 64);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 63 }), fc.integer({ min: 64, max: 300 * 1024 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (start, length, pos, value) => {
        const sub = buffer.subarray(start, start + length);
        // Biased to the edges of 64 KiB pages and of the array, where the chunked comparison splits.
        const candidates = [0, length - 1, 65535, 65536, 131071, 131072, pos % length];
        const at = candidates[pos % candidates.length]! % length;
        assert.equal(isAllZero(sub), true);
        sub[at] = value;
        assert.equal(isAllZero(sub), false, `length ${length}, start ${start}, byte ${at}`);
        sub[at] = 0;
      }),
      { numRuns: 300 },
    );
  });

  test('bytes outside the subarray do not count', () => {
    const buffer = new Uint8Array(200).fill(1);
    buffer.fill(0, 8, 8 + 128);
    assert.equal(isAllZero(buffer.subarray(8, 8 + 128)), true);
    assert.equal(isAllZero(buffer.subarray(8, 8 + 129)), false);
  });
});

describe('bytesEqual', () => {
  test('equal exactly when lengths and every byte agree, at any offsets (property)', () => {
    const a = new Uint8Array(400);
    const b = new Uint8Array(400);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 16 }), fc.integer({ min: 0, max: 16 }), fc.uint8Array({ maxLength: 300 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (sa, sb, bytes, pos, flip) => {
        a.set(bytes, sa);
        b.set(bytes, sb);
        const x = a.subarray(sa, sa + bytes.length);
        const y = b.subarray(sb, sb + bytes.length);
        assert.equal(bytesEqual(x, y), true);
        if (bytes.length > 0) {
          const at = pos % bytes.length;
          y[at] = y[at]! ^ flip;
          assert.equal(bytesEqual(x, y), false);
          assert.equal(bytesEqual(x, x.subarray(0, bytes.length - 1)), false, 'different lengths');
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('UTF-16LE', () => {
  test('encodes code units little-endian', () => {
    assert.deepEqual(encodeUtf16le('A\u20ac'), hex('41 00 AC 20'));
    assert.deepEqual(encodeUtf16le(''), new Uint8Array(0));
  });

  test('decodes code units little-endian and ignores an odd last byte', () => {
    assert.equal(decodeUtf16le(hex('4D 00 69 00')), 'Mi');
    assert.equal(decodeUtf16le(hex('4D 00 69')), 'M');
    assert.equal(decodeUtf16le(hex('3D D8 00 DE')), '\u{1F600}');
  });

  test('decode inverts encode for any string, including lone surrogates (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 100 }), (units) => {
        const text = String.fromCharCode(...units);
        const bytes = encodeUtf16le(text);
        assert.equal(bytes.length, 2 * units.length);
        assert.equal(decodeUtf16le(bytes), text);
      }),
    );
  });
});

describe('units and rounding', () => {
  test('unit constants are powers of two', () => {
    assert.equal(KiB, 1024);
    assert.equal(MiB, 1048576);
    assert.equal(GiB, 1073741824);
    assert.equal(TiB, 1099511627776);
  });

  test('roundUp and isMultipleOf', () => {
    assert.equal(roundUp(0, MiB), 0);
    assert.equal(roundUp(1, MiB), MiB);
    assert.equal(roundUp(MiB, MiB), MiB);
    assert.equal(roundUp(MiB + 1, MiB), 2 * MiB);
    assert.equal(roundUp(25800, MiB), MiB);
    assert.equal(isMultipleOf(3 * MiB, MiB), true);
    assert.equal(isMultipleOf(3 * MiB + 4096, MiB), false);
    assert.equal(isMultipleOf(0, 4096), true);
  });
});
