/** The VHD (v1) footer codec, from the specification's field table, and against qemu-img's footers. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { closeSync, openSync, readFileSync, readSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { chsGeometry, decodeVhdFooter, encodeVhdFooter, newVhdFooter, azureSize, VHD_FOOTER_SIZE } from '../../src/vhd/footer.js';
import { VhdxError } from '../../src/format/errors.js';
import { runOk, tempDir } from '../helpers.js';

/** A footer written field by field from the specification's table (offsets and big-endian fields). */
function specFooter(): Uint8Array {
  const b = new Uint8Array(512);
  const dv = new DataView(b.buffer);
  b.set(Buffer.from('conectix'), 0);
  dv.setUint32(8, 2); // features: reserved bit
  dv.setUint32(12, 0x00010000); // version 1.0
  dv.setBigUint64(16, 0xffffffffffffffffn); // fixed: no data offset
  dv.setUint32(24, 0x1234_5678); // timestamp
  b.set(Buffer.from('win '), 28);
  dv.setUint32(32, 0x000a_0000);
  b.set(Buffer.from('Wi2k'), 36);
  dv.setBigUint64(40, 1n << 30n);
  dv.setBigUint64(48, 1n << 30n);
  dv.setUint16(56, 2080);
  b[58] = 16;
  b[59] = 63;
  dv.setUint32(60, 2); // fixed
  for (let i = 0; i < 16; i++) b[68 + i] = i + 1;
  let sum = 0;
  for (const byte of b) sum += byte; // checksum field still zero
  dv.setUint32(64, ~sum >>> 0);
  return b;
}

function lastSector(path: string): Uint8Array {
  const fd = openSync(path, 'r');
  try {
    const out = new Uint8Array(512);
    readSync(fd, out, 0, 512, statSync(path).size - 512);
    return out;
  } finally {
    closeSync(fd);
  }
}

function assertBadVhd(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (e: unknown) => e instanceof VhdxError && e.code === 'BAD_VHD' && pattern.test(e.message));
}

describe('VHD footer', () => {
  test('decodes every field of a footer built from the specification', () => {
    const f = decodeVhdFooter(specFooter(), 'spec.vhd');
    assert.equal(f.diskType, 'fixed');
    assert.equal(f.dataOffset, null);
    assert.equal(f.timestamp, 0x12345678);
    assert.equal(f.creatorApplication, 'win ');
    assert.equal(f.creatorHostOs, 'Wi2k');
    assert.equal(f.currentSize, 1 << 30);
    assert.deepEqual(f.geometry, { cylinders: 2080, heads: 16, sectorsPerTrack: 63 });
    assert.deepEqual([...f.uniqueId], Array.from({ length: 16 }, (_, i) => i + 1));
    assert.equal(f.savedState, false);
  });

  test('re-encodes the specification footer byte for byte', () => {
    const bytes = specFooter();
    assert.deepEqual(encodeVhdFooter(decodeVhdFooter(bytes)), bytes);
  });

  test('a wrong checksum, a missing cookie, a short buffer and a bad disk type are BAD_VHD', () => {
    const flipped = specFooter();
    flipped[100] = 1;
    assertBadVhd(() => decodeVhdFooter(flipped), /checksum/);
    const cookie = specFooter();
    cookie[0] = 0x43;
    assertBadVhd(() => decodeVhdFooter(cookie), /cookie/);
    assertBadVhd(() => decodeVhdFooter(specFooter().subarray(0, 511)), /512 bytes/);
    const type = specFooter();
    const dv = new DataView(type.buffer);
    dv.setUint32(60, 9);
    dv.setUint32(64, 0);
    let sum = 0;
    for (const byte of type) sum += byte;
    dv.setUint32(64, ~sum >>> 0);
    assertBadVhd(() => decodeVhdFooter(type), /disk type 9/);
  });

  test('CHS geometry follows the appendix (1 GiB: 2080/16/63; the cap at 65535/16/255)', () => {
    assert.deepEqual(chsGeometry(1 << 30), { cylinders: 2080, heads: 16, sectorsPerTrack: 63 });
    assert.deepEqual(chsGeometry(10 * 1024 * 1024), { cylinders: 301, heads: 4, sectorsPerTrack: 17 });
    assert.deepEqual(chsGeometry(2 ** 40), { cylinders: 65535, heads: 16, sectorsPerTrack: 255 });
  });

  test('the geometry written: the appendix where it is exact, else the largest (so CHS readers use Current Size)', () => {
    const exact = 2080 * 16 * 63 * 512; // 1,073,479,680 bytes: 2080 cylinders of 16 heads and 63 sectors
    assert.deepEqual(newVhdFooter('fixed', exact).geometry, { cylinders: 2080, heads: 16, sectorsPerTrack: 63 });
    assert.deepEqual(newVhdFooter('fixed', 1 << 30).geometry, { cylinders: 65535, heads: 16, sectorsPerTrack: 255 });
    assert.deepEqual(newVhdFooter('fixed', 2 ** 41).geometry, { cylinders: 65535, heads: 16, sectorsPerTrack: 255 });
  });

  test('round trip of any new footer, and azureSize rounds up to a whole MiB', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 2 ** 32 }), fc.constantFrom('fixed', 'dynamic', 'differencing' as const), (sectors, type) => {
        const footer = newVhdFooter(type, sectors * 512);
        const bytes = encodeVhdFooter(footer);
        assert.equal(bytes.length, VHD_FOOTER_SIZE);
        assert.deepEqual(decodeVhdFooter(bytes), footer);
        const a = azureSize(sectors * 512);
        assert.ok(a % (1 << 20) === 0 && a >= sectors * 512 && a - sectors * 512 < 1 << 20);
      }),
    );
  });

  test("we read qemu-img's footers: exact size with force_size, else its CHS rounding of our geometry", () => {
    const { path: dir, cleanup } = tempDir();
    try {
      for (const size of [10 * 1024 * 1024, 100 * 1024 * 1024 + 7 * 512, 1 << 30]) {
        const path = join(dir, `q${size}.vhd`);
        runOk('qemu-img', ['create', '-q', '-f', 'vpc', '-o', 'subformat=fixed,force_size=on', path, String(size)]);
        const forced = decodeVhdFooter(lastSector(path), path);
        assert.equal(forced.diskType, 'fixed');
        assert.equal(forced.currentSize, size);
        assert.equal(statSync(path).size, size + 512);
        // Without force_size, qemu-img rounds the size up to whole cylinders of the appendix's geometry.
        rmSync(path);
        runOk('qemu-img', ['create', '-q', '-f', 'vpc', '-o', 'subformat=dynamic', path, String(size)]);
        const rounded = decodeVhdFooter(readFileSync(path).subarray(0, 512), path); // the copy at offset 0
        assert.deepEqual(decodeVhdFooter(lastSector(path), path), rounded);
        assert.equal(rounded.diskType, 'dynamic');
        const ours = chsGeometry(size);
        const { cylinders, heads, sectorsPerTrack } = rounded.geometry;
        assert.deepEqual([heads, sectorsPerTrack], [ours.heads, ours.sectorsPerTrack], `heads and sectors of ${size}`);
        assert.ok(cylinders === ours.cylinders || cylinders === ours.cylinders + 1, `cylinders ${cylinders} vs ${ours.cylinders}`);
        assert.equal(rounded.currentSize, cylinders * heads * sectorsPerTrack * 512);
        rmSync(path);
      }
    } finally {
      cleanup();
    }
  });
});
