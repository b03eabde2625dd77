/**
 * A BAT read a page at a time (`batCacheBytes` smaller than the table) must behave exactly as one read
 * whole: the same extents, read plans and bytes, the same typed errors for bad entries (at first use
 * instead of at open), and memory bounded by the cache whatever is walked.
 *
 * The images are 2 GiB with 1 MiB blocks: 2048 entries, a 16 KiB BAT, four pages of 4 KiB with a
 * one-page cache (`batCacheBytes: 4096`).
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { encodeBatEntry, PAYLOAD_BLOCK_FULLY_PRESENT, payloadEntryIndex } from '../../src/format/bat.js';
import { MemoryBackend } from '../../src/io/memory.js';
import { create } from '../../src/ops/create.js';
import { VhdxImage } from '../../src/image/image.js';
import { openLayout } from '../../src/image/open.js';
import { patternBytes } from '../helpers.js';
import { VhdxError } from '../../src/format/errors.js';
import { equal } from '../model.js';

const MiB = 1024 * 1024;
const SIZE = 2048 * MiB;
const ONE_PAGE = { batCacheBytes: 4096 };

async function fresh(): Promise<Uint8Array> {
  const backend = new MemoryBackend();
  await create(backend, { virtualSize: SIZE, type: 'dynamic', blockSize: MiB, logicalSectorSize: 512 });
  return backend.contents().slice();
}

/** `promise` rejects with a VhdxError of `code`. */
async function rejectsWith(promise: Promise<unknown>, code: string): Promise<void> {
  await assert.rejects(promise, (e: unknown) => e instanceof VhdxError && e.code === code);
}

function pages(image: VhdxImage): { residentPages: number; isResident: boolean; pagesRead: number } {
  return (image as unknown as { layout: { bat: { residentPages: number; isResident: boolean; pagesRead: number } } }).layout.bat;
}

type Step = { kind: 'write'; at: number; length: number; seed: number } | { kind: 'discard'; block: number } | { kind: 'flush' };

const stepArb: fc.Arbitrary<Step> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant('write' as const), at: fc.integer({ min: 0, max: SIZE - 9000 }), length: fc.integer({ min: 1, max: 9000 }), seed: fc.nat() }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('discard' as const), block: fc.integer({ min: 0, max: 2047 }) }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'flush' as const }) },
);

/** What the steps leave: the content of every block that holds data (the rest reads as zeros). */
function modelOf(steps: Step[]): Map<number, Uint8Array> {
  const blocks = new Map<number, Uint8Array>();
  for (const s of steps) {
    if (s.kind === 'discard') blocks.delete(s.block);
    if (s.kind !== 'write') continue;
    const data = patternBytes(s.length, s.seed);
    for (let at = s.at; at < s.at + s.length; ) {
      const block = Math.floor(at / MiB);
      const n = Math.min((block + 1) * MiB, s.at + s.length) - at;
      if (!blocks.has(block)) blocks.set(block, new Uint8Array(MiB));
      blocks.get(block)!.set(data.subarray(at - s.at, at - s.at + n), at - block * MiB);
      at += n;
    }
  }
  return blocks;
}

function modelBytes(blocks: Map<number, Uint8Array>, at: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let pos = at; pos < at + length; ) {
    const block = Math.floor(pos / MiB);
    const n = Math.min((block + 1) * MiB, at + length) - pos;
    const content = blocks.get(block);
    if (content) out.set(content.subarray(pos - block * MiB, pos - block * MiB + n), pos - at);
    pos += n;
  }
  return out;
}

async function apply(image: VhdxImage, steps: Step[]): Promise<void> {
  for (const s of steps) {
    if (s.kind === 'write') await image.write(s.at, patternBytes(s.length, s.seed));
    else if (s.kind === 'discard') await image.discard(s.block * MiB, MiB);
    else await image.flush();
  }
}

