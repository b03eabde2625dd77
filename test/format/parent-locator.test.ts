/** Parent locator item of a differencing disk (format reference §6). */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { decodeParentLocator, encodeParentLocator, type ParentLocator } from '../../src/format/parent-locator.js';
import { assertVhdxError, fixture, hex } from '../helpers.js';

const VHDX_LOCATOR_TYPE = hex('B7 EF 4A B0 9E D1 81 4A B7 89 25 B8 E9 44 59 13');
const LINKAGE_VALUE = '{83ed0ec3-24c8-49a6-a959-5e4bf1288bfb}';

function utf16(text: string): Uint8Array {
  const out = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) {
    out[2 * i] = text.charCodeAt(i) & 0xff;
    out[2 * i + 1] = text.charCodeAt(i) >>> 8;
  }
  return out;
}

interface RawPair {
  keyOffset: number;
  valueOffset: number;
  keyLength: number;
  valueLength: number;
}

/** An item of `size` bytes with the given header and entry table; strings are placed by the caller. */
function handItem(size: number, type: Uint8Array, pairs: RawPair[], count = pairs.length): Uint8Array {
  const b = new Uint8Array(size);
  const dv = new DataView(b.buffer);
  b.set(type, 0);
  dv.setUint16(18, count, true);
  pairs.forEach((p, i) => {
    dv.setUint32(20 + 12 * i, p.keyOffset, true);
    dv.setUint32(24 + 12 * i, p.valueOffset, true);
    dv.setUint16(28 + 12 * i, p.keyLength, true);
    dv.setUint16(30 + 12 * i, p.valueLength, true);
  });
  return b;
}

/** A locator shaped like the Windows one: five pairs, parent_linkage first. */
const WINDOWS_LIKE: ParentLocator = {
  locatorType: VHDX_LOCATOR_TYPE,
  entries: [
    { key: 'parent_linkage', value: LINKAGE_VALUE },
    { key: 'parent_linkage2', value: '{00000000-0000-0000-0000-000000000000}' },
    { key: 'relative_path', value: '..\\base.vhdx' },
    { key: 'volume_path', value: '\\\\?\\Volume{a4c7e1d2-0000-0000-0000-100000000000}\\vm\\base.vhdx' },
    { key: 'absolute_win32_path', value: '\\\\?\\C:\\vm\\base.vhdx' },
  ],
};

describe('parent locator: Windows samples', () => {
  const header = fixture('parent_locator_header.1');
  const entry = fixture('parent_locator_entry.1');

  test('parent_locator_header.1: VHDX locator type GUID, reserved 0, 5 key/value pairs', () => {
    assert.equal(header.length, 20);
    assert.deepEqual(header.subarray(0, 16), VHDX_LOCATOR_TYPE);
    const dv = new DataView(header.buffer);
    assert.equal(dv.getUint16(16, true), 0);
    assert.equal(dv.getUint16(18, true), 5);
  });

  test('parent_locator_entry.1: key at 80 (28 bytes), value at 108 (76 bytes)', () => {
    assert.equal(entry.length, 12);
    const dv = new DataView(entry.buffer);
    assert.equal(dv.getUint32(0, true), 80);
    assert.equal(dv.getUint32(4, true), 108);
    assert.equal(dv.getUint16(8, true), 28);
    assert.equal(dv.getUint16(10, true), 76);
  });

  test('the header alone claims more pairs than it holds (BAD_PARENT_LOCATOR)', () => {
    assertVhdxError(() => decodeParentLocator(header), 'BAD_PARENT_LOCATOR');
  });

  test('an item starting with both samples decodes: type, 5 pairs, first is parent_linkage = braced GUID', () => {
    // Layout implied by the samples: header (20) + 5 entries (60) = 80, first key at 80, its value at 108.
    const strings = WINDOWS_LIKE.entries.flatMap((e) => [utf16(e.key), utf16(e.value)]);
    const size = 80 + strings.reduce((n, s) => n + s.length, 0);
    const pairs: RawPair[] = [];
    let at = 80;
    for (let i = 0; i < 5; i++) {
      const k = strings[2 * i]!;
      const v = strings[2 * i + 1]!;
      pairs.push({ keyOffset: at, valueOffset: at + k.length, keyLength: k.length, valueLength: v.length });
      at += k.length + v.length;
    }
    const item = handItem(size, VHDX_LOCATOR_TYPE, pairs);
    let p = 80;
    for (const s of strings) {
      item.set(s, p);
      p += s.length;
    }
    item.set(header, 0); // the Windows bytes themselves
    item.set(entry, 20);
    const decoded = decodeParentLocator(item);
    assert.deepEqual(decoded.locatorType, VHDX_LOCATOR_TYPE);
    assert.equal(decoded.entries.length, 5);
    assert.deepEqual(decoded.entries[0], { key: 'parent_linkage', value: LINKAGE_VALUE });
    assert.deepEqual(decoded, WINDOWS_LIKE);
  });

  test('encoding a five-pair locator whose first pair is parent_linkage reproduces both samples', () => {
    const encoded = encodeParentLocator(WINDOWS_LIKE);
    assert.deepEqual(encoded.subarray(0, 20), header);
    assert.deepEqual(encoded.subarray(20, 32), entry);
    assert.deepEqual(decodeParentLocator(encoded), WINDOWS_LIKE);
  });
});

