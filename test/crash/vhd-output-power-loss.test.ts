/**
 * Power loss while writing a VHD (fixed and dynamic `convertToVhd`): the conversion is cut at EVERY
 * operation (write, truncate, flush) under both crash models, and what the disk holds is judged. It
 * must never pass for a VHD holding anything but the source: either it has no footer (neither at the
 * end nor at offset 0), so no reader takes it for a VHD, or it opens, with every check of ours, and
 * reads back the source exactly. The order that makes this hold: data durable, then (dynamic) the table and
 * dynamic header durable, then the footers.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { MemoryBackend } from '../../src/io/memory.js';
import { PowerCut, PowerLossBackend, type CrashModel } from '../../src/io/power-loss.js';
import { convertToVhd } from '../../src/ops/convert-to-vhd.js';
import { rawSource } from '../../src/ops/source.js';
import { VhdImage } from '../../src/vhd/image.js';
import { VhdxError } from '../../src/format/errors.js';
import { patternBytes } from '../helpers.js';
import { rng } from '../model.js';

const MiB = 1024 * 1024;

/** A 5 MiB + 1 KiB disk: data in blocks 0, 2 (across 512 KiB boundaries) and the last sector, zeros elsewhere. */
function sourceBytes(): Uint8Array {
  const size = 5 * MiB + 1024;
  const raw = new Uint8Array(size);
  raw.set(patternBytes(3000, 1), 700);
  raw.set(patternBytes(700 * 1024, 2), 2 * MiB - 100 * 1024);
  raw.set(patternBytes(512, 3), size - 512);
  return raw;
}

/** Whether any reader would take `disk` for a VHD: a footer cookie at the end, or at 0. */
function looksLikeVhd(disk: Uint8Array): boolean {
  const cookie = (at: number): boolean => at >= 0 && Buffer.from(disk.subarray(at, at + 8)).toString('latin1') === 'conectix';
  return cookie(disk.length - 512) || cookie(0);
}

describe('power loss while writing a VHD', () => {
  const raw = sourceBytes();
  for (const options of [{ type: 'fixed' as const }, { type: 'dynamic' as const, blockSize: 512 * 1024 }]) {
    test(`${options.type}: cut at every operation, both crash models: no VHD, or the whole source`, async () => {
      // How many operations a full conversion takes.
      const full = new PowerLossBackend();
      await convertToVhd(rawSource(new MemoryBackend(raw), raw.length), full, options);
      const total = full.operations;
      assert.ok(total >= 6, `a conversion of several operations (${total})`);
      let opened = 0;
      let refused = 0;
      for (let cutAt = 0; cutAt <= total; cutAt++) {
        for (const model of ['drop', 'reorder'] as CrashModel[]) {
          for (let seed = 1; seed <= (model === 'reorder' ? 3 : 1); seed++) {
            const where = `${options.type}, cut at ${cutAt} of ${total}, ${model} ${seed}`;
            const backend = new PowerLossBackend(new Uint8Array(0), { cutAt });
            const finished = await convertToVhd(rawSource(new MemoryBackend(raw), raw.length), backend, options).then(
              () => true,
              (error: unknown) => {
                if (!(error instanceof PowerCut)) throw error;
                return false;
              },
            );
            assert.equal(finished, cutAt === total, `${where}: the conversion ends only when no cut comes`);
            const disk = await backend.crashImage(model, rng(seed * 7919 + cutAt));
            // A footer sector is written whole or not at all (sectors are the unit of tearing): a file
            // with a footer cookie is one a reader takes for a VHD, and QEMU checks far less than we do.
            if (!looksLikeVhd(disk)) {
              await assert.rejects(VhdImage.open(new MemoryBackend(disk, { readOnly: true })), (e) => e instanceof VhdxError, where);
              refused++;
              continue;
            }
            const image = await VhdImage.open(new MemoryBackend(disk, { readOnly: true }));
            assert.equal(image.virtualSize, raw.length, where);
            assert.ok(Buffer.from(await image.read(0, raw.length)).equals(Buffer.from(raw)), `${where}: opens but does not read back the source`);
            await image.close();
            opened++;
          }
        }
      }
      assert.ok(opened > 0 && refused > 0, `both outcomes occur (${opened} opened, ${refused} refused)`);
    });
  }
});