describe('a BAT read a page at a time', () => {
  test('writes, extents, read plans and reads agree with a BAT read whole (property)', async () => {
    const initial = await fresh();
    await fc.assert(
      fc.asyncProperty(fc.array(stepArb, { minLength: 1, maxLength: 25 }), fc.array(fc.integer({ min: 0, max: SIZE - 1 }), { minLength: 5, maxLength: 5 }), async (steps, probes) => {
        // The same steps through a one-page cache and through the default (the whole table in memory).
        const lazyFile = new MemoryBackend(initial.slice());
        const wholeFile = new MemoryBackend(initial.slice());
        const lazy = await VhdxImage.open(lazyFile, { readOnly: false, ...ONE_PAGE });
        const whole = await VhdxImage.open(wholeFile, { readOnly: false });
        assert.equal(pages(lazy).isResident, false);
        assert.equal(pages(whole).isResident, true);
        await apply(lazy, steps);
        await apply(whole, steps);
        assert.deepEqual(await lazy.extents(), await whole.extents(), 'extents while writing');
        await lazy.close();
        await whole.close();
        // Reopened read-only: nothing of the BAT is read until used.
        const a = await VhdxImage.open(new MemoryBackend(lazyFile.contents().slice(), { readOnly: true }), ONE_PAGE);
        const b = await VhdxImage.open(new MemoryBackend(wholeFile.contents().slice(), { readOnly: true }));
        assert.equal(pages(a).pagesRead, 0, 'a read-only open reads no BAT page');
        assert.equal(a.info().allocatedBytes, null);
        assert.equal(typeof b.info().allocatedBytes, 'number');
        const walked = [];
        for await (const e of a.walk()) walked.push(e);
        assert.deepEqual(walked, await b.extents(), 'walk');
        // And both agree with the model: data exactly where blocks were written and not discarded.
        const model = modelOf(steps);
        for (const e of walked) {
          for (let block = e.offset / MiB; block < (e.offset + e.length) / MiB; block++) {
            assert.equal(e.kind === 'data', model.has(block), `block ${block} is ${e.kind} in the map`);
          }
        }
        assert.ok(pages(a).residentPages <= 1, `${pages(a).residentPages} pages resident after a walk`);
        for (const at of probes) {
          const length = Math.min(3 * MiB + 17, SIZE - at);
          assert.deepEqual(await a.extents(at, length), await b.extents(at, length), `extents at ${at}`);
          const planA = (await a.readPlan(at, length)).map(({ offset, length: n, kind }) => [offset, n, kind]);
          const planB = (await b.readPlan(at, length)).map(({ offset, length: n, kind }) => [offset, n, kind]);
          assert.deepEqual(planA, planB, `read plan at ${at}`);
          const got = await a.read(at, length);
          assert.ok(equal(got, await b.read(at, length)), `bytes at ${at}`);
          assert.ok(equal(got, modelBytes(model, at, length)), `bytes at ${at} against the model`);
          const small = Math.min(4096, SIZE - at);
          const sync = a.extentsIfResident(at, small);
          if (sync) assert.deepEqual(sync, await b.extents(at, small));
        }
        await a.close();
        await b.close();
      }),
      { numRuns: 25 },
    );
  });

  test('a differencing chain with one-page caches reads as with whole tables', async () => {
    const parentFile = new MemoryBackend(await fresh());
    const parentWriter = await VhdxImage.open(parentFile, { readOnly: false });
    for (let i = 0; i < 8; i++) await parentWriter.write(i * 260 * MiB + 1000, patternBytes(5000, i));
    await parentWriter.close();
    const parentBytes = parentFile.contents().slice();
    const childFile = new MemoryBackend();
    const parent = await VhdxImage.open(new MemoryBackend(parentBytes.slice(), { readOnly: true }));
    await create(childFile, { virtualSize: SIZE, blockSize: MiB, logicalSectorSize: 512, parent: { image: parent, relativePath: 'parent.vhdx', absolutePath: '/parent.vhdx' } });
    await parent.close();
    const child = await VhdxImage.open(childFile, { readOnly: false, ignoreParentLinkage: true, ...ONE_PAGE, parent: await VhdxImage.open(new MemoryBackend(parentBytes.slice(), { readOnly: true }), ONE_PAGE) });
    for (let i = 0; i < 8; i++) await child.write(i * 250 * MiB + 700, patternBytes(3000, 100 + i)); // copy-on-write, partly over the parent's data
    await child.close();
    const open = async (options: object): Promise<VhdxImage> =>
      VhdxImage.open(new MemoryBackend(childFile.contents().slice(), { readOnly: true }), { ...options, ignoreParentLinkage: true, parent: await VhdxImage.open(new MemoryBackend(parentBytes.slice(), { readOnly: true }), options) });
    const a = await open(ONE_PAGE);
    const b = await open({});
    assert.deepEqual(await a.resolvedExtents(), await b.resolvedExtents());
    for (let i = 0; i < 8; i++) {
      const at = i * 250 * MiB;
      assert.ok(equal(await a.read(at, 12000), await b.read(at, 12000)), `bytes at ${at}`);
    }
    await a.close();
    await b.close();
  });

  test('a bad entry is refused with the same typed error, at open when read whole and at first use when paged', async () => {
    const bytes = await fresh();
    const layout = await openLayout(new MemoryBackend(bytes.slice(), { readOnly: true }));
    // Block 1500 (page 2 of the table) points into the BAT region itself.
    const index = payloadEntryIndex(1500, layout.geometry.chunkRatio);
    const entry = new Uint8Array(8);
    encodeBatEntry(entry, 0, PAYLOAD_BLOCK_FULLY_PRESENT, layout.batRegion.fileOffset);
    bytes.set(entry, layout.batRegion.fileOffset + index * 8);
    await rejectsWith(VhdxImage.open(new MemoryBackend(bytes.slice(), { readOnly: true })), 'OVERLAP');
    const paged = await VhdxImage.open(new MemoryBackend(bytes.slice(), { readOnly: true }), ONE_PAGE);
    assert.equal((await paged.read(0, 4096)).length, 4096, 'pages without the bad entry read');
    await rejectsWith(paged.read(1500 * MiB, 4096), 'OVERLAP');
    await rejectsWith(paged.extents(), 'OVERLAP');
    await paged.close();
    // A writable open scans the whole table first: refused at open, as before.
    await rejectsWith(VhdxImage.open(new MemoryBackend(bytes.slice()), { readOnly: false, ...ONE_PAGE }), 'OVERLAP');
  });

  test('used ranges are known when the whole table was judged, and refused (UNSUPPORTED) when it was not', async () => {
    const bytes = await fresh();
    const writable = await VhdxImage.open(new MemoryBackend(bytes.slice()), { readOnly: false, ...ONE_PAGE });
    assert.equal(writable.usedRanges()[0]!.start, 0);
    await writable.close();
    const paged = await VhdxImage.open(new MemoryBackend(bytes.slice(), { readOnly: true }), ONE_PAGE);
    assert.throws(() => paged.usedRanges(), (e: unknown) => (e as { code?: string }).code === 'UNSUPPORTED');
    await paged.close();
  });
});
