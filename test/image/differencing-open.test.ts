/** Validation specific to differencing disks at open: a partially present block needs its chunk's sector bitmap. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBackend } from '../../src/io/memory.js';
import { create } from '../../src/ops/create.js';
import { check } from '../../src/ops/check.js';
import { VhdxImage } from '../../src/image/image.js';
import { openLayout } from '../../src/image/open.js';
import { sectorBitmapEntryIndex } from '../../src/format/bat.js';
import { VhdxError } from '../../src/format/errors.js';

const MiB = 1024 * 1024;

test('a partially present block whose sector bitmap entry is not present is refused (and reported by check)', async () => {
  const parentBackend = new MemoryBackend();
  await create(parentBackend, { virtualSize: 4 * MiB, blockSize: MiB });
  const parent = await VhdxImage.open(parentBackend, { readOnly: true });
  const childBackend = new MemoryBackend();
  await create(childBackend, { virtualSize: 4 * MiB, blockSize: MiB, parent: { image: parent, relativePath: 'p', absolutePath: '/p' } });
  const child = await VhdxImage.open(childBackend, { readOnly: false, parent });
  await child.write(1000, new Uint8Array(100).fill(7));
  await child.close();
  assert.equal(child.info().type, 'differencing');

  const layout = await openLayout(new MemoryBackend(childBackend.contents().slice(), { readOnly: true }));
  const sbEntry = layout.batRegion.fileOffset + 8 * sectorBitmapEntryIndex(0, layout.geometry.chunkRatio);
  const damaged = childBackend.contents().slice();
  damaged.fill(0, sbEntry, sbEntry + 8); // SB_BLOCK_NOT_PRESENT
  await assert.rejects(VhdxImage.open(new MemoryBackend(damaged.slice(), { readOnly: true }), { parent }), (e: unknown) => e instanceof VhdxError && e.code === 'BAD_BAT' && /sector bitmap/.test(e.message));
  const report = await check(new MemoryBackend(damaged.slice(), { readOnly: true }));
  assert.ok(report.findings.some((f) => f.code === 'BAT_ILLEGAL_STATE'), JSON.stringify(report.findings));
});
