/**
 * Compact and resize interop: images this library compacts and resizes (through the CLI), judged by
 * the peers. After each step `qemu-img check` must be clean (no leaks), `qemu-img compare` must find the
 * image identical to the expected raw disk, and libvhdi must read the same bytes. The expected raw disk
 * is built from the writes alone (`writeModelRaw`), then truncated or extended as the resize asks:
 * never from our reader.
 *
 * A grow past the BAT region (which moves the BAT) needs a disk over 124 GiB at 1 MiB blocks, too large
 * for a whole-disk compare: there the peers read the written ranges, the old end and the new end.
 */
import assert from 'node:assert/strict';
import { truncateSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { VhdxImage } from '../../src/image/image.js';
import { create } from '../../src/ops/create.js';
import { SYSTEM_PYTHON, VHDX_BIN, patternBytes, requireProgram, run, runOk, tempDir } from '../helpers.js';
import { MiB, fileSize, fillWrite, libvhdiRead, qemuCheckProblem, qemuCompare, qemuImgCheck, qemuImgInfo, requirePyvhdi, vhdxInfo, writeModelRaw, type Write } from './util.js';

const GiB = 1024 * MiB;

function peersAgree(image: string, raw: string, where: string): void {
  assert.equal(qemuCheckProblem(qemuImgCheck(image)), null, `${where}: qemu-img check`);
  const compared = qemuCompare(image, raw);
  assert.equal(compared.code, 0, `${where}: qemu-img compare: ${compared.output}`);
  const seen = libvhdiRead(image, raw);
  assert.equal(seen.firstDifference, null, `${where}: libvhdi read ${JSON.stringify(seen.firstDifference)}`);
}

function vhdxJson<T>(args: string[]): T {
  return JSON.parse(runOk(VHDX_BIN, [...args, '--json']).toString()) as T;
}

/** A new image of 1 MiB blocks holding `writes` (written through the library, closed clean). */
async function makeImage(path: string, size: number, type: 'dynamic' | 'fixed', writes: Write[], discards: [number, number][] = []): Promise<void> {
  const backend = await NodeFileBackend.open(path, { readOnly: false, create: true });
  await create(backend, { virtualSize: size, type, blockSize: MiB });
  const image = await VhdxImage.open(backend, { readOnly: false });
  for (const w of writes) await image.write(w.offset, w.data);
  await image.flush();
  for (const [offset, length] of discards) await image.discard(offset, length);
  await image.close();
}

describe('compact and resize, checked by qemu-img and libvhdi', () => {
  const dir = tempDir('vhdx-compact-interop-');
  before(() => {
    requireProgram('qemu-img');
    requireProgram('qemu-io');
    requirePyvhdi();
  });
  after(() => dir.cleanup());

  it('dynamic: compact (zero blocks unmapped, blocks moved), grow, shrink over data with --shrink', async () => {
    const image = join(dir.path, 'dynamic.vhdx');
    const raw = join(dir.path, 'dynamic.raw');
    const size = 41 * MiB + 7 * 512;
    // Zero blocks first: they take the low file offsets, so the data written after them must move down.
    const writes: Write[] = [
      fillWrite(2 * MiB, 3 * MiB, 0),
      fillWrite(12 * MiB, MiB, 0),
      { offset: 30 * MiB + 100, data: patternBytes(2 * MiB, 1) },
      { offset: 7 * MiB, data: patternBytes(MiB, 2) },
      { offset: 40 * MiB, data: patternBytes(size - 40 * MiB, 3) },
      { offset: 20 * MiB + 4096, data: patternBytes(3 * MiB, 4) },
      fillWrite(21 * MiB, MiB, 0), // a block that held data, zeroed by writing zeros
    ];
    await makeImage(image, size, 'dynamic', writes, [[20 * MiB, MiB]]);
    writeModelRaw(raw, size, [...writes, fillWrite(20 * MiB, MiB, 0)]);
    const sizeBefore = fileSize(image);

    const report = vhdxJson<{ blocksMoved: number; zeroBlocks: number; bytesReclaimed: number; fileSizeAfter: number }>(['compact', image]);
    assert.ok(report.zeroBlocks >= 5, `zero blocks found: ${report.zeroBlocks}`);
    assert.ok(report.blocksMoved >= 3, `blocks moved: ${report.blocksMoved}`);
    assert.equal(report.fileSizeAfter, fileSize(image));
    assert.equal(report.bytesReclaimed, sizeBefore - fileSize(image));
    peersAgree(image, raw, 'after compact');

    const grown = 64 * MiB + 512;
    vhdxJson(['resize', image, String(grown)]);
    truncateSync(raw, grown);
    assert.equal(qemuImgInfo(image)['virtual-size'], grown);
    peersAgree(image, raw, 'after grow');

    const shrunk = 30 * MiB + 1024;
    const refused = run(VHDX_BIN, ['resize', image, String(shrunk)]);
    assert.equal(refused.code, 1, 'a shrink over data is refused');
    assert.match(refused.stderr, /dynamic\.vhdx.*--shrink/);
    const lost = vhdxJson<{ lost: { offset: number; length: number }[] }>(['resize', image, String(shrunk), '--shrink']).lost;
    assert.equal(lost[0]!.offset, shrunk);
    truncateSync(raw, shrunk);
    peersAgree(image, raw, 'after shrink');
  });

  it('fixed: grow allocates, compact --to-dynamic converts in place and reclaims', async () => {
    const image = join(dir.path, 'fixed.vhdx');
    const raw = join(dir.path, 'fixed.raw');
    const size = 16 * MiB;
    const writes: Write[] = [{ offset: 3 * MiB + 5, data: patternBytes(2 * MiB, 5) }, { offset: 14 * MiB, data: patternBytes(MiB, 6) }];
    await makeImage(image, size, 'fixed', writes);
    writeModelRaw(raw, size, writes);
    const measured = vhdxJson<{ changed: boolean; bytesReclaimed: number }>(['compact', image]);
    assert.equal(measured.changed, false, 'a fixed image is only measured');
    assert.ok(measured.bytesReclaimed >= 10 * MiB, `would reclaim ${measured.bytesReclaimed}`);

    vhdxJson(['resize', image, String(24 * MiB)]);
    truncateSync(raw, 24 * MiB);
    assert.equal(vhdxInfo(image).type, 'fixed');
    peersAgree(image, raw, 'after fixed grow');

    const before = fileSize(image);
    const report = vhdxJson<{ convertedToDynamic: boolean; bytesReclaimed: number }>(['compact', image, '--to-dynamic']);
    assert.equal(report.convertedToDynamic, true);
    assert.equal(vhdxInfo(image).type, 'dynamic');
    assert.ok(fileSize(image) <= before - 19 * MiB, `file ${before} -> ${fileSize(image)}`);
    peersAgree(image, raw, 'after --to-dynamic compact');
  });

  it('grow past the BAT region: the BAT moves, the peers read data where it was and zeros past the old end', async () => {
    const image = join(dir.path, 'big.vhdx');
    const writes: Write[] = [{ offset: MiB, data: new Uint8Array(3 * MiB).fill(0xab) }, { offset: 9 * MiB, data: new Uint8Array(MiB).fill(0xcd) }];
    await makeImage(image, 10 * MiB, 'dynamic', writes);
    const report = vhdxJson<{ bat: string }>(['resize', image, '130G']);
    assert.equal(report.bat, 'relocated');
    assert.equal(qemuCheckProblem(qemuImgCheck(image)), null, 'qemu-img check');
    assert.equal(qemuImgInfo(image)['virtual-size'], 130 * GiB);
    const reads = [
      [0xab, MiB, 3 * MiB],
      [0xcd, 9 * MiB, MiB],
      [0, 10 * MiB, 8 * MiB],
      [0, 130 * GiB - 8 * MiB, 8 * MiB],
    ] as const;
    const io = run('qemu-io', ['-r', '-f', 'vhdx', ...reads.flatMap(([p, o, l]) => ['-c', `read -P 0x${p.toString(16)} ${o} ${l}`]), image]);
    assert.equal(io.code, 0, io.stderr);
    assert.doesNotMatch(io.stdout.toString(), /Pattern verification failed/);
    const script = [
      'import pyvhdi, sys',
      'f = pyvhdi.file(); f.open(sys.argv[1])',
      `checks = ${JSON.stringify(reads)}`,
      'print(f.get_media_size(), all(f.read_buffer_at_offset(l, o) == bytes([p]) * l for p, o, l in checks))',
    ].join('\n');
    assert.equal(runOk(SYSTEM_PYTHON, ['-c', script, image]).toString().trim(), `${130 * GiB} True`);
  });
});
