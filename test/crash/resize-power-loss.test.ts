/**
 * Resizing is crash-safe: growing (a dynamic image whose BAT must move to the end of the file, one whose
 * BAT grows where it is, a fixed image that gets new payload) and shrinking (dropping data with
 * `shrink`, a fixed image) each run on a backend that loses power before EVERY write, truncate and
 * flush, under both crash models. Every crash image must open, check clean or with leaks only, and be
 * exactly the disk before (old size, old content) or the disk after (new size, new content): never a
 * third state. Plus the refusals: a shrink over data without `shrink`, a differencing image.
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { MemoryBackend } from '../../src/io/memory.js';
import { PowerCut, PowerLossBackend, type CrashModel } from '../../src/io/power-loss.js';
import { VhdxImage } from '../../src/image/image.js';
import { check } from '../../src/ops/check.js';
import { create } from '../../src/ops/create.js';
import { resize, type ResizeOptions } from '../../src/ops/resize.js';
import { VhdxError } from '../../src/format/errors.js';
import { patternBytes } from '../helpers.js';
import { equal, rng } from '../model.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;
const SIZE = 10 * MiB;

interface DiskState {
  size: number;
  /** The first bytes of the disk; everything after them up to `size` reads as zeros. */
  content: Uint8Array;
  /** The image before: blocks allocated (a grow of a dynamic image allocates none). */
  allocatedBytes?: number | null;
}

async function makeImage(type: 'dynamic' | 'fixed', blocks: number[]): Promise<{ bytes: Uint8Array; content: Uint8Array; allocatedBytes: number | null }> {
  const backend = new MemoryBackend();
  await create(backend, { virtualSize: SIZE, type, blockSize: MiB });
  const image = await VhdxImage.open(backend, { readOnly: false });
  for (const block of blocks) await image.write(block * MiB + 512, patternBytes(MiB - 1024, block + 1));
  await image.close();
  const bytes = backend.contents().slice();
  const reader = await VhdxImage.open(new MemoryBackend(bytes.slice(), { readOnly: true }));
  const allocatedBytes = reader.info().allocatedBytes;
  await reader.close();
  return { bytes, content: await readAll(bytes, SIZE), allocatedBytes };
}

async function readAll(bytes: Uint8Array, length: number): Promise<Uint8Array> {
  const image = await VhdxImage.open(new MemoryBackend(bytes.slice(), { readOnly: true }));
  const data = await image.read(0, length);
  await image.close();
  return data;
}

/** Which of `states` the disk is in (its index), or a description of why it is neither. */
async function stateOf(disk: Uint8Array, states: DiskState[]): Promise<number | string> {
  const image = await VhdxImage.open(new MemoryBackend(disk.slice(), { readOnly: true }));
  try {
    const i = states.findIndex((s) => s.size === image.virtualSize);
    if (i < 0) return `virtual size ${image.virtualSize} is neither ${states.map((s) => s.size).join(' nor ')}`;
    const { size, content } = states[i]!;
    if (!equal(await image.read(0, content.length), content)) return `size ${size}: the first ${content.length} bytes differ`;
    if (size - content.length <= 64 * MiB) {
      if ((await image.read(content.length, size - content.length)).some((b) => b !== 0)) return `size ${size}: bytes after ${content.length} are not zeros`;
    } else {
      // Too large to read: no block may be allocated but the content's (a block past it would add to the count).
      const allocated = image.info().allocatedBytes;
      if (allocated !== states[0]!.allocatedBytes) return `size ${size}: ${allocated} bytes allocated, the content has ${states[0]!.allocatedBytes}`;
    }
    return i;
  } finally {
    await image.close();
  }
}

async function runCase(name: string, bytes: Uint8Array, size: number, options: ResizeOptions, states: [DiskState, DiskState], expectBat?: string): Promise<void> {
  const full = new PowerLossBackend(bytes, { name: 'full' });
  const report = await resize(full, size, options);
  if (expectBat) assert.equal(report.bat, expectBat, `${name}: BAT ${report.bat}`);
  assert.equal(await stateOf(full.contents().slice(), states), 1, `${name}: the completed resize`);
  const done = await check(new MemoryBackend(full.contents().slice(), { readOnly: true }));
  assert.equal(done.corruptions, 0, `${name}: completed: ${JSON.stringify(done.findings)}`);
  const total = full.operations;
  const seen = [0, 0];
  for (let cutAt = 0; cutAt < total; cutAt++) {
    const backend = new PowerLossBackend(bytes, { name: `cut-${cutAt}`, cutAt });
    await assert.rejects(resize(backend, size, options), PowerCut);
    for (const model of ['drop', 'reorder'] as CrashModel[]) {
      const where = `${name}: cut before operation ${cutAt} of ${total} (${model})`;
      const disk = await backend.crashImage(model, rng(cutAt * 977 + (model === 'drop' ? 1 : 2)));
      const report = await check(new MemoryBackend(disk.slice(), { readOnly: true }));
      assert.equal(report.corruptions, 0, `${where}: ${JSON.stringify(report.findings)}`);
      const state = await stateOf(disk, states);
      assert.equal(typeof state, 'number', `${where}: ${state}`);
      seen[state as number]!++;
    }
  }
  // Both sides of the commit point were reached: the cuts covered the whole operation.
  assert.ok(seen[0]! > 0 && seen[1]! > 0, `${name}: crash images before/after: ${seen.join('/')}`);
  console.log(`# resize (${name}): ${total} cut points; crash images in the old state ${seen[0]}, in the new ${seen[1]}; file ${report.fileSizeBefore} -> ${report.fileSizeAfter}`);
}

