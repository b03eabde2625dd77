/**
 * BlobBackend: an image made by `create` and written through the library, copied into a Node 20 global
 * `Blob`, must open through the blob backend and read exactly as the memory backend it came from, at
 * any offset and length (piece boundaries, the cache bypass for long reads, the end of the blob), and
 * must refuse every write.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { VhdxError } from '../../src/format/errors.js';
import { VhdxImage } from '../../src/image/image.js';
import { BlobBackend } from '../../src/io/blob.js';
import { MemoryBackend } from '../../src/io/memory.js';
import { check } from '../../src/ops/check.js';
import { create } from '../../src/ops/create.js';
import { patternBytes } from '../helpers.js';

const MiB = 1024 * 1024;

/** A 64 MiB dynamic image with 1 MiB blocks and data in a few of them, as bytes. */
async function sampleImage(): Promise<{ bytes: Uint8Array; writes: { offset: number; data: Uint8Array }[] }> {
  const memory = new MemoryBackend();
  await create(memory, { virtualSize: 64 * MiB, blockSize: MiB });
  const image = await VhdxImage.open(memory, { readOnly: false });
  const writes = [
    { offset: 0, data: patternBytes(4096, 1) },
    { offset: 5 * MiB - 1000, data: patternBytes(3000, 2) },
    { offset: 40 * MiB + 12345, data: patternBytes(2 * MiB + 7, 3) },
    { offset: 64 * MiB - 512, data: patternBytes(512, 4) },
  ];
  for (const w of writes) await image.write(w.offset, w.data);
  await image.close();
  return { bytes: memory.contents().slice(), writes };
}

function blobOf(bytes: Uint8Array): Blob {
  return new Blob([bytes]);
}

describe('BlobBackend', () => {
  test('raw reads match the bytes at every kind of position, short only at the end', async () => {
    const bytes = patternBytes(5 * MiB + 333, 9);
    const backend = new BlobBackend(blobOf(bytes), { cacheBytes: 2 * MiB });
    assert.equal(await backend.size(), bytes.length);
    const cases: [number, number][] = [
      [0, 1],
      [0, 4096],
      [MiB - 10, 20], // across a piece boundary
      [3 * MiB - 1, MiB + 2], // three pieces
      [MiB / 2, 4 * MiB + 100], // more pieces than are cached: straight from the blob
      [5 * MiB, 333],
      [5 * MiB + 300, 100], // short at the end
      [5 * MiB + 333, 10], // at the end
      [6 * MiB, 10], // past it
    ];
    for (const [position, length] of cases) {
      const target = new Uint8Array(length).fill(0xee);
      const n = await backend.read(target, position);
      const expected = bytes.subarray(Math.min(position, bytes.length), Math.min(position + length, bytes.length));
      assert.equal(n, expected.length, `read of ${length} at ${position}`);
      assert.deepEqual(target.subarray(0, n), expected, `bytes of ${length} at ${position}`);
    }
    // Cached pieces are reused, and the cache stays bounded.
    const before = backend.stats.blobReads;
    await backend.read(new Uint8Array(16), 5 * MiB + 1);
    assert.equal(backend.stats.blobReads, before, 'the last piece was still cached');
    await backend.close();
  });

  test('an image opens through a Blob and reads as through the memory backend', async () => {
    const { bytes, writes } = await sampleImage();
    const memory = await VhdxImage.open(new MemoryBackend(bytes, { readOnly: true }));
    const backend = new BlobBackend(blobOf(bytes), { name: 'sample.vhdx' });
    const image = await VhdxImage.open(backend);
    assert.equal(image.readOnly, true);
    assert.equal(backend.name, 'sample.vhdx');
    const { fileWriteGuid, dataWriteGuid, ...blobInfo } = image.info();
    const { fileWriteGuid: f2, dataWriteGuid: d2, ...memoryInfo } = memory.info();
    assert.deepEqual(blobInfo, memoryInfo);
    assert.equal(fileWriteGuid, f2);
    assert.equal(dataWriteGuid, d2);
    assert.deepEqual((await image.extents()), (await memory.extents()));
    for (const w of writes) {
      for (const [offset, length] of [
        [w.offset, w.data.length],
        [Math.max(0, w.offset - 700), Math.min(w.data.length + 1400, 64 * MiB - Math.max(0, w.offset - 700))],
      ] as [number, number][]) {
        assert.deepEqual(await image.read(offset, length), await memory.read(offset, length), `virtual read of ${length} at ${offset}`);
      }
      assert.deepEqual(await image.read(w.offset, w.data.length), w.data);
    }
    // The whole disk, chunk by chunk.
    let offset = 0;
    for await (const chunk of image.chunks({ chunkSize: 3 * MiB })) {
      assert.deepEqual(chunk, await memory.read(offset, chunk.length), `chunk at ${offset}`);
      offset += chunk.length;
    }
    assert.equal(offset, 64 * MiB);
    // The check of the library runs on it and agrees with the memory backend's.
    const viaBlob = await check(new BlobBackend(blobOf(bytes)));
    const viaMemory = await check(new MemoryBackend(bytes, { readOnly: true }));
    assert.deepEqual({ ...viaBlob, file: '' }, { ...viaMemory, file: '' });
    assert.equal(viaBlob.verdict, 'clean');
    await image.close();
  });

  test('is read-only: write and truncate throw READ_ONLY, a writable open is refused', async () => {
    const { bytes } = await sampleImage();
    const backend = new BlobBackend(blobOf(bytes));
    assert.equal(backend.readOnly, true);
    const readOnly = (e: unknown): boolean => e instanceof VhdxError && e.code === 'READ_ONLY';
    await assert.rejects(backend.write(new Uint8Array(1), 0), readOnly);
    await assert.rejects(backend.truncate(0), readOnly);
    await backend.flush();
    const image = await VhdxImage.open(backend);
    await assert.rejects(image.write(0, new Uint8Array(512)), readOnly);
    await assert.rejects(check(new BlobBackend(blobOf(bytes)), { repair: true }), readOnly);
  });

  test('uses the name of a File, and reports a failed read as IO', async () => {
    const file = new File([new Uint8Array(10)], 'disk.vhdx');
    assert.equal(new BlobBackend(file).name, 'disk.vhdx');
    assert.equal(new BlobBackend(new Blob([])).name, 'blob');
    const failing = new Blob([new Uint8Array(10)]);
    failing.slice = () => ({ arrayBuffer: () => Promise.reject(new Error('gone')) }) as unknown as Blob;
    const backend = new BlobBackend(failing);
    await assert.rejects(backend.read(new Uint8Array(4), 0), (e: unknown) => e instanceof VhdxError && e.code === 'IO' && /gone/.test(e.message));
    // Not cached: the next read tries again.
    failing.slice = Blob.prototype.slice.bind(failing);
    assert.equal(await backend.read(new Uint8Array(4), 0), 4);
  });
});
