/** GUIDs in Microsoft's mixed-endian layout (format reference §0, §4.3, §5.3, §6.1). */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { guidEquals, guidFromString, guidIsZero, guidToString, randomGuid, ZERO_GUID } from '../../src/format/guid.js';
import { hex, assertVhdxError } from '../helpers.js';

/** Every GUID the reference prints with its on-disk bytes. */
const SPEC_GUIDS: [string, string, string][] = [
  ['BAT region (§0, §4.3)', '2DC27766-F623-4200-9D64-115E9BFD4A08', '66 77 C2 2D 23 F6 00 42 9D 64 11 5E 9B FD 4A 08'],
  ['metadata region (§4.3)', '8B7CA206-4790-4B9A-B8FE-575F050F886E', '06 A2 7C 8B 90 47 9A 4B B8 FE 57 5F 05 0F 88 6E'],
  ['File Parameters (§5.3)', 'CAA16737-FA36-4D43-B3B6-33F0AA44E76B', '37 67 A1 CA 36 FA 43 4D B3 B6 33 F0 AA 44 E7 6B'],
  ['Virtual Disk Size (§5.3)', '2FA54224-CD1B-4876-B211-5DBED83BF4B8', '24 42 A5 2F 1B CD 76 48 B2 11 5D BE D8 3B F4 B8'],
  ['Virtual Disk ID (§5.3)', 'BECA12AB-B2E6-4523-93EF-C309E000C746', 'AB 12 CA BE E6 B2 23 45 93 EF C3 09 E0 00 C7 46'],
  ['Logical Sector Size (§5.3)', '8141BF1D-A96F-4709-BA47-F233A8FAAB5F', '1D BF 41 81 6F A9 09 47 BA 47 F2 33 A8 FA AB 5F'],
  ['Physical Sector Size (§5.3)', 'CDA348C7-445D-4471-9CC9-E9885251C556', 'C7 48 A3 CD 5D 44 71 44 9C C9 E9 88 52 51 C5 56'],
  ['Parent Locator (§5.3)', 'A8D35F2D-B30B-454D-ABF7-D3D84834AB0C', '2D 5F D3 A8 0B B3 4D 45 AB F7 D3 D8 48 34 AB 0C'],
  ['VHDX locator type (§6.1)', 'B04AEFB7-D19E-4A81-B789-25B8E9445913', 'B7 EF 4A B0 9E D1 81 4A B7 89 25 B8 E9 44 59 13'],
];

const hexDigit = fc.constantFrom(...'0123456789abcdefABCDEF'.split(''));
const hexRun = (n: number) => fc.array(hexDigit, { minLength: n, maxLength: n }).map((a) => a.join(''));
const guidText = fc
  .tuple(hexRun(8), hexRun(4), hexRun(4), hexRun(4), hexRun(12))
  .map((groups) => groups.join('-'));

describe('guid text <-> bytes', () => {
  test('reference example: text -> bytes', () => {
    assert.deepEqual(guidFromString('2DC27766-F623-4200-9D64-115E9BFD4A08'), hex('66 77 C2 2D 23 F6 00 42 9D 64 11 5E 9B FD 4A 08'));
  });

  test('reference example: bytes -> text (upper case, no braces)', () => {
    assert.equal(guidToString(hex('66 77 C2 2D 23 F6 00 42 9D 64 11 5E 9B FD 4A 08')), '2DC27766-F623-4200-9D64-115E9BFD4A08');
  });

  for (const [what, text, bytes] of SPEC_GUIDS) {
    test(`${what}: ${text} both ways`, () => {
      assert.deepEqual(guidFromString(text), hex(bytes));
      assert.equal(guidToString(hex(bytes)), text);
    });
  }

  test('braces and any letter case are accepted', () => {
    const expected = hex('66 77 C2 2D 23 F6 00 42 9D 64 11 5E 9B FD 4A 08');
    for (const text of [
      '{2DC27766-F623-4200-9D64-115E9BFD4A08}',
      '2dc27766-f623-4200-9d64-115e9bfd4a08',
      '{2dc27766-f623-4200-9d64-115e9bfd4a08}',
      '2Dc27766-F623-4200-9d64-115E9bFD4a08',
    ]) {
      assert.deepEqual(guidFromString(text), expected, text);
    }
  });

  test('a lower-case braced parent_linkage value (§6.2 example) parses to mixed-endian bytes', () => {
    assert.deepEqual(
      guidFromString('{83ed0ec3-24c8-49a6-a959-5e4bf1288bfb}'),
      hex('C3 0E ED 83 C8 24 A6 49 A9 59 5E 4B F1 28 8B FB'),
    );
  });

  test('bytes -> text -> bytes is the identity (property)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (bytes) => {
        const text = guidToString(bytes);
        assert.match(text, /^[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}$/);
        assert.deepEqual(guidFromString(text), bytes);
      }),
    );
  });

  test('text -> bytes -> text gives the upper-case text; braces make no difference (property)', () => {
    fc.assert(
      fc.property(guidText, (text) => {
        const bytes = guidFromString(text);
        assert.equal(bytes.length, 16);
        assert.equal(guidToString(bytes), text.toUpperCase());
        assert.deepEqual(guidFromString(`{${text}}`), bytes);
      }),
    );
  });

  test('text groups map to bytes as Data1/Data2/Data3 little-endian, Data4 as written (property)', () => {
    fc.assert(
      fc.property(guidText, (text) => {
        const [d1, d2, d3, d4a, d4b] = text.split('-') as [string, string, string, string, string];
        const bytes = guidFromString(text);
        const dv = new DataView(bytes.buffer, bytes.byteOffset, 16);
        assert.equal(dv.getUint32(0, true), parseInt(d1, 16));
        assert.equal(dv.getUint16(4, true), parseInt(d2, 16));
        assert.equal(dv.getUint16(6, true), parseInt(d3, 16));
        const d4 = d4a + d4b;
        for (let i = 0; i < 8; i++) assert.equal(bytes[8 + i], parseInt(d4.slice(2 * i, 2 * i + 2), 16));
      }),
    );
  });

  test('guidToString does not modify its input', () => {
    const bytes = hex('66 77 C2 2D 23 F6 00 42 9D 64 11 5E 9B FD 4A 08');
    const copy = bytes.slice();
    guidToString(bytes);
    assert.deepEqual(bytes, copy);
  });
});

