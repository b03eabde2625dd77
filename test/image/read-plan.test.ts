/**
 * The read plan (`readPlan`) and the synchronous read built on it (`readIntoSync`): for images with
 * data, zero and unallocated blocks, and for a differencing chain (partially present blocks, runs served
 * by the parent), the plan covers the range exactly, in order, and reading by it gives what `readInto`
 * gives, at random offsets and lengths.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBackend } from '../../src/io/memory.js';
import { VhdxImage } from '../../src/image/image.js';
import { create } from '../../src/ops/create.js';
import { patternBytes } from '../helpers.js';
import { rng } from '../model.js';

const MiB = 1024 * 1024;

/** A memory backend that can also read synchronously, as the file backend does. */
class SyncMemoryBackend extends MemoryBackend {
  readSync(target: Uint8Array, position: number): number {
    const bytes = this.contents();
    if (position >= bytes.length) return 0;
    const n = Math.min(target.length, bytes.length - position);
    target.set(bytes.subarray(position, position + n));
    return n;
  }
}

async function image(backend: MemoryBackend, options: { parent?: VhdxImage } = {}): Promise<VhdxImage> {
  const opened = await VhdxImage.open(backend, { readOnly: false, ...options });
  return opened;
}

async function checkPlans(top: VhdxImage, layers: number): Promise<void> {
  const random = rng(7);
  const size = top.virtualSize;
  for (let i = 0; i < 200; i++) {
    const offset = Math.floor(random() * (size - 1));
    const length = 1 + Math.floor(random() * Math.min(3 * MiB, size - offset - 1));
    const plan = (await top.readPlan(offset, length));
    let at = offset;
    for (const r of plan) {
      assert.equal(r.offset, at, 'runs are contiguous and in order');
      assert.ok(r.length > 0 && r.layer >= 0 && r.layer < layers);
      at += r.length;
    }
    assert.equal(at, offset + length, 'the plan covers the range');
    const expected = await top.read(offset, length);
    const seen = new Uint8Array(length);
    assert.equal(top.readIntoSync(seen, offset), true);
    assert.ok(Buffer.from(seen).equals(Buffer.from(expected)), `readIntoSync at ${offset} +${length}`);
  }
}

describe('read plan', () => {
  test('a dynamic image: file runs where data is, zero runs elsewhere', async () => {
    const backend = new SyncMemoryBackend();
    await create(backend, { virtualSize: 16 * MiB, blockSize: MiB });
    const disk = await image(backend);
    await disk.write(MiB + 100, patternBytes(2 * MiB, 1));
    await disk.write(9 * MiB, patternBytes(4096, 2));
    await disk.writeZeroes(12 * MiB, MiB);
    const plan = (await disk.readPlan());
    assert.deepEqual(
      plan.map((r) => [r.offset / MiB, r.length / MiB, r.kind]),
      [[0, 1, 'zero'], [1, 3, 'file'], [4, 5, 'zero'], [9, 1, 'file'], [10, 6, 'zero']],
    );
    await checkPlans(disk, 1);
    await disk.close();
    // Without readSync the synchronous read declines (the caller uses readInto).
    const other = await VhdxImage.open(new MemoryBackend(backend.contents().slice()));
    assert.equal(other.readIntoSync(new Uint8Array(512), MiB + 100), false);
    assert.equal(other.readIntoSync(new Uint8Array(512), 0), true, 'zeros need no backend');
    await other.close();
  });

  test('a differencing chain: runs served by the parent carry its layer and backend', async () => {
    const parentBackend = new SyncMemoryBackend();
    await create(parentBackend, { virtualSize: 8 * MiB, blockSize: MiB });
    const base = await image(parentBackend);
    await base.write(0, patternBytes(3 * MiB, 3));
    await base.close();
    const parent = await VhdxImage.open(parentBackend);
    const childBackend = new SyncMemoryBackend();
    await create(childBackend, { virtualSize: 8 * MiB, blockSize: MiB, parent: { image: parent, relativePath: 'p', absolutePath: '/p' } });
    const child = await image(childBackend, { parent });
    await child.write(512, patternBytes(1024, 4)); // partially present: sectors 1-2 of block 0
    await child.write(2 * MiB + 4096, patternBytes(MiB, 5)); // spans blocks 2 and 3
    const head = (await child.readPlan(0, 4096));
    assert.deepEqual(
      head.map((r) => [r.offset, r.length, r.kind, r.layer]),
      [[0, 512, 'file', 1], [512, 1024, 'file', 0], [1536, 2560, 'file', 1]],
    );
    assert.ok(head[0]!.kind === 'file' && head[0]!.backend === parentBackend && head[1]!.kind === 'file' && head[1]!.backend === childBackend);
    await checkPlans(child, 2);
    await child.close();
    await parent.close();
  });
});
