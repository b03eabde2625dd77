/**
 * Small writes into fully present blocks skip the change queue when nothing is queued: written at once
 * through the backend's `writeSync`. These tests pin what that shortcut must keep: the queue's order
 * (a write issued behind a queued change lands after it), rule 1 (the session's header update comes
 * before any payload byte), errors as rejections, and the cases that must go the long way.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBackend } from '../../src/io/memory.js';
import { VhdxError } from '../../src/format/errors.js';
import { VhdxImage } from '../../src/image/image.js';
import { create } from '../../src/ops/create.js';
import { patternBytes } from '../helpers.js';
import { rng } from '../model.js';

const MiB = 1024 * 1024;

/** A memory backend that also writes synchronously, as the file backend does, and logs every write. */
class SyncWriteBackend extends MemoryBackend {
  readonly log: { how: 'sync' | 'async' | 'flush'; position: number; length: number }[] = [];
  failSync: Error | null = null;

  override async write(data: Uint8Array, position: number): Promise<void> {
    this.log.push({ how: 'async', position, length: data.length });
    // A real write takes its time: anything not queued behind it could overtake it.
    await new Promise((resolve) => setImmediate(resolve));
    super.writeSync(data, position);
  }

  override async flush(): Promise<void> {
    this.log.push({ how: 'flush', position: 0, length: 0 });
  }

  override writeSync(data: Uint8Array, position: number): void {
    if (this.failSync) throw this.failSync;
    this.log.push({ how: 'sync', position, length: data.length });
    super.writeSync(data, position);
  }
}

/** A 16 MiB dynamic image with 1 MiB blocks whose blocks 0-3 are present, closed; reopened writable. */
async function imageWithData(): Promise<{ backend: SyncWriteBackend; image: VhdxImage }> {
  const backend = new SyncWriteBackend();
  await create(backend, { virtualSize: 16 * MiB, blockSize: MiB });
  const first = await VhdxImage.open(backend, { readOnly: false });
  await first.write(0, patternBytes(4 * MiB, 1));
  await first.close();
  backend.log.length = 0;
  return { backend, image: await VhdxImage.open(backend, { readOnly: false }) };
}

