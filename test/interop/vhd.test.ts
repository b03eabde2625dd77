/**
 * VHD (v1) against the peers. We write fixed and dynamic VHDs (from raw and from a VHDX with scattered
 * data) and qemu-img (`-f vpc`) and libvhdi read them back byte for byte; qemu-img writes fixed and dynamic VHDs
 * and we read them (to raw, byte-compared, and to VHDX, which qemu-img compares with the raw).
 *
 * QEMU takes the size of a VHD whose creator it does not know (ours is `vhdx`) from the CHS geometry
 * unless the geometry is the largest; we write the appendix's geometry only where it describes the size
 * exactly, else the largest, so QEMU reads our files at their full size with no option (checked for
 * both cases), as Hyper-V, Azure and libvhdi do.
 */
import assert from 'node:assert/strict';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { VHDX_BIN, requireProgram, run, runOk, sha256File, tempDir, tiledBytes } from '../helpers.js';
import { compareFiles, fillWrite, libvhdiRead, requirePyvhdi, SMALL_SIZE, writeModelRaw, type Write } from './util.js';
import { chsGeometry } from '../../src/vhd/footer.js';

const MiB = 1024 * 1024;
/** Scattered data: an unaligned run, a run across a 2 MiB block boundary, random bytes, the last sector. */
const WRITES: Write[] = [
  fillWrite(1000, 3001, 0x11),
  { offset: 6 * MiB - 777, data: tiledBytes(MiB + 1555, 5) },
  fillWrite(17 * MiB + 512, 64 * 1024, 0x33),
  { offset: 30 * MiB + 5, data: tiledBytes(200_000, 6) },
  fillWrite(SMALL_SIZE - 512, 512, 0x77),
];
const EPOCH = '1700000000';

/** qemu-img's view of one of our VHDs, with no option: its size as QEMU works it out by itself. */
function qemuVpc(path: string): string {
  return `driver=vpc,file.filename=${path}`;
}

function vhdx(args: string[], env: Record<string, string> = {}): void {
  runOk(VHDX_BIN, args, { env: { SOURCE_DATE_EPOCH: EPOCH, ...env } });
}

/** Bytes 68-83 of the last sector: the footer's Unique Id, read without our codec. */
function footerUniqueId(path: string): string {
  const bytes = readFileSync(path);
  return bytes.subarray(bytes.length - 512 + 68, bytes.length - 512 + 84).toString('hex');
}

