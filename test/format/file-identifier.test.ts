/** File type identifier at offset 0 (format reference §2). */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  FILE_IDENTIFIER_DECODED_SIZE,
  FILE_IDENTIFIER_SIGNATURE,
  decodeFileIdentifier,
  encodeFileIdentifier,
} from '../../src/format/file-identifier.js';
import { assertVhdxError, fixture } from '../helpers.js';

function ascii(text: string): Uint8Array {
  return Uint8Array.from(text, (c) => c.charCodeAt(0));
}

/** 520 bytes: `vhdxfile` then the creator as UTF-16LE code units, the rest zero. */
function identifierBytes(creatorUnits: number[], length = 520): Uint8Array {
  const b = new Uint8Array(length);
  b.set(ascii('vhdxfile'), 0);
  creatorUnits.forEach((u, i) => {
    b[8 + 2 * i] = u & 0xff;
    b[9 + 2 * i] = u >>> 8;
  });
  return b;
}

describe('file identifier: Windows sample file_identifier.1', () => {
  const bytes = fixture('file_identifier.1');

  test('is 520 bytes starting with "vhdxfile" (0x656C696678646876 as a LE u64, §0)', () => {
    assert.equal(bytes.length, 520);
    assert.equal(new DataView(bytes.buffer).getBigUint64(0, true), 0x656c696678646876n);
  });

  test('decodes to creator "Microsoft Windows 10.0.19041.0"', () => {
    assert.deepEqual(decodeFileIdentifier(bytes), { creator: 'Microsoft Windows 10.0.19041.0' });
  });

  test('re-encodes to the same 520 bytes followed by zeros up to 64 KiB', () => {
    const encoded = encodeFileIdentifier({ creator: 'Microsoft Windows 10.0.19041.0' });
    assert.equal(encoded.length, 64 * 1024);
    assert.deepEqual(encoded.subarray(0, 520), bytes);
    assert.ok(encoded.subarray(520).every((b) => b === 0));
  });

  test('decodes from inside a larger buffer (the 64 KiB slot) too', () => {
    const slot = new Uint8Array(70000);
    slot.set(bytes, 3);
    assert.equal(decodeFileIdentifier(slot.subarray(3)).creator, 'Microsoft Windows 10.0.19041.0');
  });
});

describe('file identifier decoding', () => {
  test('the decoded size is signature (8) + creator (512)', () => {
    assert.equal(FILE_IDENTIFIER_SIGNATURE, 'vhdxfile');
    assert.equal(FILE_IDENTIFIER_DECODED_SIZE, 520);
  });

  const notVhdx: [string, Uint8Array][] = [
    ['empty', new Uint8Array(0)],
    ['zeros', new Uint8Array(520)],
    ['upper case', (() => { const b = new Uint8Array(520); b.set(ascii('VHDXFILE')); return b; })()],
    ['last letter wrong', (() => { const b = new Uint8Array(520); b.set(ascii('vhdxfilf')); return b; })()],
    ['signature at offset 1', (() => { const b = new Uint8Array(520); b.set(ascii('vhdxfile'), 1); return b; })()],
    ['a VHD (v1) cookie', (() => { const b = new Uint8Array(520); b.set(ascii('conectix')); return b; })()],
    ['signature cut short', ascii('vhdxfil')],
  ];
  for (const [what, bytes] of notVhdx) {
    test(`${what} -> NOT_VHDX`, () => assertVhdxError(() => decodeFileIdentifier(bytes), 'NOT_VHDX'));
  }

  test('signature present but fewer than 520 bytes -> TRUNCATED', () => {
    assertVhdxError(() => decodeFileIdentifier(ascii('vhdxfile')), 'TRUNCATED');
    assertVhdxError(() => decodeFileIdentifier(identifierBytes([0x41], 519)), 'TRUNCATED');
  });

  test('the creator ends at the first NUL code unit', () => {
    assert.equal(decodeFileIdentifier(identifierBytes([0x41, 0x42, 0, 0x43])).creator, 'AB');
    assert.equal(decodeFileIdentifier(identifierBytes([])).creator, '');
  });

  test('a creator filling all 512 bytes (256 code units, no NUL) is read in full', () => {
    const units = Array.from({ length: 256 }, (_, i) => 0x41 + (i % 26));
    const creator = String.fromCharCode(...units);
    assert.equal(decodeFileIdentifier(identifierBytes(units)).creator, creator);
  });

  test('bytes after the 520th do not leak into the creator', () => {
    const units = Array.from({ length: 256 }, () => 0x5a);
    const b = identifierBytes(units, 600);
    b.fill(0x41, 520);
    assert.equal(decodeFileIdentifier(b).creator, 'Z'.repeat(256));
  });
});

describe('file identifier encoding', () => {
  test('256 code units fit, 257 are INVALID_ARGUMENT', () => {
    const ok = encodeFileIdentifier({ creator: 'x'.repeat(256) });
    assert.equal(ok[8 + 510], 0x78);
    assertVhdxError(() => encodeFileIdentifier({ creator: 'x'.repeat(257) }), 'INVALID_ARGUMENT');
  });

  test('round trip for creators of 0..256 code units without NUL (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 1, max: 0xffff }), { maxLength: 256 }), (units) => {
        const creator = String.fromCharCode(...units);
        const encoded = encodeFileIdentifier({ creator });
        assert.equal(encoded.length, 65536);
        assert.deepEqual(decodeFileIdentifier(encoded), { creator });
        assert.ok(encoded.subarray(8 + 2 * units.length).every((b) => b === 0));
      }),
      { numRuns: 200 },
    );
  });
});
