/**
 * Power-loss simulation (write issue acceptance): a scripted workload is cut at EVERY operation index
 * (write, truncate, flush), under two crash models, then the disk is reopened: it must open (replaying
 * its log), hold no BAT entry past EOF or overlapping anything (the open validates both), read back
 * every byte flushed before the cut exactly, and every other 512-byte unit as old or new content.
 *
 * That is the default cache mode, writeback. The unsafe mode (no flush ever reaches the disk) promises
 * nothing after a power loss, so it is held to what it does promise: the same workloads issue no flush
 * at all, and the file as the operating system holds it (the process killed at any operation, the page
 * cache intact) opens without error, checks clean and reads everything flushed before the kill.
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

const cases: { type: 'dynamic' | 'fixed'; logicalSectorSize: 512 | 4096; sparse?: boolean }[] = [
  { type: 'dynamic', logicalSectorSize: 512 },
  { type: 'dynamic', logicalSectorSize: 4096 },
  { type: 'dynamic', logicalSectorSize: 512, sparse: true },
  { type: 'fixed', logicalSectorSize: 512 },
];

async function freshImage(type: 'dynamic' | 'fixed', logicalSectorSize: number, size: number): Promise<Uint8Array> {
  const fresh = new MemoryBackend();
  await create(fresh, { virtualSize: size, type, blockSize: MiB, logicalSectorSize });
  return fresh.contents().slice();
}

describe('power loss at every write and flush (cache writeback)', () => {
  for (const { type, logicalSectorSize, sparse } of cases) {
    test(`${type} image, ${logicalSectorSize}-byte sectors${sparse ? ', sparse allocation' : ''}`, async () => {
      const size = 8 * MiB;
      const initial = await freshImage(type, logicalSectorSize, size);
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

describe('cache unsafe: no flush, and a killed process leaves an image that opens', () => {
  for (const { type, logicalSectorSize, sparse } of cases) {
    test(`${type} image, ${logicalSectorSize}-byte sectors${sparse ? ', sparse allocation' : ''}`, async () => {
      const size = 8 * MiB;
      const initial = await freshImage(type, logicalSectorSize, size);
      const ops = workload(size, logicalSectorSize);
      const full = await runUntilCut(initial, ops, size, Infinity, sparse, { cache: 'unsafe' });
      assert.equal(full.backend.flushes, 0, 'the unsafe mode reached the disk flush');
      const total = full.backend.operations;
      assert.ok(total > 20, `workload performs ${total} operations`);
      for (let cutAt = 0; cutAt <= total; cutAt++) {
        const { backend, model } = cutAt === total ? full : await runUntilCut(initial, ops, size, cutAt, sparse, { cache: 'unsafe' });
        assert.equal(backend.flushes, 0);
        // What the operating system holds when the process dies here: every write issued so far.
        const where = `${type}/${logicalSectorSize} unsafe: killed before operation ${cutAt} of ${total}`;
        const disk = backend.contents().slice();
        const report = await check(new MemoryBackend(disk.slice(), { readOnly: true }));
        assert.equal(report.corruptions, 0, `${where}: ${JSON.stringify(report.findings)}`);
        const image = await VhdxImage.open(new MemoryBackend(disk, { readOnly: true }));
        const problem = model.checkCrashed(await image.read(0, size));
        assert.equal(problem, null, `${where}: ${problem}`);
        await image.close();
      }
      const final = await VhdxImage.open(new MemoryBackend(full.backend.contents().slice(), { readOnly: true }));
      assert.equal(final.info().logState, 'empty', 'a clean close leaves the log empty in unsafe mode too');
      assert.ok(equal(await final.read(0, size), full.model.current), 'the completed unsafe run holds everything written');
      await final.close();
    });
  }
});
