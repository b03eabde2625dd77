/**
 * Logs we leave unreplayed (write issue acceptance). A workload of allocating writes and flushes runs on
 * a dynamic, 512-byte-sector image over the power-loss simulator, cut before every operation; the disk
 * each cut leaves (`crashImage('drop')`: unflushed writes lost, the in-flight one torn) is kept when the
 * current header names a LogGuid and QEMU agrees there is a log to replay (it refuses the read-only open
 * for that reason). Each kept image is written to a file and:
 * - our read-only reader (`vhdx convert`) must give what `qemu-img convert` gives after
 *   `qemu-img check -r all` replayed the log on a copy, leave the file untouched, and the content must
 *   be a state the crash may legally leave (flushed data exact, anything else old or new);
 * - a writable open and close with our library must replay into the file, after which `qemu-img check`
 *   is clean and QEMU reads the same content.
 * The workload is like test/crash/power-loss.test.ts's (which checks every crash image against our own
 * reader only); here QEMU is the judge of the log.
 */
import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VhdxImage } from '../../src/image/image.js';
import { MemoryBackend } from '../../src/io/memory.js';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { create } from '../../src/ops/create.js';
import { VHDX_BIN, patternBytes, requireProgram, run, runOk, tempDir } from '../helpers.js';
import { DiskModel, rng, runUntilCut, type Op } from '../model.js';
import { MiB, compareFiles, currentHeader, logEntriesOfCurrentGuid, qemuCheckProblem, qemuImgCheck, sha256, sha256OfFile, sparseCopy } from './util.js';

const SIZE = 12 * MiB + 7 * 512;
const BLOCK = MiB;
const REPLAY_REFUSAL = /opened read-only, but contains a log that needs to be replayed/;
const MIN_IMAGES = 2;

/**
 * Allocating writes (unaligned, across blocks, into the partial last block), an overwrite in place and
 * flushes: three log transactions (the last one by close), each cut at every step.
 */
function workload(): Op[] {
  let seed = 500;
  const w = (offset: number, length: number): Op => ({ kind: 'write', offset, data: patternBytes(length, seed++) });
  return [
    w(100, 3000), // allocates block 0
    w(3 * MiB - 700, 1400), // allocates blocks 2 and 3
    { kind: 'flush' },
    w(5 * MiB + 7, 5000), // block 5
    w(50, 512), // block 0 again: in place, no log
    { kind: 'flush' },
    w(12 * MiB + 1000, 2000), // the partial last block
    w(8 * MiB - 1, 2), // blocks 7 and 8
  ];
}

interface DirtyImage {
  path: string;
  cutAt: number;
  model: DiskModel;
}

