/**
 * Compaction is crash-safe: a compaction that unmaps zero blocks and moves blocks down (full mode), one
 * that only reuses space already free (quick mode), and a fixed image converted to dynamic and
 * compacted, each run on a backend that loses power before EVERY write, truncate and flush (unflushed
 * writes dropped, or kept in part in any order, torn at 512-byte sectors). Every crash image must open,
 * check clean or with leaks only, and hold exactly the virtual disk it held before (compaction never
 * changes what a reader sees, so before and after are the same disk). A completed run must have moved
 * blocks and shrunk the file.
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { MemoryBackend } from '../../src/io/memory.js';
import { PowerCut, PowerLossBackend, type CrashModel } from '../../src/io/power-loss.js';
import { VhdxImage } from '../../src/image/image.js';
import { check } from '../../src/ops/check.js';
import { compact, type CompactOptions } from '../../src/ops/compact.js';
import { create } from '../../src/ops/create.js';
import { patternBytes } from '../helpers.js';
import { equal, rng } from '../model.js';

const MiB = 1024 * 1024;
const SIZE = 10 * MiB;

/**
 * A dynamic (or fixed) image of 1 MiB blocks: data in blocks 0, 2, 5, 7 and 9 (written in an order
 * that puts block 9 in the middle of the file), zeros written into blocks 3 and 8 (present but zero),
 * block 6 written and then discarded (free space inside the file).
 */
async function makeImage(type: 'dynamic' | 'fixed'): Promise<{ bytes: Uint8Array; content: Uint8Array }> {
  const backend = new MemoryBackend();
  await create(backend, { virtualSize: SIZE, type, blockSize: MiB });
  const image = await VhdxImage.open(backend, { readOnly: false });
  for (const [block, seed] of [[0, 1], [9, 2], [3, 0], [6, 3], [2, 4], [8, 0], [5, 5], [7, 6]] as const) {
    await image.write(block * MiB, seed === 0 ? new Uint8Array(MiB) : patternBytes(MiB - 4096 * block, seed));
  }
  await image.flush();
  await image.discard(6 * MiB, MiB);
  await image.close();
  const bytes = backend.contents().slice();
  const reader = await VhdxImage.open(new MemoryBackend(bytes.slice(), { readOnly: true }));
  const content = await reader.read(0, SIZE);
  await reader.close();
  return { bytes, content };
}

async function verify(disk: Uint8Array, content: Uint8Array, where: string): Promise<void> {
  const report = await check(new MemoryBackend(disk.slice(), { readOnly: true }));
  assert.equal(report.corruptions, 0, `${where}: ${JSON.stringify(report.findings)}`);
  const image = await VhdxImage.open(new MemoryBackend(disk.slice(), { readOnly: true }));
  assert.equal(image.virtualSize, SIZE, `${where}: virtual size`);
  assert.ok(equal(await image.read(0, SIZE), content), `${where}: the virtual disk changed`);
  await image.close();
}

const cases: { name: string; type: 'dynamic' | 'fixed'; options: CompactOptions; minMoves: number }[] = [
  { name: 'full mode: zero blocks unmapped, blocks moved down, tail cut', type: 'dynamic', options: { mode: 'full' }, minMoves: 2 },
  { name: 'quick mode: discarded space reused, tail cut', type: 'dynamic', options: { mode: 'quick' }, minMoves: 1 },
  { name: 'fixed image converted to dynamic, then compacted', type: 'fixed', options: { mode: 'full', toDynamic: true }, minMoves: 1 },
];

