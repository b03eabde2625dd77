/** The footer rules for a fixed VHD made from a source (shared by every VHD writer). */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { vhdFooterFor } from '../../src/vhd/footer-for.js';
import { chsGeometry, VHD_EPOCH_SECONDS, VHD_MAX_GEOMETRY } from '../../src/vhd/footer.js';
import { assertVhdxError } from '../helpers.js';

const MiB = 1024 * 1024;

describe('vhdFooterFor', () => {
  test('size: whole sectors; with azure, whole MiB', () => {
    const table: [number, boolean, number][] = [
      [MiB, false, MiB],
      [MiB, true, MiB],
      [MiB + 1, false, MiB + 512],
      [MiB + 1, true, 2 * MiB],
      [41 * MiB + 7 * 512, false, 41 * MiB + 7 * 512],
      [41 * MiB + 7 * 512, true, 42 * MiB],
      [1, false, 512],
      [1, true, MiB],
    ];
    for (const [size, azure, expected] of table) {
      const f = vhdFooterFor({ size }, { azure });
      assert.equal(f.currentSize, expected, `${size} azure=${azure}`);
      assert.equal(f.originalSize, expected);
      // The appendix's geometry only where it describes the size exactly (none of these sizes); else the largest.
      const g = chsGeometry(expected);
      assert.notEqual(g.cylinders * g.heads * g.sectorsPerTrack * 512, expected);
      assert.deepEqual(f.geometry, VHD_MAX_GEOMETRY);
      assert.equal(f.diskType, 'fixed');
      assert.equal(f.dataOffset, null);
      assert.equal(f.creatorApplication, 'vhdx');
    }
    assertVhdxError(() => vhdFooterFor({ size: 0 }), 'INVALID_ARGUMENT');
  });

  test('Unique Id: kept from a VHDX or VHD source, random for a raw one', () => {
    const id = Uint8Array.from({ length: 16 }, (_, i) => i * 3);
    assert.deepEqual([...vhdFooterFor({ size: MiB, identity: { format: 'vhdx', id } }).uniqueId], [...id]);
    assert.deepEqual([...vhdFooterFor({ size: MiB, identity: { format: 'vhd', id } }).uniqueId], [...id]);
    const a = vhdFooterFor({ size: MiB }).uniqueId;
    const b = vhdFooterFor({ size: MiB }).uniqueId;
    assert.notDeepEqual([...a], [...b]);
  });

  test('timestamp: seconds since 2000-01-01 of the time given', () => {
    const time = new Date('2024-02-03T04:05:06Z');
    assert.equal(vhdFooterFor({ size: MiB }, { time }).timestamp, time.getTime() / 1000 - VHD_EPOCH_SECONDS);
    assert.equal(vhdFooterFor({ size: MiB }, { time: new Date('2000-01-01T00:00:00Z') }).timestamp, 0);
  });
});