describe('logs we leave unreplayed, replayed by QEMU and by us', () => {
  let tmp: { path: string; cleanup: () => void } | undefined;
  const dirty: DirtyImage[] = [];
  let total = 0;
  const summary: string[] = [];
  /** Cut points whose header names a LogGuid but that QEMU opens without replaying (no valid entry). */
  const guidWithoutEntry: string[] = [];

  before(async () => {
    requireProgram('qemu-img');
    tmp = tempDir('vhdx-interop-write-crash-');
    const fresh = new MemoryBackend();
    await create(fresh, { virtualSize: SIZE, type: 'dynamic', blockSize: BLOCK, logicalSectorSize: 512, physicalSectorSize: 4096 });
    const initial = fresh.contents().slice();
    const ops = workload();
    total = (await runUntilCut(initial, ops, SIZE, Infinity)).backend.operations;
    assert.ok(total > 20, `the workload performs ${total} operations`);
    const seen = new Set<string>();
    let clean = 0;
    let duplicates = 0;
    for (let cutAt = 0; cutAt < total; cutAt++) {
      const { backend, model, completed } = await runUntilCut(initial, ops, SIZE, cutAt);
      assert.equal(completed, false, `cut at ${cutAt}`);
      const disk = await backend.crashImage('drop', rng(cutAt * 7919 + 1));
      const path = join(tmp.path, `cut-${cutAt}.vhdx`);
      writeFileSync(path, disk);
      if (currentHeader(path).logGuidIsZero) {
        clean++;
        rmSync(path);
        continue;
      }
      const info = run('qemu-img', ['info', '-f', 'vhdx', path]);
      if (info.code === 0 || !REPLAY_REFUSAL.test(info.stderr)) {
        guidWithoutEntry.push(`cut ${cutAt}: qemu-img info exited ${info.code}: ${info.stderr.trim()}`);
        continue;
      }
      const hash = sha256(disk);
      if (seen.has(hash)) {
        duplicates++;
        rmSync(path);
        continue;
      }
      seen.add(hash);
      dirty.push({ path, cutAt, model });
    }
    summary.push(`${total} operations; ${clean} cut points with a clean header, ${dirty.length} distinct dirty images (${duplicates} duplicates), ${guidWithoutEntry.length} with a LogGuid QEMU does not replay`);
  });
  after(() => tmp?.cleanup());

  /** Our read-only conversion of a dirty image, made once (the image must stay byte-identical). */
  const converted = new Map<string, string>();
  const ours = (d: DirtyImage): string => {
    let out = converted.get(d.path);
    if (out === undefined) {
      out = `${d.path}.ours.raw`;
      const before = sha256OfFile(d.path);
      runOk(VHDX_BIN, ['convert', d.path, out]);
      assert.equal(sha256OfFile(d.path), before, `cut ${d.cutAt}: the read-only conversion modified the image`);
      converted.set(d.path, out);
    }
    return out;
  };

  it(`at least ${MIN_IMAGES} distinct crash images hold a log QEMU must replay`, (t) => {
    t.diagnostic(summary.join('; '));
    t.diagnostic(`dirty cut points: ${dirty.map((d) => d.cutAt).join(', ')}`);
    assert.ok(dirty.length >= MIN_IMAGES, `only ${dirty.length} crash images left a log to replay: ${summary.join('; ')}`);
    for (const d of dirty) {
      assert.equal(currentHeader(d.path).logGuidIsZero, false);
      assert.ok(logEntriesOfCurrentGuid(d.path).length >= 1, `cut ${d.cutAt}: no log entry carries the header's LogGuid`);
    }
  });

  it('every crash image whose header names a LogGuid holds a log entry QEMU replays', () => {
    // The log writer writes and flushes an entry before the header that names its LogGuid.
    assert.deepEqual(guidWithoutEntry, []);
  });

  it('our read-only conversion equals qemu-img convert after qemu-img check -r all, and is a legal crash state', () => {
    for (const d of dirty) {
      const where = `cut before operation ${d.cutAt} of ${total}`;
      const repaired = `${d.path}.qemu-repaired.vhdx`;
      const reference = `${d.path}.qemu.raw`;
      sparseCopy(d.path, repaired);
      const check = qemuImgCheck(repaired, 'all');
      assert.equal(check.code, 0, `${where}: qemu-img check -r all exited ${check.code}: ${check.output.trim()}`);
      assert.equal(currentHeader(repaired).logGuidIsZero, true, `${where}: qemu-img check -r all left the LogGuid set`);
      runOk('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', repaired, reference]);
      assert.equal(compareFiles(ours(d), reference), null, `${where}: vhdx convert of the dirty image vs qemu-img convert after repair`);

      const problem = d.model.checkCrashed(readFileSync(reference));
      assert.equal(problem, null, `${where}: ${problem}`);
    }
  });

  it('our writable open replays into the file; qemu-img check is then clean and QEMU reads the same', async () => {
    for (const d of dirty) {
      const where = `cut before operation ${d.cutAt} of ${total}`;
      const replayed = `${d.path}.ours-replayed.vhdx`;
      const reference = `${d.path}.ours-replayed.raw`;
      sparseCopy(d.path, replayed);
      const backend = await NodeFileBackend.open(replayed, { readOnly: false });
      const img = await VhdxImage.open(backend, { readOnly: false });
      try {
        assert.equal(img.info().logState, 'replayed', `${where}: log state after a writable open`);
      } finally {
        await img.close();
      }
      assert.equal(currentHeader(replayed).logGuidIsZero, true, `${where}: LogGuid still set after our replay and close`);
      const problem = qemuCheckProblem(qemuImgCheck(replayed));
      assert.equal(problem, null, `${where}: ${problem}`);
      runOk('qemu-img', ['convert', '-f', 'vhdx', '-O', 'raw', replayed, reference]);
      assert.equal(compareFiles(reference, ours(d)), null, `${where}: QEMU's read of our replayed file vs our read-only conversion of the dirty one`);
    }
  });
});
