/**
 * convertToRaw's kernel-copy path (`Backend.copyFrom`, 32 MiB pieces): a backend that copies only part
 * of what it is asked, or nothing, leaves the rest of the extent to be read and written, and the output
 * is still the whole disk; a copy that fails fails the conversion.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { Backend } from '../../src/io/backend.js';
import { MemoryBackend } from '../../src/io/memory.js';
import { VhdxImage } from '../../src/image/image.js';
import { create } from '../../src/ops/create.js';
import { convertToRaw } from '../../src/ops/convert.js';
import { tiledBytes } from '../helpers.js';

const MiB = 1024 * 1024;

/** A memory backend whose copyFrom copies `share` of each request (0 to 1) from another memory backend, or fails. */
class CopyingBackend extends MemoryBackend {
  calls = 0;
  constructor(private readonly share: number | 'fail') {
    super();
  }
  async copyFrom(source: Backend, sourcePosition: number, position: number, length: number): Promise<number> {
    this.calls++;
    if (this.share === 'fail') throw new Error('copy failed');
    const n = Math.floor((length * this.share) / 512) * 512;
    const data = new Uint8Array(n);
    await source.read(data, sourcePosition);
    await this.write(data, position);
    return n;
  }
}

async function imageWithData(): Promise<{ image: VhdxImage; expected: Uint8Array }> {
  const backend = new MemoryBackend();
  await create(backend, { virtualSize: 200 * MiB, blockSize: 32 * MiB });
  const image = await VhdxImage.open(backend, { readOnly: false });
  await image.write(MiB, tiledBytes(100 * MiB, 1)); // several 32 MiB kernel-copy pieces
  await image.write(150 * MiB + 3, tiledBytes(5000, 2));
  await image.flush();
  return { image, expected: await image.read(0, image.virtualSize) };
}

describe('convertToRaw with kernel copies', () => {
  for (const share of [1, 0.5, 0] as const) {
    test(`copyFrom copying ${share * 100}% of each piece`, async () => {
      const { image, expected } = await imageWithData();
      const out = new CopyingBackend(share);
      let last = 0;
      await convertToRaw(image, { kind: 'file', backend: out }, { onProgress: (done) => (last = done) });
      // Whole copies go piece after piece; a short one hands the rest of its extent to reads and writes.
      assert.ok(share === 1 ? out.calls >= 4 : out.calls >= 1, `kernel copies asked: ${out.calls}`);
      assert.equal(last, image.virtualSize, 'progress reaches the whole disk');
      assert.ok(Buffer.from(out.contents()).equals(Buffer.from(expected)));
      await image.close();
    });
  }

  test('a failing kernel copy fails the conversion', async () => {
    const { image } = await imageWithData();
    await assert.rejects(convertToRaw(image, { kind: 'file', backend: new CopyingBackend('fail') }), /copy failed/);
    await image.close();
  });
});
