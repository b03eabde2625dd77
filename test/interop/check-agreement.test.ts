/**
 * Check verdicts against `qemu-img check` (check issue acceptance). On images from the interop matrix
 * (made and written by qemu-img/qemu-io, and by this library) both find them clean. On a damaged set,
 * each verdict is pinned for both tools: where they agree the test says so, and where ours is stricter
 * the case says why. Verdicts: 0 clean, 2 corruption, 3 leaks; qemu-img exits 1 when it cannot open
 * the image at all.
 */
import { strict as assert } from 'node:assert';
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { requireProgram, run, runOk, tempDir, VHDX_BIN } from '../helpers.js';
import { qemuImgCheck, qemuIoWriteArgs } from './util.js';
import { CASES, makeBase } from '../check/damage.js';

const MiB = 1024 * 1024;
const SIZE = 41 * MiB + 7 * 512;

function ours(path: string): { status: number | null; verdict: string } {
  const r = run(VHDX_BIN, ['check', path, '--json']);
  return { status: r.code, verdict: (JSON.parse(r.stdout.toString()) as { verdict: string }).verdict };
}

describe('check verdicts agree with qemu-img check', () => {
  const dir = tempDir('vhdx-check-agree-');
  before(() => {
    requireProgram('qemu-img');
    requireProgram('qemu-io');
  });
  after(() => dir.cleanup());

  const writes = [
    { offset: 1000, length: 3001, pattern: 0x11 },
    { offset: MiB - 700, length: 5000, pattern: 0x22 },
    { offset: 10 * MiB + 17, length: 2 * MiB + 1000, pattern: 0x33 },
    { offset: SIZE - 4096, length: 4096, pattern: 0x44 },
  ];
  for (const subformat of ['dynamic', 'fixed'] as const) {
    for (const blockMiB of [1, 32, 256]) {
      test(`qemu-made ${subformat} image, ${blockMiB} MiB blocks, after qemu-io writes: both clean`, () => {
        const path = join(dir.path, `q-${subformat}-${blockMiB}.vhdx`);
        try {
          runOk('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', `subformat=${subformat},block_size=${blockMiB}M`, path, String(SIZE)]);
          runOk('qemu-io', ['-f', 'vhdx', ...qemuIoWriteArgs(writes), path]);
          const q = qemuImgCheck(path);
          assert.equal(q.code, 0, q.output);
          assert.deepEqual(ours(path), { status: 0, verdict: 'clean' });
        } finally {
          rmSync(path, { force: true });
        }
      });
      test(`our ${subformat} image, ${blockMiB} MiB blocks, after our writes: both clean`, () => {
        const path = join(dir.path, `v-${subformat}-${blockMiB}.vhdx`);
        try {
          runOk(VHDX_BIN, ['create', path, String(SIZE), '--type', subformat, '--block-size', `${blockMiB}M`, ...(blockMiB === 256 ? ['--sparse'] : [])]);
          for (const w of writes) runOk(VHDX_BIN, ['write', path, '--offset', String(w.offset), '--pattern', String(w.pattern), '--length', String(w.length)]);
          const q = qemuImgCheck(path);
          assert.equal(q.code, 0, q.output);
          assert.deepEqual(ours(path), { status: 0, verdict: 'clean' });
        } finally {
          rmSync(path, { force: true });
        }
      });
    }
  }

  /** The damaged set: our verdict and qemu-img's, and why they differ where they do. */
  const damaged: { name: string; ours: number; qemu: number; why?: string }[] = [
    { name: 'header copy 1 bad', ours: 2, qemu: 0, why: 'qemu-img silently uses the other copy; we report the lost redundancy (and repair it)' },
    { name: 'header copy 2 bad', ours: 2, qemu: 0, why: 'as for copy 1' },
    { name: 'region table copy 1 bad', ours: 2, qemu: 1, why: 'qemu-img reads only copy 1 and cannot open the image; the spec says to use copy 2, which we do (and repair copy 1)' },
    { name: 'region table copy 2 bad', ours: 2, qemu: 0, why: 'qemu-img never reads copy 2; we report the lost redundancy' },
    { name: 'trailing garbage', ours: 3, qemu: 0, why: "qemu-img's VHDX check does no leak accounting; the tail is reclaimable space" },
    { name: 'leaked space inside the file (a discarded block)', ours: 3, qemu: 0, why: 'as for the tail: qemu-img does not account for space nothing references' },
    { name: 'BAT entry past the end of the file', ours: 2, qemu: 2 },
    { name: 'file cut short inside the last block', ours: 2, qemu: 2 },
    { name: 'BAT entry into the BAT itself', ours: 2, qemu: 2 },
  ];
  for (const d of damaged) {
    test(`damaged: ${d.name}: ours ${d.ours}, qemu-img ${d.qemu}${d.why ? ' (ours is stricter)' : ' (agree)'}`, async () => {
      const c = CASES.find((x) => x.name === d.name);
      assert.ok(c, `no corpus case named ${d.name}`);
      const path = join(dir.path, 'damaged.vhdx');
      try {
        await makeBase(path);
        await c.damage(path);
        const q = qemuImgCheck(path);
        assert.equal(q.code, d.qemu, `qemu-img check: ${q.output}`);
        assert.equal(ours(path).status, d.ours);
        // Whatever the verdicts, once we have repaired the image qemu-img finds it clean too.
        copyFileSync(path, `${path}.copy`);
        assert.equal(run(VHDX_BIN, ['check', `${path}.copy`, '--repair']).code, 0);
        assert.equal(qemuImgCheck(`${path}.copy`).code, 0);
      } finally {
        rmSync(path, { force: true });
        rmSync(`${path}.copy`, { force: true });
      }
    });
  }
});
