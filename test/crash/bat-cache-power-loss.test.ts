/**
 * Power loss with a BAT cache of a single page (4 KiB, 512 entries), on a 2 GiB image with 1 MiB
 * blocks: its 16 KiB BAT is four pages, and the workload hops between four windows of the disk, one per
 * page, so nearly every operation evicts the page the one before used while dirty pages wait for the
 * log. The workload is cut before every write, truncate and flush; each crash image must check clean,
 * open (read-only with the same one-page cache, and with the default cache), and read every 512-byte
 * unit of the windows as the content flushed before the cut or one written since; outside the windows
 * nothing may be allocated.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBackend } from '../../src/io/memory.js';
import { PowerCut, PowerLossBackend, type CrashModel } from '../../src/io/power-loss.js';
import { create } from '../../src/ops/create.js';
import { check } from '../../src/ops/check.js';
import { VhdxImage } from '../../src/image/image.js';
import { DiskModel, applyOp, rng, type Op } from '../model.js';
import { patternBytes } from '../helpers.js';

const MiB = 1024 * 1024;
const SIZE = 2048 * MiB;
const ONE_PAGE = { batCacheBytes: 4096 };
/** First block of each window: one window in each 512-entry page of the BAT. */
const WINDOWS = [0, 600, 1100, 1700];
const WINDOW = 4 * MiB;

/** Virtual offset of compact model offset `at` (the windows laid end to end). */
function virtual(at: number): number {
  return WINDOWS[Math.floor(at / WINDOW)]! * MiB + (at % WINDOW);
}

/** The workload in model offsets (no operation crosses a window). */
function workload(): Op[] {
  let seed = 11;
  const data = (n: number): Uint8Array => patternBytes(n, seed++);
  const w = (i: number, at: number): number => i * WINDOW + at;
  return [
    { kind: 'write', offset: w(0, 100), data: data(3000) },
    { kind: 'write', offset: w(1, MiB - 512), data: data(4096) }, // two blocks of window 1
    { kind: 'write', offset: w(2, 7), data: data(20000) },
    { kind: 'flush' },
    { kind: 'write', offset: w(3, 2 * MiB), data: data(MiB) },
    { kind: 'write', offset: w(0, 50), data: data(512) }, // in place
    { kind: 'discard', offset: w(2, 0), length: MiB }, // whole block: unmapped, space released
    { kind: 'write', offset: w(1, 3 * MiB), data: data(8192) },
    { kind: 'writeZeroes', offset: w(3, 2 * MiB), length: MiB }, // whole block: zero
    { kind: 'flush' },
    { kind: 'write', offset: w(2, MiB + 4096), data: data(8192) }, // reuses the released space
    { kind: 'write', offset: w(0, 3 * MiB), data: data(5000) },
    { kind: 'reopen' },
    { kind: 'write', offset: w(3, 100), data: data(3000) },
    { kind: 'write', offset: w(1, 0), data: data(512) },
    { kind: 'flush' },
    { kind: 'write', offset: w(2, 2 * MiB), data: data(4096) },
  ];
}

function toVirtual(op: Op): Op {
  return op.kind === 'flush' || op.kind === 'reopen' ? op : { ...op, offset: virtual(op.offset) };
}

async function run(initial: Uint8Array, ops: Op[], cutAt: number): Promise<{ backend: PowerLossBackend; model: DiskModel; pagesRead: number }> {
  const backend = new PowerLossBackend(initial, { cutAt });
  const model = new DiskModel(WINDOWS.length * WINDOW);
  const open = (): Promise<VhdxImage> => VhdxImage.open(backend, { readOnly: false, ...ONE_PAGE });
  let pagesRead = 0;
  try {
    let image = await open();
    for (const op of ops) {
      model.issue(op);
      const before = image;
      image = await applyOp(image, toVirtual(op), open);
      if (image !== before) pagesRead += bat(before).pagesRead;
      if (op.kind === 'flush' || op.kind === 'reopen') model.durable();
    }
    pagesRead += bat(image).pagesRead;
    await image.close();
    model.durable();
  } catch (error) {
    if (!(error instanceof PowerCut)) throw error;
  }
  return { backend, model, pagesRead };
}

/** The image's BAT (for its page counter). */
function bat(image: VhdxImage): { pagesRead: number; residentPages: number } {
  return (image as unknown as { layout: { bat: { pagesRead: number; residentPages: number } } }).layout.bat;
}

async function windows(image: VhdxImage): Promise<Uint8Array> {
  const out = new Uint8Array(WINDOWS.length * WINDOW);
  for (let i = 0; i < WINDOWS.length; i++) await image.readInto(out.subarray(i * WINDOW, (i + 1) * WINDOW), WINDOWS[i]! * MiB);
  return out;
}

async function verify(disk: Uint8Array, model: DiskModel, where: string): Promise<void> {
  const report = await check(new MemoryBackend(disk.slice(), { readOnly: true }));
  assert.equal(report.corruptions, 0, `${where}: ${JSON.stringify(report.findings)}`);
  for (const options of [ONE_PAGE, {}]) {
    const image = await VhdxImage.open(new MemoryBackend(disk.slice(), { readOnly: true }), options);
    const problem = model.checkCrashed(await windows(image));
    assert.equal(problem, null, `${where} (${JSON.stringify(options)}): ${problem}`);
    for await (const e of image.walk()) {
      if (e.kind !== 'data') continue;
      const inside = WINDOWS.some((b) => e.offset >= b * MiB && e.offset + e.length <= b * MiB + WINDOW);
      assert.ok(inside, `${where}: data extent [${e.offset}, ${e.offset + e.length}) outside the windows`);
    }
    if (options === ONE_PAGE) assert.ok(bat(image).residentPages <= 1, `${where}: ${bat(image).residentPages} BAT pages resident after reads`);
    await image.close();
  }
}

describe('power loss with a one-page BAT cache', () => {
  test('every cut point of a workload that hops between BAT pages', async () => {
    const fresh = new MemoryBackend();
    await create(fresh, { virtualSize: SIZE, type: 'dynamic', blockSize: MiB, logicalSectorSize: 512 });
    const initial = fresh.contents().slice();
    const ops = workload();
    const full = await run(initial, ops, Infinity);
    const total = full.backend.operations;
    assert.ok(total > 30, `workload performs ${total} operations`);
    // Evictions really happen: far more page reads than the table's four pages.
    assert.ok(full.pagesRead >= 12, `only ${full.pagesRead} BAT pages read`);
    const final = await VhdxImage.open(new MemoryBackend(full.backend.contents().slice(), { readOnly: true }), ONE_PAGE);
    assert.equal(full.model.checkCrashed(await windows(final)), null, 'the completed run reads back everything written');
    await final.close();
    let points = 0;
    for (let cutAt = 0; cutAt <= total; cutAt++) {
      const { backend, model: m } = await run(initial, ops, cutAt);
      for (const crashModel of ['drop', 'reorder'] as CrashModel[]) {
        const disk = await backend.crashImage(crashModel, rng(cutAt * 31 + (crashModel === 'drop' ? 1 : 2)));
        await verify(disk, m, `cut before operation ${cutAt} of ${total} (${crashModel})`);
        points++;
      }
    }
    console.log(`one-page BAT cache: ${total + 1} cut points, ${points} crash images verified, ${full.pagesRead} page reads in the full run`);
  });
});