describe('guid rejection', () => {
  const invalid: [string, string][] = [
    ['empty', ''],
    ['not a guid', 'hello'],
    ['one hex digit short', '2DC27766-F623-4200-9D64-115E9BFD4A0'],
    ['one hex digit too many', '2DC27766-F623-4200-9D64-115E9BFD4A081'],
    ['non-hex digit', '2DC27766-F623-4200-9D64-115E9BFD4A0G'],
    ['groups in the wrong places', '2DC2776-6F623-4200-9D64-115E9BFD4A08'],
    ['a group missing', '2DC27766-F623-4200-115E9BFD4A08'],
    ['parentheses', '(2DC27766-F623-4200-9D64-115E9BFD4A08)'],
    ['double braces', '{{2DC27766-F623-4200-9D64-115E9BFD4A08}}'],
    ['opening brace only', '{2DC27766-F623-4200-9D64-115E9BFD4A08'],
    ['closing brace only', '2DC27766-F623-4200-9D64-115E9BFD4A08}'],
    ['trailing junk', '2DC27766-F623-4200-9D64-115E9BFD4A08x'],
  ];
  for (const [what, text] of invalid) {
    test(`${what}: ${JSON.stringify(text)} -> INVALID_ARGUMENT`, () => {
      assertVhdxError(() => guidFromString(text), 'INVALID_ARGUMENT');
    });
  }
});

describe('guid helpers', () => {
  test('guidEquals compares all 16 bytes', () => {
    const a = hex('66 77 C2 2D 23 F6 00 42 9D 64 11 5E 9B FD 4A 08');
    assert.equal(guidEquals(a, a.slice()), true);
    for (let i = 0; i < 16; i++) {
      const b = a.slice();
      b[i] = b[i]! ^ 1;
      assert.equal(guidEquals(a, b), false, `byte ${i}`);
    }
  });

  test('guidIsZero and ZERO_GUID', () => {
    assert.equal(ZERO_GUID.length, 16);
    assert.equal(guidIsZero(ZERO_GUID), true);
    assert.equal(guidIsZero(new Uint8Array(16)), true);
    for (let i = 0; i < 16; i++) {
      const g = new Uint8Array(16);
      g[i] = 0x80;
      assert.equal(guidIsZero(g), false, `byte ${i}`);
    }
    assert.equal(guidToString(ZERO_GUID), '00000000-0000-0000-0000-000000000000');
  });

  test('randomGuid: 16 bytes, non-zero, RFC 4122 version 4 and variant bits, different each call', () => {
    const seen = new Set<string>();
    for (let i = 0; i < 50; i++) {
      const g = randomGuid();
      assert.equal(g.length, 16);
      assert.equal(guidIsZero(g), false);
      const text = guidToString(g);
      assert.equal(text[14], '4', text); // version nibble: first digit of the third group
      assert.ok('89AB'.includes(text[19]!), text); // variant: first digit of the fourth group
      seen.add(text);
    }
    assert.equal(seen.size, 50);
  });
});