describe('parent locator decoding', () => {
  test('offsets count from the start of the item; pairs may be stored in any order with gaps', () => {
    // value of pair 0 first, then a gap, then key of pair 1, then key of pair 0, then value of pair 1
    const k0 = utf16('relative_path');
    const v0 = utf16('..\\p.vhdx');
    const k1 = utf16('parent_linkage');
    const v1 = utf16('{11111111-2222-3333-4444-555555555555}');
    const base = 20 + 2 * 12;
    const offV0 = base + 6;
    const offK1 = offV0 + v0.length + 2;
    const offK0 = offK1 + k1.length;
    const offV1 = offK0 + k0.length + 10;
    const size = offV1 + v1.length + 4;
    const item = handItem(size, VHDX_LOCATOR_TYPE, [
      { keyOffset: offK0, valueOffset: offV0, keyLength: k0.length, valueLength: v0.length },
      { keyOffset: offK1, valueOffset: offV1, keyLength: k1.length, valueLength: v1.length },
    ]);
    item.set(v0, offV0);
    item.set(k1, offK1);
    item.set(k0, offK0);
    item.set(v1, offV1);
    item.fill(0xaa, offV1 + v1.length); // trailing junk is not read
    assert.deepEqual(decodeParentLocator(item), {
      locatorType: VHDX_LOCATOR_TYPE,
      entries: [
        { key: 'relative_path', value: '..\\p.vhdx' },
        { key: 'parent_linkage', value: '{11111111-2222-3333-4444-555555555555}' },
      ],
    });
  });

  test('zero pairs and any locator type decode (type checks belong to the caller)', () => {
    const type = hex('00 11 22 33 44 55 66 77 88 99 AA BB CC DD EE FF');
    assert.deepEqual(decodeParentLocator(handItem(20, type, [])), { locatorType: type, entries: [] });
  });

  test('keys are case-sensitive: "Key" and "key" are two keys', () => {
    const loc = encodeParentLocator({ locatorType: VHDX_LOCATOR_TYPE, entries: [{ key: 'Key', value: 'a' }, { key: 'key', value: 'b' }] });
    assert.deepEqual(decodeParentLocator(loc).entries, [{ key: 'Key', value: 'a' }, { key: 'key', value: 'b' }]);
  });

  test('fewer than 20 bytes -> TRUNCATED', () => {
    assertVhdxError(() => decodeParentLocator(new Uint8Array(19)), 'TRUNCATED');
  });

  /** A valid one-pair item (key "ab" at 32, value "cd" at 36, 40 bytes) with one raw field replaced. */
  function onePair(change: Partial<RawPair> = {}, size = 40): Uint8Array {
    const pair: RawPair = { keyOffset: 32, valueOffset: 36, keyLength: 4, valueLength: 4, ...change };
    const item = handItem(40, VHDX_LOCATOR_TYPE, [pair]);
    item.set(utf16('ab'), 32);
    item.set(utf16('cd'), 36);
    return item.slice(0, size);
  }

  test('the unchanged one-pair item decodes', () => {
    assert.deepEqual(decodeParentLocator(onePair()).entries, [{ key: 'ab', value: 'cd' }]);
  });

  const bad: [string, () => Uint8Array][] = [
    ['KeyOffset 0', () => onePair({ keyOffset: 0 })],
    ['ValueOffset 0', () => onePair({ valueOffset: 0 })],
    ['KeyLength 0', () => onePair({ keyLength: 0 })],
    ['ValueLength 0', () => onePair({ valueLength: 0 })],
    ['odd KeyLength', () => onePair({ keyLength: 3 })],
    ['odd ValueLength', () => onePair({ valueLength: 3 })],
    ['key runs past the item', () => onePair({ keyOffset: 38 })],
    ['value runs past the item', () => onePair({ valueLength: 6 })],
    ['value offset far outside', () => onePair({ valueOffset: 0xffffffff })],
    ['item cut before the value ends', () => onePair({}, 39)],
    ['KeyValueCount larger than the entry table room', () => handItem(40, VHDX_LOCATOR_TYPE, [], 2)],
    ['KeyValueCount 0xFFFF in a small item', () => handItem(100, VHDX_LOCATOR_TYPE, [], 0xffff)],
  ];
  for (const [what, make] of bad) {
    test(`${what} -> BAD_PARENT_LOCATOR`, () => assertVhdxError(() => decodeParentLocator(make()), 'BAD_PARENT_LOCATOR'));
  }

  test('a key that appears twice -> BAD_PARENT_LOCATOR', () => {
    const item = handItem(48, VHDX_LOCATOR_TYPE, [
      { keyOffset: 44, valueOffset: 44, keyLength: 2, valueLength: 2 },
      { keyOffset: 44, valueOffset: 46, keyLength: 2, valueLength: 2 },
    ]);
    item.set(utf16('kv'), 44);
    assertVhdxError(() => decodeParentLocator(item), 'BAD_PARENT_LOCATOR');
  });
});