describe('power loss at every step of a resize', () => {
  test('grow a dynamic image past its BAT region: the BAT moves to the end of the file', async () => {
    const { bytes, content, allocatedBytes } = await makeImage('dynamic', [0, 3, 9]);
    await runCase('grow, BAT relocated', bytes, 130 * GiB, {}, [{ size: SIZE, content, allocatedBytes }, { size: 130 * GiB, content }], 'relocated');
  });

  test('grow an empty dynamic image past its BAT region: the BAT grows in place', async () => {
    const { bytes, content, allocatedBytes } = await makeImage('dynamic', []);
    await runCase('grow, BAT in place', bytes, 130 * GiB, {}, [{ size: SIZE, content, allocatedBytes }, { size: 130 * GiB, content }], 'grown-in-place');
  });

  test('grow a fixed image: new payload allocated', async () => {
    const { bytes, content } = await makeImage('fixed', [1, 9]);
    await runCase('grow fixed', bytes, 14 * MiB + 512 * 3, {}, [{ size: SIZE, content }, { size: 14 * MiB + 512 * 3, content }], 'unchanged');
  });

  test('shrink a dynamic image over data with shrink: the cut data is dropped and reported', async () => {
    const { bytes, content } = await makeImage('dynamic', [0, 5, 8, 9]);
    const size = 5 * MiB + 4096;
    await runCase('shrink dynamic', bytes, size, { shrink: true }, [{ size: SIZE, content }, { size, content: content.slice(0, size) }]);
    const report = await resize(new MemoryBackend(bytes.slice()), size, { shrink: true });
    // Reported per block: the part of each block with data that falls in the cut range.
    assert.deepEqual(report.lost, [
      { offset: size, length: 6 * MiB - size },
      { offset: 8 * MiB, length: 2 * MiB },
    ]);
  });

  test('shrink a fixed image', async () => {
    const { bytes, content } = await makeImage('fixed', [0, 2]);
    await runCase('shrink fixed', bytes, 6 * MiB, {}, [{ size: SIZE, content }, { size: 6 * MiB, content: content.slice(0, 6 * MiB) }]);
  });
});

describe('resize refusals and round trips', () => {
  test('a shrink over data without shrink is refused before anything is written', async () => {
    const { bytes } = await makeImage('dynamic', [0, 7]);
    const backend = new MemoryBackend(bytes.slice());
    await assert.rejects(resize(backend, 4 * MiB), (e: unknown) => e instanceof VhdxError && e.code === 'WOULD_LOSE_DATA' && /4194304/.test(e.message));
    assert.ok(equal(backend.contents(), bytes), 'the refused shrink wrote nothing');
  });

  test('a shrink over zeros needs no permission', async () => {
    const { bytes, content } = await makeImage('dynamic', [0, 1]);
    const backend = new MemoryBackend(bytes.slice());
    const report = await resize(backend, 3 * MiB);
    assert.deepEqual(report.lost, []);
    assert.ok(equal(await readAll(backend.contents(), 3 * MiB), content.slice(0, 3 * MiB)));
  });

  test('shrinking into a block and growing again: the bytes that were cut read as zeros', async () => {
    const { bytes, content } = await makeImage('dynamic', [0, 4]);
    const backend = new MemoryBackend(bytes.slice());
    await resize(backend, 4 * MiB + 65536, { shrink: true });
    await resize(backend, 8 * MiB);
    const expected = new Uint8Array(8 * MiB);
    expected.set(content.subarray(0, 4 * MiB + 65536));
    assert.ok(equal(await readAll(backend.contents(), 8 * MiB), expected));
    const report = await check(new MemoryBackend(backend.contents().slice(), { readOnly: true }));
    assert.equal(report.corruptions, 0, JSON.stringify(report.findings));
  });

  test('a differencing image is refused with UNSUPPORTED', async () => {
    const parentBackend = new MemoryBackend();
    await create(parentBackend, { virtualSize: SIZE, blockSize: MiB });
    const parent = await VhdxImage.open(new MemoryBackend(parentBackend.contents().slice(), { readOnly: true }));
    const child = new MemoryBackend();
    await create(child, { virtualSize: SIZE, parent: { image: parent, relativePath: 'p.vhdx', absolutePath: '/p.vhdx' } });
    await parent.close();
    await assert.rejects(resize(child, 2 * SIZE), (e: unknown) => e instanceof VhdxError && e.code === 'UNSUPPORTED');
  });
});
