/**
 * VHD (v1) through the real `bin/vhdx`: convert in and out of VHD (fixed, dynamic, differencing with the
 * parent found through its locator), info and compare on VHD input, and the error contract (one line,
 * exit 2 for usage, 1 for a bad file, no partial output left).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, renameSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { patternBytes, requireProgram, run, runAsync, tempDir, VHDX_BIN, type RunResult } from '../helpers.js';
import { startServe } from '../nbd/util.js';
import { buildFixed, buildVhd, TABLE_OFFSET } from '../vhd/build-vhd.js';

const MiB = 1024 * 1024;

function vhdx(args: string[], env: Record<string, string> = {}): RunResult {
  return run(VHDX_BIN, args, { env });
}

function assertError(r: RunResult, status: 1 | 2, pattern: RegExp, what: string): void {
  assert.equal(r.code, status, `${what}: exit status (stderr: ${r.stderr})`);
  assert.match(r.stderr, /^vhdx: [^\n]*\n$/, `${what}: exactly one line starting with "vhdx: "`);
  assert.match(r.stderr, pattern, what);
  assert.doesNotMatch(r.stderr, /\bat .*:\d+:\d+|node:internal|Error:/, `${what}: no stack trace`);
}

describe('vhdx with VHD files', () => {
  const dir = tempDir();
  const at = (name: string): string => join(dir.path, name);
  const PARENT_ID = Uint8Array.from({ length: 16 }, (_, i) => 0x40 + i);
  const parentData = patternBytes(4 * MiB, 21);
  const childBlock = patternBytes(MiB, 22);
  /** The child's view: the parent with block 2 replaced. */
  const childExpected = parentData.slice();
  childExpected.set(childBlock, 2 * MiB);

  before(() => {
    writeFileSync(at('parent.vhd'), buildFixed(parentData, PARENT_ID));
    writeFileSync(
      at('child.vhd'),
      buildVhd({
        type: 'differencing',
        size: 4 * MiB,
        blockSize: MiB,
        blocks: new Map([[2, { data: childBlock }]]),
        parentUniqueId: PARENT_ID,
        parentName: 'parent.vhd',
        locators: [{ code: 'W2ku', path: 'D:\\gone\\parent.vhd' }, { code: 'W2ru', path: '.\\parent.vhd' }],
      }),
    );
    writeFileSync(at('data.raw'), parentData);
  });
  after(() => dir.cleanup());

  test('info: type, size, geometry and creator of a VHD; --json', () => {
    const r = vhdx(['info', at('parent.vhd')]);
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout.toString();
    assert.match(text, /^format: +VHD \(v1\)$/m);
    assert.match(text, /^type: +fixed$/m);
    assert.match(text, /^virtual size: +4 MiB \(4194304 bytes\)$/m);
    assert.match(text, /^geometry: +\d+ cylinders, \d+ heads, \d+ sectors per track/m);
    assert.match(text, /^creator: +test 1\.0 \(Wi2k\)$/m);
    const json = JSON.parse(vhdx(['info', at('child.vhd'), '--json']).stdout.toString()) as Record<string, unknown>;
    assert.equal(json.type, 'differencing');
    assert.equal(json.blockSize, MiB);
    assert.equal(json.parentName, 'parent.vhd');
    assert.equal(json.allocatedBytes, MiB);
    const chain = JSON.parse(vhdx(['info', at('child.vhd'), '--json', '--chain']).stdout.toString()) as { type: string }[];
    assert.deepEqual(chain.map((l) => l.type), ['differencing', 'fixed']);
  });

  test('a differencing VHD converts with its parent found through the W2ru locator; compare sees the chain', () => {
    assert.equal(vhdx(['convert', at('child.vhd'), at('child.raw')]).code, 0);
    assert.deepEqual(new Uint8Array(readFileSync(at('child.raw'))), childExpected);
    assert.equal(vhdx(['compare', at('child.vhd'), at('child.raw')]).code, 0);
    assert.equal(vhdx(['compare', at('child.vhd'), at('data.raw')]).code, 1);
    assert.equal(vhdx(['compare', at('parent.vhd'), at('data.raw')]).code, 0);
    // To VHDX, to a fixed VHD, and raw to standard output.
    assert.equal(vhdx(['convert', at('child.vhd'), at('child.vhdx')]).code, 0);
    assert.equal(vhdx(['compare', at('child.vhdx'), at('child.raw'), '--strict']).code, 0);
    assert.equal(vhdx(['convert', at('child.vhd'), at('flat.vhd')]).code, 0);
    assert.equal(statSync(at('flat.vhd')).size, 4 * MiB + 512);
    assert.deepEqual(new Uint8Array(readFileSync(at('flat.vhd')).subarray(0, 4 * MiB)), childExpected);
    const out = vhdx(['convert', at('child.vhd'), '-']);
    assert.equal(out.code, 0, out.stderr);
    assert.deepEqual(new Uint8Array(out.stdout), childExpected);
  });

  test('a missing or wrong parent is one line naming the child; --parent gives it', () => {
    renameSync(at('parent.vhd'), at('moved.vhd'));
    try {
      assertError(vhdx(['convert', at('child.vhd'), at('x.raw')]), 1, /child\.vhd: parent not found \(tried .*parent\.vhd.*\); give its path with --parent/, 'missing parent');
      assert.ok(!existsSync(at('x.raw')));
      assert.equal(vhdx(['convert', at('child.vhd'), at('x.raw'), '--parent', at('moved.vhd')]).code, 0);
      writeFileSync(at('other.vhd'), buildFixed(parentData, new Uint8Array(16).fill(9)));
      assertError(vhdx(['convert', at('child.vhd'), at('y.raw'), '--parent', at('other.vhd')]), 1, /child\.vhd: parent .*other\.vhd has Unique Id \{09090909-/, 'wrong parent');
      assert.ok(!existsSync(at('y.raw')));
    } finally {
      renameSync(at('moved.vhd'), at('parent.vhd'));
    }
  });

  test('raw to VHD by extension or -O vhd; --azure rounds up; SOURCE_DATE_EPOCH fixes the bytes', () => {
    const odd = at('odd.raw');
    writeFileSync(odd, patternBytes(3 * MiB + 1000, 5));
    const env = { SOURCE_DATE_EPOCH: '946771200' }; // 2000-01-02, a day after the VHD epoch
    assert.equal(vhdx(['convert', odd, at('odd.vhd')], env).code, 0);
    assert.equal(statSync(at('odd.vhd')).size, 3 * MiB + 1024 + 512, 'padded to whole sectors');
    assert.equal(vhdx(['convert', odd, at('odd.img'), '-O', 'vhd', '--azure'], env).code, 0);
    assert.equal(statSync(at('odd.img')).size, 4 * MiB + 512);
    const info = JSON.parse(vhdx(['info', at('odd.img'), '--json']).stdout.toString()) as { virtualSize: number; created: string; type: string };
    assert.deepEqual([info.type, info.virtualSize, info.created], ['fixed', 4 * MiB, '2000-01-02T00:00:00.000Z']);
    assert.equal(vhdx(['convert', odd, at('odd-dynamic.vhd'), '--type', 'dynamic', '--block-size', '1M'], env).code, 0);
    const dynamic = JSON.parse(vhdx(['info', at('odd-dynamic.vhd'), '--json']).stdout.toString()) as { virtualSize: number; type: string; blockSize: number };
    assert.deepEqual([dynamic.type, dynamic.virtualSize, dynamic.blockSize], ['dynamic', 3 * MiB + 1024, MiB]);
    // No CHS geometry describes 3 MiB + 1 KiB exactly: the largest is written, and info says what it means.
    assert.match(vhdx(['info', at('odd-dynamic.vhd')]).stdout.toString(), /^geometry: +65535 cylinders, 16 heads, 255 sectors per track \(the largest: the size is Current Size\)$/m);
    assert.equal(vhdx(['convert', at('odd-dynamic.vhd'), at('odd-back.raw')]).code, 0);
    const back = readFileSync(at('odd-back.raw'));
    assert.equal(back.length, 3 * MiB + 1024);
    assert.deepEqual(new Uint8Array(back.subarray(0, 3 * MiB + 1000)), patternBytes(3 * MiB + 1000, 5));
    assert.ok(back.subarray(3 * MiB + 1000).every((b) => b === 0), 'the padding to a whole sector reads as zeros');
    const piece = vhdx(['read', at('odd-dynamic.vhd'), '--offset', String(MiB - 100), '--length', String(MiB + 300)]);
    assert.equal(piece.code, 0, piece.stderr);
    assert.deepEqual(new Uint8Array(piece.stdout), patternBytes(3 * MiB + 1000, 5).subarray(MiB - 100, 2 * MiB + 200), 'read of a VHD, across a block boundary');
    assertError(vhdx(['read', at('odd-dynamic.vhd'), '--offset', String(3 * MiB + 1024), '--length', '1']), 1, /outside the 3146752-byte virtual disk/, 'read past the end of a VHD');
  });

  test('usage errors exit 2, naming the option', () => {
    const raw = at('data.raw');
    assertError(vhdx(['convert', raw, at('a.vhdx'), '--azure']), 2, /--azure applies to VHD output only/, '--azure with VHDX output');
    assertError(vhdx(['convert', raw, at('a.vhd'), '--logical-sector-size', '4096']), 2, /apply to VHDX output only \(a VHD has 512-byte sectors\)/, 'sector size with VHD output');
    assertError(vhdx(['convert', raw, at('a.vhd'), '--block-size', '1M']), 2, /--block-size applies to a dynamic VHD only \(--type dynamic\)/, '--block-size with a fixed VHD');
    assertError(vhdx(['convert', raw, at('a.vhd'), '--type', 'dynamic', '--azure']), 2, /--azure needs a fixed VHD/, '--azure with a dynamic VHD');
    assertError(vhdx(['convert', raw, at('a.vhd'), '--type', 'dynamic', '--block-size', '3M']), 2, /VHD block size 3145728 is not a power of two from 512 KiB to 256 MiB/, 'a bad VHD block size');
    assertError(vhdx(['convert', raw, at('a.raw'), '--type', 'fixed']), 2, /apply to VHDX and VHD output only/, '--type with raw output');
    assert.equal(vhdx(['convert', raw, at('checked.vhd'), '--type', 'dynamic']).code, 0);
    const checked = vhdx(['check', at('checked.vhd')]);
    assert.equal(checked.code, 0, checked.stderr);
    assert.match(checked.stdout.toString(), /checked\.vhd: clean\n$/);
    assertError(vhdx(['check', at('checked.vhd'), '--repair']), 2, /--repair works on VHDX images; a VHD is checked only/, 'check --repair of a VHD');
    assertError(vhdx(['map', raw]), 1, /data\.raw: not a VHDX file .* nor a VHD \(no footer\): a raw file has no block map/, 'map of a raw file');
    assertError(vhdx(['convert', raw, '-', '-O', 'vhd']), 2, /only raw output can go to standard output/, 'VHD to stdout');
    assertError(vhdx(['convert', raw, at('a.out'), '-O', 'vpc']), 2, /-O must be raw, vhdx or vhd, not "vpc" \(a VHD, as qemu-img calls it, is -O vhd here\)/, '-O vpc');
    assertError(vhdx(['convert', raw, at('a.vhd')], { SOURCE_DATE_EPOCH: 'yesterday' }), 2, /SOURCE_DATE_EPOCH must be whole seconds/, 'bad SOURCE_DATE_EPOCH');
    assert.ok(!existsSync(at('a.vhd')) && !existsSync(at('a.vhdx')));
    const help = vhdx(['convert', '--help']).stdout.toString();
    assert.match(help, /-O raw\|vhdx\|vhd/);
    assert.match(help, /--azure/);
  });

  test('serve --read-only of a VHD: nbdinfo sees its size and allocation, nbdcopy reads the same bytes; writable is refused', async () => {
    for (const p of ['nbdinfo', 'nbdcopy']) requireProgram(p);
    const source = at('served.raw');
    const data = new Uint8Array(12 * MiB);
    data.set(patternBytes(3 * MiB, 8), 2 * MiB + 4096); // inside blocks 1 and 2 (2 MiB blocks)
    writeFileSync(source, data);
    const vhd = at('served.vhd');
    assert.equal(vhdx(['convert', source, vhd, '--type', 'dynamic']).code, 0);
    assertError(vhdx(['serve', vhd, '--port', '0']), 2, /a VHD can only be served with --read-only/, 'serve a VHD writable');
    const served = await startServe(vhd, ['--read-only']);
    try {
      const info = await runAsync('nbdinfo', ['--json', served.uri]);
      assert.equal(info.code, 0, info.stderr);
      const exported = (JSON.parse(info.stdout.toString()) as { exports: { 'export-size': number; is_read_only: boolean; description?: string }[] }).exports[0]!;
      assert.deepEqual([exported['export-size'], exported.is_read_only, exported.description], [12 * MiB, true, 'VHD dynamic image']);
      const map = await runAsync('nbdinfo', ['--map', '--json', served.uri]);
      assert.equal(map.code, 0, map.stderr);
      const runs = (JSON.parse(map.stdout.toString()) as { offset: number; length: number; type: number }[]).map((r) => [r.offset, r.length, r.type]);
      // Block 0 and blocks 3-5 hold nothing: holes reading as zeros (type 3); blocks 1-2 are data (type 0).
      assert.deepEqual(runs, [[0, 2 * MiB, 3], [2 * MiB, 4 * MiB, 0], [6 * MiB, 6 * MiB, 3]]);
      const out = at('served-copy.raw');
      const copy = await runAsync('nbdcopy', [served.uri, out]);
      assert.equal(copy.code, 0, copy.stderr);
      assert.ok(readFileSync(out).equals(readFileSync(source)), 'nbdcopy gives the disk');
    } finally {
      const { code } = await served.stop();
      assert.equal(code, 0, served.stderr());
    }
  });

  test('a damaged VHD is one line naming the file, exit 1, and no output is left', () => {
    const good = buildVhd({ type: 'dynamic', size: 4 * MiB, blockSize: MiB, blocks: new Map([[1, { data: childBlock }]]) });
    const hostile = good.slice();
    new DataView(hostile.buffer).setUint32(TABLE_OFFSET + 4, 0x00ff_0000); // block 1 far past the end
    writeFileSync(at('hostile.vhd'), hostile);
    assertError(vhdx(['convert', at('hostile.vhd'), at('h.raw')]), 1, /hostile\.vhd: VHD BAT entry 1 \(sector 16711680, file offset \d+\) points outside the \d+-byte file/, 'BAT entry past the end');
    assert.ok(!existsSync(at('h.raw')));
    const cut = good.slice();
    cut[cut.length - 400]! ^= 1; // end footer damaged: the copy at 0 is used, with a warning in info
    writeFileSync(at('cut.vhd'), cut);
    assert.match(vhdx(['info', at('cut.vhd')]).stdout.toString(), /^warning: +the footer at the end of the file is damaged/m);
    const fixed = buildFixed(new Uint8Array(MiB));
    fixed[fixed.length - 400]! ^= 1;
    writeFileSync(at('badfixed.vhd'), fixed);
    assertError(vhdx(['info', at('badfixed.vhd')]), 1, /badfixed\.vhd: VHD footer checksum 0x[0-9a-f]+ does not match/, 'fixed footer damaged');
    assertError(vhdx(['compare', at('badfixed.vhd'), at('data.raw')]), 2, /badfixed\.vhd: VHD footer checksum/, 'compare: errors exit 2');
  });
});
