/**
 * Power-loss simulation (write issue acceptance): a scripted workload is cut at EVERY operation index
 * (write, truncate, flush), under two crash models, then the disk is reopened: it must open (replaying
 * its log), hold no BAT entry past EOF or overlapping anything (the open validates both), read back
 * every byte flushed before the cut exactly, and every other 512-byte unit as old or new content.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBackend } from '../../src/io/memory.js';
import type { CrashModel } from '../../src/io/power-loss.js';
import { create } from '../../src/ops/create.js';
import { check } from '../../src/ops/check.js';
import { VhdxImage } from '../../src/image/image.js';
import { DiskModel, equal, rng, runUntilCut, type Op } from '../model.js';
import { patternBytes } from '../helpers.js';

const MiB = 1024 * 1024;

function workload(size: number, sector: number): Op[] {
  let seed = 1;
  const data = (n: number): Uint8Array => patternBytes(n, seed++);
  const ops: Op[] = [
    { kind: 'write', offset: 100, data: data(3000) }, // allocating, unaligned
    { kind: 'write', offset: 3 * MiB - 10 * sector, data: data(20 * sector) }, // spans blocks 2 and 3
    { kind: 'flush' },
    { kind: 'write', offset: 50, data: data(sector) }, // overwrite in place
    { kind: 'write', offset: 5 * MiB + 7, data: data(MiB) }, // spans blocks 5 and 6
    { kind: 'discard', offset: 2 * MiB, length: MiB }, // whole block 2 -> unmapped, space released
    { kind: 'flush' },
    { kind: 'write', offset: 2 * MiB + 4096, data: data(8192) }, // block 2 again: reuses released space
    { kind: 'writeZeroes', offset: 3 * MiB, length: MiB }, // whole block 3 -> zero
    { kind: 'discard', offset: 5 * MiB + 512, length: 4096 }, // partial: zero-filled in place
    { kind: 'flush' },
  ];
  for (let i = 0; i < 6; i++) ops.push({ kind: 'write', offset: ((7 + i) % (size / MiB)) * MiB + i * 1000, data: data(5000) });
  ops.push({ kind: 'flush' }, { kind: 'write', offset: 0, data: data(2 * sector) }, { kind: 'reopen' }, { kind: 'write', offset: size - sector, data: data(sector) });
  return ops;
}

async function verifyCrash(disk: Uint8Array, model: DiskModel, where: string): Promise<void> {
  const report = await check(new MemoryBackend(disk.slice(), { readOnly: true }));
  assert.equal(report.corruptions, 0, `${where}: ${JSON.stringify(report.findings)}`);
  // Read-only first (replay in memory, file untouched), then writable (replay to the file), then clean.
  const readOnly = await VhdxImage.open(new MemoryBackend(disk.slice(), { readOnly: true }));
  const problem = model.checkCrashed(await readOnly.read(0, model.size));
  assert.equal(problem, null, `${where}: ${problem}`);
  await readOnly.close();
  const backend = new MemoryBackend(disk.slice());
  const writable = await VhdxImage.open(backend, { readOnly: false });
  const seen = await writable.read(0, model.size);
  await writable.close();
  const again = await VhdxImage.open(new MemoryBackend(backend.contents().slice(), { readOnly: true }));
  assert.equal(again.info().logState, 'empty', `${where}: log not empty after a writable open and close`);
  assert.ok(equal(await again.read(0, model.size), seen), `${where}: content changed by replay to the file`);
}

describe('power loss at every write and flush', () => {
  const cases: { type: 'dynamic' | 'fixed'; logicalSectorSize: 512 | 4096; sparse?: boolean }[] = [
    { type: 'dynamic', logicalSectorSize: 512 },
    { type: 'dynamic', logicalSectorSize: 4096 },
    { type: 'dynamic', logicalSectorSize: 512, sparse: true },
    { type: 'fixed', logicalSectorSize: 512 },
  ];
  for (const { type, logicalSectorSize, sparse } of cases) {
    test(`${type} image, ${logicalSectorSize}-byte sectors${sparse ? ', sparse allocation' : ''}`, async () => {
      const size = 8 * MiB;
      const fresh = new MemoryBackend();
      await create(fresh, { virtualSize: size, type, blockSize: MiB, logicalSectorSize });
      const initial = fresh.contents().slice();
      const ops = workload(size, logicalSectorSize);
      const total = (await runUntilCut(initial, ops, size, Infinity, sparse)).backend.operations;
      assert.ok(total > 20, `workload performs ${total} operations`);
      let points = 0;
      for (let cutAt = 0; cutAt <= total; cutAt++) {
        const { backend, model, completed } = await runUntilCut(initial, ops, size, cutAt, sparse);
        assert.equal(completed, cutAt === total, `cut at ${cutAt}`);
        for (const crashModel of ['drop', 'reorder'] as CrashModel[]) {
          const random = rng(cutAt * 7919 + (crashModel === 'drop' ? 1 : 2));
          for (let variant = 0; variant < (crashModel === 'reorder' ? 2 : 1); variant++) {
            const disk = await backend.crashImage(crashModel, random);
            await verifyCrash(disk, model, `${type}/${logicalSectorSize}: cut before operation ${cutAt} of ${total} (${crashModel} #${variant})`);
            points++;
          }
        }
      }
      console.log(`${type}/${logicalSectorSize}: ${total + 1} cut points, ${points} crash images verified`);
    });
  }
});