describe('small in-place writes', () => {
  test('go through writeSync once the session has begun, and read back', async () => {
    const { backend, image } = await imageWithData();
    await image.write(4096, patternBytes(4096, 2)); // the first change: header update first, queued
    backend.log.length = 0;
    const data = patternBytes(8192, 3);
    await image.write(MiB + 512, data);
    assert.deepEqual(backend.log.map((w) => [w.how, w.length]), [['sync', 8192]]);
    assert.deepEqual(await image.read(MiB + 512, data.length), data);
    await image.close();
    const again = await VhdxImage.open(backend);
    assert.deepEqual(await again.read(MiB + 512, data.length), data, 'durable after close');
    await again.close();
  });

  test('never precede the header update of the session (rule 1)', async () => {
    const { backend, image } = await imageWithData();
    await image.write(MiB, patternBytes(4096, 4));
    const payload = backend.log.findIndex((w) => w.position >= 4 * MiB);
    const header = backend.log.findIndex((w) => w.position === 64 * 1024 || w.position === 128 * 1024);
    assert.ok(header >= 0 && payload > header, `header written before the payload: ${JSON.stringify(backend.log)}`);
    await image.close();
  });

  test('issued behind a queued change, land after it', async () => {
    const { backend, image } = await imageWithData();
    await image.write(0, new Uint8Array(512)); // session begun
    backend.log.length = 0;
    // A large write (queued, asynchronous), then without waiting a small write into the same bytes.
    const big = image.write(0, patternBytes(2 * MiB, 5));
    const small = image.write(4096, patternBytes(4096, 6));
    await Promise.all([big, small]);
    assert.deepEqual(await image.read(4096, 4096), patternBytes(4096, 6), 'the later write wins');
    // And the small write waited in the queue rather than going synchronously ahead.
    const smallAt = backend.log.findIndex((w) => w.length === 4096);
    const bigAt = backend.log.findIndex((w) => w.length > 4096);
    assert.ok(bigAt >= 0 && smallAt > bigAt);
    await image.close();
  });

  test('skip queued writes to other bytes, but never a queued flush or discard', async () => {
    const { backend, image } = await imageWithData();
    await image.write(0, new Uint8Array(512));
    backend.log.length = 0;
    const big = image.write(0, patternBytes(2 * MiB, 10)); // queued, asynchronous
    const other = image.write(3 * MiB, patternBytes(4096, 11)); // block 3: overlaps nothing queued
    assert.deepEqual(backend.log[0], { how: 'sync', position: backend.log[0]!.position, length: 4096 }, 'written before the queued write');
    await Promise.all([big, other]);
    // Behind a flush, a write waits: a flush racing a write could miss it.
    backend.log.length = 0;
    const queued = image.write(0, patternBytes(2 * MiB, 12));
    const flush = image.flush();
    const after = image.write(3 * MiB + 8192, patternBytes(4096, 13));
    await Promise.all([queued, flush, after]);
    const flushAt = backend.log.findIndex((w) => w.how === 'flush');
    const smallAt = backend.log.findIndex((w) => w.length === 4096 && w.position > 4 * MiB);
    assert.ok(flushAt >= 0 && smallAt > flushAt, JSON.stringify(backend.log));
    // Behind a discard of its block, a write waits: the discard frees the block's space.
    backend.log.length = 0;
    const discard = image.discard(2 * MiB, MiB);
    const into = image.write(2 * MiB + 4096, patternBytes(4096, 14));
    await Promise.all([discard, into]);
    assert.deepEqual(await image.read(2 * MiB + 4096, 4096), patternBytes(4096, 14));
    assert.ok(backend.log.every((w) => w.how !== 'sync'), 'the write into the discarded block was queued');
    await image.close();
  });

  test('many writes issued at once, overlapping at random, land in the order they were issued', async () => {
    const { backend, image } = await imageWithData();
    await image.write(0, new Uint8Array(512));
    const random = rng(13);
    const model = await image.read(0, 4 * MiB);
    const writes: Promise<void>[] = [];
    for (let i = 0; i < 600; i++) {
      // Now and then a large write (queued) among the small ones, so the queue fills past the scan limit.
      const length = i % 50 === 0 ? 256 * 1024 : 1 + Math.floor(random() * 8192);
      const at = Math.floor(random() * (4 * MiB - length));
      const data = patternBytes(length, 100 + i);
      model.set(data, at);
      writes.push(image.write(at, data));
    }
    await Promise.all(writes);
    assert.ok(backend.log.some((w) => w.how === 'sync') && backend.log.some((w) => w.how === 'async'), 'both ways were taken');
    assert.ok(Buffer.from(await image.read(0, 4 * MiB)).equals(Buffer.from(model)));
    await image.close();
    const again = await VhdxImage.open(backend);
    assert.ok(Buffer.from(await again.read(0, 4 * MiB)).equals(Buffer.from(model)), 'and so after reopening');
    await again.close();
  });

  test('reject (never throw) on failure and on bad arguments; a read-only image refuses them', async () => {
    const { backend, image } = await imageWithData();
    await image.write(0, new Uint8Array(512));
    backend.failSync = new VhdxError('IO', 'no space left', { file: 'memory' });
    const failing = image.write(MiB, new Uint8Array(4096));
    await assert.rejects(failing, (e: unknown) => e instanceof VhdxError && e.code === 'IO');
    backend.failSync = null;
    await assert.rejects(image.write(16 * MiB - 100, new Uint8Array(4096)), (e: unknown) => e instanceof VhdxError && e.code === 'OUT_OF_RANGE');
    await assert.rejects(image.write(-4096, new Uint8Array(4096)), (e: unknown) => e instanceof VhdxError && e.code === 'OUT_OF_RANGE');
    await image.close();
    await assert.rejects(image.write(0, new Uint8Array(4096)), (e: unknown) => e instanceof VhdxError);
    const readOnly = await VhdxImage.open(backend, { readOnly: true });
    backend.log.length = 0;
    await assert.rejects(readOnly.write(0, new Uint8Array(4096)), (e: unknown) => e instanceof VhdxError && e.code === 'READ_ONLY');
    assert.equal(backend.log.length, 0, 'nothing written to a read-only image');
    await readOnly.close();
  });

  test('take the long way across blocks, into absent blocks, and when large', async () => {
    const { backend, image } = await imageWithData();
    await image.write(0, new Uint8Array(512));
    backend.log.length = 0;
    await image.write(MiB - 2048, patternBytes(4096, 7)); // spans blocks 0 and 1
    await image.write(8 * MiB, patternBytes(4096, 8)); // block 8 is absent: allocated
    await image.write(2 * MiB, patternBytes(512 * 1024, 9)); // larger than a small write
    assert.ok(backend.log.every((w) => w.how === 'async'), JSON.stringify(backend.log));
    assert.deepEqual(await image.read(MiB - 2048, 4096), patternBytes(4096, 7));
    assert.deepEqual(await image.read(8 * MiB, 4096), patternBytes(4096, 8));
    await image.close();
  });
});