describe('parent locator encoding', () => {
  test('layout: header, entry table, then key and value strings packed in pair order', () => {
    const b = encodeParentLocator({ locatorType: VHDX_LOCATOR_TYPE, entries: [{ key: 'ab', value: 'xyz' }, { key: 'c', value: 'd' }] });
    const expected = new Uint8Array(20 + 24 + 4 + 6 + 2 + 2);
    expected.set(VHDX_LOCATOR_TYPE, 0);
    expected.set(hex('00 00 02 00'), 16);
    expected.set(hex('2C 00 00 00  30 00 00 00  04 00 06 00'), 20); // key at 44, value at 48
    expected.set(hex('36 00 00 00  38 00 00 00  02 00 02 00'), 32); // key at 54, value at 56
    expected.set(utf16('abxyzcd'), 44);
    assert.deepEqual(b, expected);
  });

  test('decode(encode(l)) = l for unique non-empty keys and non-empty values (property)', () => {
    const text = fc.array(fc.integer({ min: 1, max: 0xffff }), { minLength: 1, maxLength: 40 }).map((u) => String.fromCharCode(...u));
    const arb = fc.record({
      locatorType: fc.uint8Array({ minLength: 16, maxLength: 16 }),
      entries: fc.uniqueArray(fc.record({ key: text, value: text }, { noNullPrototype: true }), { selector: (e) => e.key, maxLength: 12 }),
    }, { noNullPrototype: true });
    fc.assert(
      fc.property(arb, (loc) => {
        assert.deepEqual(decodeParentLocator(encodeParentLocator(loc)), loc);
      }),
      { numRuns: 200 },
    );
  });

  test('empty key or value -> INVALID_ARGUMENT', () => {
    assertVhdxError(() => encodeParentLocator({ locatorType: VHDX_LOCATOR_TYPE, entries: [{ key: '', value: 'x' }] }), 'INVALID_ARGUMENT');
    assertVhdxError(() => encodeParentLocator({ locatorType: VHDX_LOCATOR_TYPE, entries: [{ key: 'x', value: '' }] }), 'INVALID_ARGUMENT');
  });

  test('a string of 32767 code units (65534 bytes) fits a u16 length; 32768 -> INVALID_ARGUMENT', () => {
    const long = 'p'.repeat(32767);
    const ok = encodeParentLocator({ locatorType: VHDX_LOCATOR_TYPE, entries: [{ key: 'relative_path', value: long }] });
    assert.equal(decodeParentLocator(ok).entries[0]?.value, long);
    assertVhdxError(
      () => encodeParentLocator({ locatorType: VHDX_LOCATOR_TYPE, entries: [{ key: 'relative_path', value: long + 'p' }] }),
      'INVALID_ARGUMENT',
    );
    assertVhdxError(() => encodeParentLocator({ locatorType: VHDX_LOCATOR_TYPE, entries: [{ key: long + 'k', value: 'v' }] }), 'INVALID_ARGUMENT');
  });
});
