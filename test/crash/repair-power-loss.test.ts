/**
 * Repair is crash-safe: for damaged images from the check corpus, `check(..., { repair: true })` runs
 * on a backend that loses power before EVERY write, truncate and flush (unflushed writes dropped, or
 * kept in part in any order, torn at 512-byte sectors). Each crash image must:
 *  - never be worse: a check finds no corruption other than the damage being repaired (or a header
 *    copy torn by a header update, whose other copy is valid);
 *  - when it opens for readers, read every reachable byte as before the repair or as after it;
 *  - repair to completion when repair runs again, with exactly the content a repair without a crash gives.
 */
import { strict as assert } from 'node:assert';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { MemoryBackend } from '../../src/io/memory.js';
import { PowerCut, PowerLossBackend, type CrashModel } from '../../src/io/power-loss.js';
import { VhdxImage } from '../../src/image/image.js';
import { check } from '../../src/ops/check.js';
import { tempDir } from '../helpers.js';
import { rng } from '../model.js';
import { baseContent, CASES, DATA_SPAN, expectedAfterRepair, lostRanges, makeBase } from '../check/damage.js';
import { copyFileSync } from 'node:fs';

const ZERO_SECTOR = Buffer.alloc(512);

const PICKED = [
  'header copy 1 bad',
  'region table copy 2 bad',
  'dirty log (crash after the log flush)',
  'BAT entry past the end of the file',
  'file cut short inside the last block',
  'two blocks sharing file space',
  'leaked space inside the file (a discarded block)',
  'trailing garbage',
];

describe('power loss at every step of a repair', () => {
  const dir = tempDir('vhdx-repair-crash-');
  const content = baseContent();
  before(async () => {
    await makeBase(join(dir.path, 'base.vhdx'));
    await makeBase(join(dir.path, 'dirty.vhdx'), { dirtyLog: true });
  });
  after(() => dir.cleanup());

  for (const name of PICKED) {
    const c = CASES.find((x) => x.name === name)!;
    test(name, async () => {
      const path = join(dir.path, 'case.vhdx');
      copyFileSync(join(dir.path, c.dirtyLog ? 'dirty.vhdx' : 'base.vhdx'), path);
      await c.damage(path);
      const damaged = new Uint8Array(readFileSync(path));
      const want = expectedAfterRepair(c, content);
      const wantBuffer = Buffer.from(want);
      const beforeBuffer = Buffer.from(content);
      // Before the repair, readers may see the base content (or zeros where the damage hides it).
      const lost = lostRanges(c);
      const allowed = new Set<string>([...c.codes, 'HEADER_COPY_BAD']);

      const full = new PowerLossBackend(damaged, { name: 'full' });
      await check(full, { repair: true });
      const total = full.operations;
      assert.ok(total > 3, `repair performs ${total} operations`);
      let points = 0;
      for (let cutAt = 0; cutAt < total; cutAt++) {
        const backend = new PowerLossBackend(damaged, { name: `cut-${cutAt}`, cutAt });
        await assert.rejects(check(backend, { repair: true }), PowerCut);
        for (const model of ['drop', 'reorder'] as CrashModel[]) {
          const disk = await backend.crashImage(model, rng(cutAt * 31 + (model === 'drop' ? 1 : 2)));
          const where = `${name}: cut before operation ${cutAt} of ${total} (${model})`;
          const report = await check(new MemoryBackend(disk.slice(), { readOnly: true }));
          for (const f of report.findings) {
            if (f.severity === 'corruption') assert.ok(allowed.has(f.code), `${where}: new corruption ${f.code}: ${f.message}`);
          }
          if (report.corruptions === 0) {
            const image = await VhdxImage.open(new MemoryBackend(disk.slice(), { readOnly: true }));
            const got = await image.read(0, DATA_SPAN);
            await image.close();
            const g = Buffer.from(got.buffer, got.byteOffset, got.length);
            for (let s = 0; s < DATA_SPAN; s += 512) {
              const sector = g.subarray(s, s + 512);
              if (sector.equals(wantBuffer.subarray(s, s + 512)) || sector.equals(beforeBuffer.subarray(s, s + 512))) continue;
              const zeroedByLoss = lost.some(([o, l]) => s >= o && s < o + l) && sector.equals(ZERO_SECTOR);
              assert.ok(zeroedByLoss, `${where}: virtual sector at ${s} reads neither as before nor as after the repair`);
            }
          }
          const again = new MemoryBackend(disk.slice());
          const finished = await check(again, { repair: true });
          assert.equal(finished.exitCode, 0, `${where}: repair after the crash: ${JSON.stringify(finished.findings)}`);
          const image = await VhdxImage.open(new MemoryBackend(again.contents().slice(), { readOnly: true }));
          const got = await image.read(0, DATA_SPAN);
          await image.close();
          const diff = Buffer.from(got).equals(wantBuffer) ? -1 : got.findIndex((b, i) => b !== want[i]);
          assert.equal(diff, -1, `${where}: after the second repair, first wrong byte at virtual offset ${diff}`);
          points++;
        }
      }
      console.log(`# repair of "${name}": ${total} cut points, ${points} crash images verified`);
    });
  }
});