describe('power loss at every step of a compaction', () => {
  for (const c of cases) {
    test(c.name, async () => {
      const { bytes, content } = await makeImage(c.type);
      const full = new PowerLossBackend(bytes, { name: 'full' });
      const done = await compact(full, c.options);
      assert.ok(done.blocksMoved >= c.minMoves, `moved ${done.blocksMoved} blocks`);
      assert.ok(done.fileSizeAfter < done.fileSizeBefore, `file ${done.fileSizeBefore} -> ${done.fileSizeAfter}`);
      assert.equal(done.bytesReclaimed, done.fileSizeBefore - done.fileSizeAfter);
      await verify(full.contents().slice(), content, `${c.name}: completed`);
      const clean = await check(new MemoryBackend(full.contents().slice(), { readOnly: true }));
      assert.equal(clean.exitCode, 0, `${c.name}: a completed compaction leaves no leak: ${JSON.stringify(clean.findings)}`);
      const total = full.operations;
      let points = 0;
      for (let cutAt = 0; cutAt < total; cutAt++) {
        const backend = new PowerLossBackend(bytes, { name: `cut-${cutAt}`, cutAt });
        await assert.rejects(compact(backend, c.options), PowerCut);
        for (const model of ['drop', 'reorder'] as CrashModel[]) {
          const disk = await backend.crashImage(model, rng(cutAt * 131 + (model === 'drop' ? 1 : 2)));
          await verify(disk, content, `${c.name}: cut before operation ${cutAt} of ${total} (${model})`);
          points++;
        }
      }
      console.log(`# compact (${c.name}): ${total} cut points, ${points} crash images verified; ${done.blocksMoved} blocks moved, ${done.zeroBlocks} zero blocks, file ${done.fileSizeBefore} -> ${done.fileSizeAfter}`);
    });
  }
});

describe('compaction stopped and differencing children', () => {
  test('an abort between blocks keeps the moves made, closes the image clean, and a second run finishes', async () => {
    const { bytes, content } = await makeImage('dynamic');
    const backend = new MemoryBackend(bytes.slice());
    const controller = new AbortController();
    const reason = new Error('stop');
    let calls = 0;
    const stopping = compact(backend, { signal: controller.signal, onProgress: () => ++calls === 9 && controller.abort(reason) });
    await assert.rejects(stopping, (e: unknown) => e === reason);
    const stopped = await VhdxImage.open(new MemoryBackend(backend.contents().slice(), { readOnly: true }));
    assert.equal(stopped.info().logState, 'empty', 'closed clean');
    await stopped.close();
    await verify(backend.contents().slice(), content, 'after the abort');
    const finished = await compact(backend);
    assert.ok(finished.fileSizeAfter < bytes.length, `file ${bytes.length} -> ${finished.fileSizeAfter}`);
    await verify(backend.contents().slice(), content, 'after the second run');
  });

  test('a zero block of a differencing child still hides its parent after compaction, and a compacted parent keeps its children valid', async () => {
    const parentBackend = new MemoryBackend();
    await create(parentBackend, { virtualSize: 4 * MiB, blockSize: MiB });
    const parentWriter = await VhdxImage.open(parentBackend, { readOnly: false });
    await parentWriter.write(0, new Uint8Array(3 * MiB).fill(0x5a));
    await parentWriter.write(3 * MiB, new Uint8Array(MiB)); // a zero block the parent's compaction unmaps
    await parentWriter.close();
    const parent = await VhdxImage.open(new MemoryBackend(parentBackend.contents().slice(), { readOnly: true }));
    const childBackend = new MemoryBackend();
    await create(childBackend, { virtualSize: 4 * MiB, blockSize: MiB, parent: { image: parent, relativePath: 'p.vhdx', absolutePath: '/p.vhdx' } });
    const child = await VhdxImage.open(childBackend, { readOnly: false, parent });
    await child.write(MiB, new Uint8Array(MiB)); // a whole block of zeros over the parent's 0x5a
    await child.write(2 * MiB, new Uint8Array(MiB).fill(1));
    await child.close();
    const report = await compact(childBackend);
    assert.equal(report.type, 'differencing');
    assert.equal(report.zeroBlocks, 1);
    await parent.close();
    // Compacting the parent keeps its DataWriteGuid: the child still accepts it (the open checks the linkage).
    assert.equal((await compact(parentBackend)).zeroBlocks, 1);
    const compacted = await VhdxImage.open(new MemoryBackend(parentBackend.contents().slice(), { readOnly: true }));
    const reader = await VhdxImage.open(new MemoryBackend(childBackend.contents().slice(), { readOnly: true }), { parent: compacted });
    const seen = await reader.read(0, 4 * MiB);
    const expected = new Uint8Array(4 * MiB).fill(0x5a);
    expected.fill(0, MiB, 2 * MiB);
    expected.fill(1, 2 * MiB, 3 * MiB);
    expected.fill(0, 3 * MiB);
    assert.ok(equal(seen, expected), 'the child reads its zeros, its data and the parent elsewhere');
    await reader.close();
    await compacted.close();
  });
});
