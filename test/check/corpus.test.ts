/**
 * Check and repair on a corpus of damaged images (test/check/damage.ts): `vhdx check` (the real CLI)
 * reports each kind of damage with its code and exit status and writes nothing; `vhdx check --repair`
 * leaves an image that both `vhdx check` and `qemu-img check` find clean, in which every virtual range
 * that was still reachable reads exactly as before and every range reported lost reads as zeros.
 */
import { strict as assert } from 'node:assert';
import { copyFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { VhdxImage } from '../../src/image/image.js';
import { check } from '../../src/ops/check.js';
import { MemoryBackend } from '../../src/io/memory.js';
import { requireProgram, run, sha256File, tempDir, VHDX_BIN } from '../helpers.js';
import { qemuCheckProblem, qemuImgCheck } from '../interop/util.js';
import { baseContent, CASES, DATA_SPAN, expectedAfterRepair, lostRanges, makeBase, MiB, VIRTUAL_SIZE } from './damage.js';

interface CliReport {
  verdict: string;
  exitCode: number;
  findings: { code: string; severity: string; repairable: boolean; message: string }[];
  repairs?: { code: string; message: string }[];
  lost?: { offset: number; length: number }[];
  logState?: string;
}

function vhdxCheck(path: string, repair = false): { status: number | null; report: CliReport; stderr: string } {
  const r = run(VHDX_BIN, ['check', path, '--json', ...(repair ? ['--repair'] : [])]);
  assert.equal(r.stderr, '', `vhdx check wrote to stderr: ${r.stderr}`);
  return { status: r.code, report: JSON.parse(r.stdout.toString()) as CliReport, stderr: r.stderr };
}

describe('check and repair on damaged images', () => {
  const dir = tempDir('vhdx-check-');
  const base = join(dir.path, 'base.vhdx');
  const dirty = join(dir.path, 'dirty.vhdx');
  const content = baseContent();
  before(async () => {
    requireProgram('qemu-img');
    await makeBase(base);
    await makeBase(dirty, { dirtyLog: true });
  });
  after(() => dir.cleanup());

  test('the undamaged image is clean for both checkers', () => {
    const ours = vhdxCheck(base);
    assert.equal(ours.status, 0);
    assert.equal(ours.report.verdict, 'clean');
    assert.deepEqual(ours.report.findings, []);
    assert.equal(qemuCheckProblem(qemuImgCheck(base)), null);
  });

  let exercised = 0;
  for (const c of CASES) {
    test(c.name, async () => {
      const path = join(dir.path, 'case.vhdx');
      copyFileSync(c.dirtyLog ? dirty : base, path);
      try {
        await c.damage(path);
        const hash = sha256File(path);
        const found = vhdxCheck(path);
        assert.equal(found.status, c.exit, `exit status: ${JSON.stringify(found.report.findings)}`);
        for (const code of c.codes) {
          assert.ok(found.report.findings.some((f) => f.code === code), `expected ${code} in ${JSON.stringify(found.report.findings)}`);
        }
        assert.equal(sha256File(path), hash, 'check without --repair must not write');

        const repaired = vhdxCheck(path, true);
        if (!c.repairable) {
          assert.equal(repaired.status, c.exit, 'an unrepairable image keeps its verdict');
          assert.deepEqual(repaired.report.repairs, []);
          assert.equal(sha256File(path), hash, 'nothing is written when nothing can be repaired');
          return;
        }
        assert.equal(repaired.status, 0, `after repair: ${JSON.stringify(repaired.report)}`);
        assert.ok((repaired.report.repairs ?? []).length > 0, 'a repair was made');
        assert.deepEqual(
          (repaired.report.lost ?? []).map((l) => [l.offset, l.length]),
          lostRanges(c),
          'the virtual ranges reported lost',
        );
        // Both checkers agree the result is clean, and a second check finds nothing at all.
        const again = vhdxCheck(path);
        assert.equal(again.status, 0);
        assert.deepEqual(again.report.findings, []);
        assert.equal(again.report.logState, 'empty');
        assert.equal(qemuCheckProblem(qemuImgCheck(path)), null);
        // Every reachable byte is unchanged; lost ranges read as zeros; nothing beyond was touched.
        const image = await VhdxImage.open(await NodeFileBackend.open(path, { readOnly: true }));
        try {
          assert.equal(image.virtualSize, VIRTUAL_SIZE);
          const got = await image.read(0, DATA_SPAN);
          const want = expectedAfterRepair(c, content);
          const diff = got.findIndex((b, i) => b !== want[i]);
          assert.equal(diff, -1, `first wrong byte at virtual offset ${diff}`);
          const beyond = (await image.extents(DATA_SPAN, VIRTUAL_SIZE - DATA_SPAN));
          assert.ok(beyond.every((e) => e.kind !== 'data'), 'nothing allocated past the written span');
        } finally {
          await image.close();
        }
        exercised++;
      } finally {
        rmSync(path, { force: true });
        rmSync(`${path}.lock`, { force: true });
      }
    });
  }

  test('the corpus covered every repairable kind', () => {
    assert.equal(exercised, CASES.filter((c) => c.repairable).length);
    console.log(`# check corpus: ${CASES.length} kinds of damage, ${exercised} repaired and verified`);
  });

  test('a check of an image opened read-only refuses to repair', async () => {
    const backend = new MemoryBackend(new Uint8Array(0), { readOnly: true });
    await assert.rejects(check(backend, { repair: true }), (e: Error & { code?: string }) => e.code === 'NOT_VHDX' || e.code === 'READ_ONLY');
  });

  test('not a VHDX: exit 1 with one line, no report', () => {
    const path = join(dir.path, 'plain.raw');
    copyFileSync(base, path);
    run('truncate', ['-s', '0', path]);
    run('truncate', ['-s', `${MiB}`, path]);
    const r = run(VHDX_BIN, ['check', path]);
    assert.equal(r.code, 1);
    assert.equal(r.stdout.toString(), '');
    assert.match(r.stderr, /^vhdx: .*plain\.raw: .*\n$/);
    assert.doesNotMatch(r.stderr, /\n\s+at /);
  });
});
