/**
 * Power loss on differencing disks, with the guarantees of the write issue:
 *  - copy-on-write into a child (unaligned writes into blocks the parent holds, bitmap allocation,
 *    writes into half-present blocks, whole-block and partial zeroing that must hide the parent, a
 *    reopen): power is cut before EVERY write, truncate and flush; the crash image opens over the
 *    parent, every 512-byte unit reads its flushed content or something written since, and a writable
 *    open replays to the same content;
 *  - merging the child into its parent: power is cut before every operation on the parent; at every
 *    instant the chain (crashed child over crashed parent) reads exactly as before the merge, and
 *    merging again finishes it.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBackend } from '../../src/io/memory.js';
import { PowerCut, PowerLossBackend, type CrashModel } from '../../src/io/power-loss.js';
import { create } from '../../src/ops/create.js';
import { check } from '../../src/ops/check.js';
import { mergeIntoParent } from '../../src/ops/merge.js';
import { VhdxImage } from '../../src/image/image.js';
import { DiskModel, applyOp, equal, rng, runUntilCut, type Op } from '../model.js';
import { patternBytes } from '../helpers.js';

const MiB = 1024 * 1024;
const SIZE = 8 * MiB;

async function makeParent(logicalSectorSize: 512 | 4096): Promise<{ bytes: Uint8Array; content: Uint8Array }> {
  const backend = new MemoryBackend();
  await create(backend, { virtualSize: SIZE, blockSize: MiB, logicalSectorSize });
  const image = await VhdxImage.open(backend, { readOnly: false });
  const content = new Uint8Array(SIZE);
  for (const [offset, length, seed] of [[0, 3 * MiB, 11], [5 * MiB + 4096, MiB, 12]] as const) {
    const data = patternBytes(length, seed);
    await image.write(offset, data);
    content.set(data, offset);
  }
  await image.close();
  return { bytes: backend.contents().slice(), content };
}

function workload(sector: number): Op[] {
  let seed = 100;
  const data = (n: number): Uint8Array => patternBytes(n, seed++);
  return [
    { kind: 'write', offset: 100, data: data(3000) }, // unaligned, into a block the parent holds: COW edges from the parent
    { kind: 'write', offset: 2 * MiB - 10 * sector, data: data(20 * sector) }, // spans blocks 1 and 2
    { kind: 'flush' },
    { kind: 'write', offset: 50, data: data(sector) }, // into the half-present block: in place, more bits
    { kind: 'write', offset: 4 * MiB + 7, data: data(5000) }, // a block neither layer holds
    { kind: 'writeZeroes', offset: 5 * MiB, length: MiB }, // whole block: ZERO, hides the parent
    { kind: 'discard', offset: 6 * MiB + 512, length: 4096 }, // partial: zero sectors written over the parent's data
    { kind: 'flush' },
    { kind: 'write', offset: 7 * MiB, data: data(MiB) }, // a whole block
    { kind: 'reopen' },
    { kind: 'write', offset: SIZE - sector, data: data(sector) },
  ];
}

function childModel(parent: Uint8Array): DiskModel {
  const model = new DiskModel(SIZE);
  model.current = parent.slice();
  model.committed = parent.slice();
  return model;
}

describe('power loss on differencing disks', () => {
  for (const logicalSectorSize of [512, 4096] as const) {
    test(`copy-on-write into a child, ${logicalSectorSize}-byte sectors`, async () => {
      const { bytes: parentBytes, content } = await makeParent(logicalSectorSize);
      const parent = await VhdxImage.open(new MemoryBackend(parentBytes, { readOnly: true }));
      const fresh = new MemoryBackend();
      await create(fresh, { virtualSize: SIZE, blockSize: MiB, parent: { image: parent, relativePath: 'p', absolutePath: '/p' } });
      const initial = fresh.contents().slice();
      const ops = workload(logicalSectorSize);
      const run = (cutAt: number): ReturnType<typeof runUntilCut> => runUntilCut(initial, ops, SIZE, cutAt, false, { open: { parent }, content });
      const total = (await run(Infinity)).backend.operations;
      let points = 0;
      for (let cutAt = 0; cutAt <= total; cutAt++) {
        const { backend, model, completed } = await run(cutAt);
        assert.equal(completed, cutAt === total);
        for (const crashModel of ['drop', 'reorder'] as CrashModel[]) {
          const disk = await backend.crashImage(crashModel, rng(cutAt * 131 + (crashModel === 'drop' ? 1 : 2)));
          const where = `cut before operation ${cutAt} of ${total} (${crashModel})`;
          const report = await check(new MemoryBackend(disk.slice(), { readOnly: true }));
          assert.equal(report.corruptions, 0, `${where}: ${JSON.stringify(report.findings)}`);
          const readOnly = await VhdxImage.open(new MemoryBackend(disk.slice(), { readOnly: true }), { parent });
          const problem = model.checkCrashed(await readOnly.read(0, SIZE));
          assert.equal(problem, null, `${where}: ${problem}`);
          const seen = await readOnly.read(0, SIZE);
          await readOnly.close();
          const writableBackend = new MemoryBackend(disk.slice());
          const writable = await VhdxImage.open(writableBackend, { readOnly: false, parent });
          assert.ok(equal(await writable.read(0, SIZE), seen), `${where}: replay to the file changed the content`);
          await writable.close();
          points++;
        }
      }
      console.log(`# differencing COW ${logicalSectorSize}: ${total + 1} cut points, ${points} crash images verified`);
    });
  }

  test('merging a child into its parent', async () => {
    const { bytes: parentBytes, content } = await makeParent(512);
    const frozen = await VhdxImage.open(new MemoryBackend(parentBytes.slice(), { readOnly: true }));
    const childBackend = new MemoryBackend();
    await create(childBackend, { virtualSize: SIZE, blockSize: 2 * MiB, parent: { image: frozen, relativePath: 'p', absolutePath: '/p' } });
    const model = childModel(content);
    const reopen = (): Promise<VhdxImage> => VhdxImage.open(childBackend, { readOnly: false, parent: frozen });
    let writer = await reopen();
    for (const op of workload(512)) {
      model.issue(op);
      writer = await applyOp(writer, op, reopen);
    }
    await writer.close();
    const expected = model.current;
    const childBytes = childBackend.contents().slice();

    const attempt = async (cutAt: number): Promise<{ parent: PowerLossBackend; child: MemoryBackend; completed: boolean }> => {
      const parentBackend = new PowerLossBackend(parentBytes, { cutAt });
      const child = new MemoryBackend(childBytes.slice());
      try {
        const parentImage = await VhdxImage.open(parentBackend, { readOnly: false });
        const childImage = await VhdxImage.open(child, { readOnly: false, parent: parentImage });
        await mergeIntoParent(childImage);
        await childImage.close();
        await parentImage.close();
        return { parent: parentBackend, child, completed: true };
      } catch (error) {
        if (!(error instanceof PowerCut)) throw error;
        return { parent: parentBackend, child, completed: false };
      }
    };
    const total = (await attempt(Infinity)).parent.operations;
    assert.ok(total > 10, `the merge performs ${total} operations on the parent`);
    let points = 0;
    for (let cutAt = 0; cutAt <= total; cutAt++) {
      const { parent, child, completed } = await attempt(cutAt);
      assert.equal(completed, cutAt === total);
      for (const crashModel of ['drop', 'reorder'] as CrashModel[]) {
        const disk = await parent.crashImage(crashModel, rng(cutAt * 17 + (crashModel === 'drop' ? 1 : 2)));
        const where = `merge cut before parent operation ${cutAt} of ${total} (${crashModel})`;
        // The chain reads exactly as before the merge.
        const p = await VhdxImage.open(new MemoryBackend(disk.slice(), { readOnly: true }));
        const c = await VhdxImage.open(new MemoryBackend(child.contents().slice(), { readOnly: true }), { parent: p });
        assert.ok(equal(await c.read(0, SIZE), expected), `${where}: the chain does not read as before the merge`);
        await c.close();
        await p.close();
        // A second merge may be cut too: the chain still opens (the linkage follows the parent) and reads the same.
        const secondCut = new PowerLossBackend(disk.slice(), { cutAt: (cutAt % 7) + 1 });
        const secondChild = new MemoryBackend(child.contents().slice());
        try {
          const p1 = await VhdxImage.open(secondCut, { readOnly: false });
          await mergeIntoParent(await VhdxImage.open(secondChild, { readOnly: false, parent: p1 }));
        } catch (error) {
          if (!(error instanceof PowerCut)) throw error;
        }
        const p3 = await VhdxImage.open(new MemoryBackend(await secondCut.crashImage('drop', rng(cutAt)), { readOnly: true }));
        const c3 = await VhdxImage.open(new MemoryBackend(secondChild.contents().slice(), { readOnly: true }), { parent: p3 });
        assert.ok(equal(await c3.read(0, SIZE), expected), `${where}, then a second merge cut: the chain does not read as before`);
        await c3.close();
        await p3.close();
        // Merging again finishes the job: the parent alone then reads as the chain did.
        const again = new MemoryBackend(disk.slice());
        const p2 = await VhdxImage.open(again, { readOnly: false });
        const c2 = await VhdxImage.open(new MemoryBackend(child.contents().slice()), { readOnly: false, parent: p2 });
        await mergeIntoParent(c2);
        assert.ok(equal(await p2.read(0, SIZE), expected), `${where}: the parent after a second merge differs`);
        await c2.close();
        await p2.close();
        points++;
      }
    }
    console.log(`# merge: ${total + 1} cut points, ${points} crash images verified`);
  });
});