describe('VHD interop with qemu-img and libvhdi', () => {
  let dir: { path: string; cleanup: () => void };
  let raw: string;
  const at = (name: string): string => join(dir.path, name);

  before(() => {
    requireProgram('qemu-img');
    requirePyvhdi();
    dir = tempDir('vhdx-vhd-interop-');
    raw = at('expected.raw');
    writeModelRaw(raw, SMALL_SIZE, WRITES);
  });
  after(() => dir.cleanup());

  it('our fixed VHD from raw: qemu-img and libvhdi read the same bytes; the payload stays sparse', () => {
    const vhd = at('from-raw.vhd');
    vhdx(['convert', raw, vhd]);
    assert.equal(statSync(vhd).size, SMALL_SIZE + 512);
    assert.ok(statSync(vhd).blocks * 512 <= 6 * 2 * MiB + 64 * 1024, 'only the six 2 MiB chunks holding data are written');
    const cmp = run('qemu-img', ['compare', '--image-opts', qemuVpc(vhd), `driver=raw,file.filename=${raw}`]);
    assert.equal(cmp.code, 0, cmp.stdout.toString() + cmp.stderr);
    const back = at('from-raw.qemu.raw');
    runOk('qemu-img', ['convert', '--image-opts', qemuVpc(vhd), '-O', 'raw', back]);
    assert.equal(compareFiles(back, raw), null);
    const libvhdi = libvhdiRead(vhd, raw);
    assert.equal(libvhdi.mediaSize, SMALL_SIZE);
    assert.equal(libvhdi.firstDifference, null);
    // QEMU sizes it as the footer says: the appendix's geometry would describe a smaller disk.
    const g = chsGeometry(SMALL_SIZE);
    assert.ok(g.cylinders * g.heads * g.sectorsPerTrack * 512 < SMALL_SIZE, 'the geometry alone would lose the last sectors');
    const info = JSON.parse(runOk('qemu-img', ['info', '--output=json', '-f', 'vpc', vhd]).toString()) as { 'virtual-size': number };
    assert.equal(info['virtual-size'], SMALL_SIZE);
    // A size the geometry describes exactly keeps the appendix's geometry, and QEMU agrees on it too.
    const exactSize = 2 * 16 * 63 * 512; // 2 cylinders of 16 heads and 63 sectors
    const exactRaw = at('exact.raw');
    writeModelRaw(exactRaw, exactSize, [fillWrite(exactSize - 512, 512, 0x5a)]);
    const exact = at('exact.vhd');
    vhdx(['convert', exactRaw, exact, '-O', 'vhd']);
    const exactInfo = JSON.parse(runOk('qemu-img', ['info', '--output=json', '-f', 'vpc', exact]).toString()) as { 'virtual-size': number };
    assert.equal(exactInfo['virtual-size'], exactSize);
    const exactCmp = run('qemu-img', ['compare', '--image-opts', qemuVpc(exact), `driver=raw,file.filename=${exactRaw}`]);
    assert.equal(exactCmp.code, 0, exactCmp.stdout.toString() + exactCmp.stderr);
  });

  it('our fixed VHD from a qemu-made VHDX: same bytes, the Virtual Disk ID kept, reproducible with SOURCE_DATE_EPOCH', () => {
    const source = at('qemu.vhdx');
    runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=8M', raw, source]);
    const a = at('from-vhdx-a.vhd');
    const b = at('from-vhdx-b.vhd');
    vhdx(['convert', source, a]);
    vhdx(['convert', source, b, '-O', 'vhd']);
    const cmp = run('qemu-img', ['compare', '--image-opts', qemuVpc(a), `driver=raw,file.filename=${raw}`]);
    assert.equal(cmp.code, 0, cmp.stdout.toString() + cmp.stderr);
    assert.equal(libvhdiRead(a, raw).firstDifference, null);
    assert.equal(sha256File(a), sha256File(b), 'same source, same SOURCE_DATE_EPOCH: same bytes');
    const id = JSON.parse(runOk(VHDX_BIN, ['info', source, '--json']).toString()) as { virtualDiskId: string };
    const vhdInfo = JSON.parse(runOk(VHDX_BIN, ['info', a, '--json']).toString()) as { uniqueId: string; created: string };
    assert.equal(vhdInfo.uniqueId, id.virtualDiskId);
    assert.equal(vhdInfo.created, new Date(Number(EPOCH) * 1000).toISOString());
    // And the VHD converted back to VHDX keeps reading the same.
    const again = at('again.vhdx');
    vhdx(['convert', a, again]);
    assert.equal(run('qemu-img', ['compare', '-f', 'vhdx', '-F', 'raw', again, raw]).code, 0);
  });

  for (const blockSize of [null, '512K'] as const) {
    it(`our dynamic VHD (${blockSize ?? 'default 2 MiB'} blocks) from raw and from VHDX: qemu-img and libvhdi read the same bytes; only blocks with data are stored`, () => {
      const source = at('dyn-source.vhdx');
      if (blockSize === null) runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'vhdx', '-o', 'subformat=dynamic,block_size=1M', raw, source]);
      const fromRaw = at(`dyn-raw-${blockSize}.vhd`);
      const fromVhdx = at(`dyn-vhdx-${blockSize}.vhd`);
      const extra = blockSize === null ? [] : ['--block-size', blockSize];
      vhdx(['convert', raw, fromRaw, '--type', 'dynamic', ...extra]);
      vhdx(['convert', blockSize === null ? source : raw, fromVhdx, '-O', 'vhd', '--type', 'dynamic', ...extra]);
      const unit = blockSize === null ? 2 * MiB : 512 * 1024;
      const touched = new Set<number>();
      for (const w of WRITES) for (let b = Math.floor(w.offset / unit); b <= Math.floor((w.offset + w.data.length - 1) / unit); b++) touched.add(b);
      for (const vhd of [fromRaw, fromVhdx]) {
        const info = JSON.parse(runOk('qemu-img', ['info', '--output=json', vhd]).toString()) as { format: string; 'virtual-size': number; 'cluster-size': number };
        assert.equal(info.format, 'vpc');
        assert.equal(info['virtual-size'], SMALL_SIZE);
        assert.equal(info['cluster-size'], unit);
        const cmp = run('qemu-img', ['compare', '--image-opts', qemuVpc(vhd), `driver=raw,file.filename=${raw}`]);
        assert.equal(cmp.code, 0, cmp.stdout.toString() + cmp.stderr);
        const libvhdi = libvhdiRead(vhd, raw);
        assert.equal(libvhdi.mediaSize, SMALL_SIZE);
        assert.equal(libvhdi.firstDifference, null);
        const ours = JSON.parse(runOk(VHDX_BIN, ['info', vhd, '--json']).toString()) as { type: string; allocatedBytes: number };
        assert.equal(ours.type, 'dynamic');
        assert.equal(ours.allocatedBytes, touched.size * unit, 'blocks stored: those the writes touched');
        assert.ok(statSync(vhd).size <= 64 * 1024 + touched.size * (unit + 4096) + 512, 'file: headers, BAT, the stored blocks, footer');
      }
    });
  }

  it('vhdx map of our dynamic VHD and of qemu-img\'s: the same runs and file offsets as qemu-img map', () => {
    const ours = at('map-ours.vhd');
    vhdx(['convert', raw, ours, '--type', 'dynamic']);
    const theirs = at('map-qemu.vhd');
    runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=dynamic,force_size=on', raw, theirs]);
    for (const vhd of [ours, theirs]) {
      type QemuRun = { start: number; length: number; data: boolean; offset?: number };
      const expected = (JSON.parse(runOk('qemu-img', ['map', '--output=json', '-f', 'vpc', vhd]).toString()) as QemuRun[]).map((r) =>
        r.data ? { offset: r.start, length: r.length, kind: 'data', fileOffset: r.offset } : { offset: r.start, length: r.length, kind: 'unallocated' },
      );
      const mapped = JSON.parse(runOk(VHDX_BIN, ['map', vhd, '--json']).toString()) as { offset: number; length: number; kind: string; fileOffset?: number }[];
      // qemu-img joins neighbouring runs whose file offsets are contiguous; so do we, block by block.
      assert.deepEqual(mapped, expected, vhd);
    }
  });

  for (const subformat of ['fixed', 'dynamic'] as const) {
    it(`qemu-img's ${subformat} VHD (force_size=on): we read it to raw and to VHDX`, () => {
      const vhd = at(`qemu-${subformat}.vhd`);
      runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', '-o', `subformat=${subformat},force_size=on`, raw, vhd]);
      const info = JSON.parse(runOk(VHDX_BIN, ['info', vhd, '--json']).toString()) as { type: string; virtualSize: number; creator: string };
      assert.equal(info.type, subformat);
      assert.equal(run(VHDX_BIN, ['check', vhd]).code, 0, 'qemu-img\'s VHD checks clean');
      assert.equal(info.virtualSize, SMALL_SIZE);
      const back = at(`qemu-${subformat}.raw`);
      vhdx(['convert', vhd, back]);
      assert.equal(compareFiles(back, raw), null);
      const asVhdx = at(`qemu-${subformat}.vhdx`);
      vhdx(['convert', vhd, asVhdx, '--block-size', '1M']);
      const cmp = run('qemu-img', ['compare', '-f', 'vhdx', '-F', 'raw', asVhdx, raw]);
      assert.equal(cmp.code, 0, cmp.stdout.toString() + cmp.stderr);
      assert.equal(run(VHDX_BIN, ['compare', vhd, raw]).code, 0);
      // Only the 1 MiB blocks the writes touched are allocated in the VHDX.
      const touched = new Set<number>();
      for (const w of WRITES) for (let b = Math.floor(w.offset / MiB); b <= Math.floor((w.offset + w.data.length - 1) / MiB); b++) touched.add(b);
      const allocated = JSON.parse(runOk(VHDX_BIN, ['info', asVhdx, '--json']).toString()) as { allocatedBytes: number };
      assert.equal(allocated.allocatedBytes, touched.size * MiB);
    });
  }

  it("qemu-img's dynamic VHD without force_size (size rounded to whole cylinders): we read its Current Size", () => {
    const vhd = at('qemu-chs.vhd');
    runOk('qemu-img', ['convert', '-f', 'raw', '-O', 'vpc', '-o', 'subformat=dynamic', raw, vhd]);
    const qemuSize = (JSON.parse(runOk('qemu-img', ['info', '--output=json', vhd]).toString()) as { 'virtual-size': number })['virtual-size'];
    const info = JSON.parse(runOk(VHDX_BIN, ['info', vhd, '--json']).toString()) as { virtualSize: number };
    assert.equal(info.virtualSize, qemuSize);
    const back = at('qemu-chs.raw');
    vhdx(['convert', vhd, back]);
    assert.equal(statSync(back).size, qemuSize);
    assert.equal(run('qemu-img', ['compare', '-f', 'raw', '-F', 'raw', back, raw]).code, 0);
  });

  it('--azure: the size rounded up to a whole MiB; qemu-img and libvhdi read the data and the zero padding', () => {
    const vhd = at('azure.vhd');
    vhdx(['convert', raw, vhd, '--azure']);
    const size = Math.ceil(SMALL_SIZE / MiB) * MiB;
    assert.equal(statSync(vhd).size, size + 512);
    const info = JSON.parse(runOk('qemu-img', ['info', '--output=json', '--image-opts', qemuVpc(vhd)]).toString()) as { 'virtual-size': number };
    assert.equal(info['virtual-size'], size);
    // Different sizes, the extra part zeros: identical for qemu-img compare (not --strict).
    assert.equal(run('qemu-img', ['compare', '--image-opts', qemuVpc(vhd), `driver=raw,file.filename=${raw}`]).code, 0);
    assert.equal(libvhdiRead(vhd).mediaSize, size);
    assert.match(footerUniqueId(vhd), /^[0-9a-f]{32}$/);
  });
});
