import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { run, tempDir, VHDX_BIN, patternBytes } from '../helpers.js';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { buildImage } from '../build-image.js';

const MiB = 1024 * 1024;

async function sample(dir: string): Promise<{ path: string; data: Uint8Array }> {
  const path = join(dir, 'sample.vhdx');
  const data = patternBytes(3 * MiB + 5, 77);
  const b = await NodeFileBackend.open(path, { readOnly: false, create: true });
  await buildImage(b, { virtualSize: 8 * MiB, blockSize: MiB, writes: [{ offset: 1000, data }] });
  await b.close();
  return { path, data };
}

function assertOneLineError(r: { code: number | null; stderr: string; stdout: Buffer }, pattern: RegExp): void {
  assert.notEqual(r.code, 0);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line expected, got: ${r.stderr}`);
  assert.match(lines[0]!, /^vhdx: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

describe('vhdx CLI', () => {
  test('info, map, read and convert on a sample image', async () => {
    const dir = tempDir();
    try {
      const { path, data } = await sample(dir.path);
      const info = JSON.parse(run(VHDX_BIN, ['info', path, '--json']).stdout.toString());
      assert.equal(info.virtualSize, 8 * MiB);
      assert.equal(info.blockSize, MiB);
      assert.equal(info.type, 'dynamic');
      assert.equal(info.logState, 'empty');
      const human = run(VHDX_BIN, ['info', path]).stdout.toString();
      assert.match(human, /virtual size:\s+8 MiB \(8388608 bytes\)/);

      const map = JSON.parse(run(VHDX_BIN, ['map', path, '--json']).stdout.toString());
      assert.deepEqual(map.map((e: { kind: string }) => e.kind), ['data', 'unallocated']);

      const read = run(VHDX_BIN, ['read', path, '--offset', '1000', '--length', '2K']);
      assert.equal(read.code, 0);
      assert.deepEqual(new Uint8Array(read.stdout), data.subarray(0, 2048));

      const out = join(dir.path, 'out.raw');
      assert.equal(run(VHDX_BIN, ['convert', path, out]).code, 0);
      const raw = readFileSync(out);
      assert.equal(raw.length, 8 * MiB);
      assert.deepEqual(new Uint8Array(raw.subarray(1000, 1000 + data.length)), data);
      assert.ok(statSync(out).blocks * 512 < 6 * MiB, 'unallocated space stays a hole');
      const piped = run(VHDX_BIN, ['convert', path, '-']);
      assert.equal(Buffer.compare(piped.stdout, raw), 0);
    } finally {
      dir.cleanup();
    }
  });

  test('errors are one line naming the file, with no stack trace', async () => {
    const dir = tempDir();
    try {
      const notVhdx = join(dir.path, 'plain.bin');
      writeFileSync(notVhdx, Buffer.alloc(4096, 7));
      assertOneLineError(run(VHDX_BIN, ['info', notVhdx]), /plain\.bin: not a VHDX file/);
      assertOneLineError(run(VHDX_BIN, ['info', join(dir.path, 'missing.vhdx')]), /missing\.vhdx: no such file/);
      const { path } = await sample(dir.path);
      const truncated = join(dir.path, 'cut.vhdx');
      writeFileSync(truncated, readFileSync(path).subarray(0, 700 * 1024));
      assertOneLineError(run(VHDX_BIN, ['info', truncated]), /cut\.vhdx: .*(truncat|shorter|ends)/);
      assertOneLineError(run(VHDX_BIN, ['read', path, '--offset', '8M', '--length', '1']), /outside the .*virtual disk/);
      assertOneLineError(run(VHDX_BIN, ['read', path, '--offset', 'ten', '--length', '1']), /--offset/);
      assertOneLineError(run(VHDX_BIN, ['info', path, '--bogus']), /bogus/);
      assertOneLineError(run(VHDX_BIN, ['frobnicate']), /unknown command/);
      const badOut = join(dir.path, 'no-such-dir', 'x.raw');
      assertOneLineError(run(VHDX_BIN, ['convert', path, badOut]), /no such file/);
      assert.equal(existsSync(badOut), false);
      const debug = run(VHDX_BIN, ['info', notVhdx, '--debug']);
      assert.match(debug.stderr, /\n\s+at /, '--debug shows the stack');
    } finally {
      dir.cleanup();
    }
  });

  test('human output gives sizes in IEC units; create also prints JSON', () => {
    const dir = tempDir();
    try {
      const img = join(dir.path, 'iec.vhdx');
      const created = run(VHDX_BIN, ['create', img, '3G', '--block-size', '1M']);
      assert.equal(created.stdout.toString(), `created ${img}: dynamic, 3 GiB virtual, 1 MiB blocks, 512-byte logical / 4096-byte physical sectors, file 4 MiB\n`);
      const json = JSON.parse(run(VHDX_BIN, ['create', img, '1536K', '--force', '--json', '--block-size', '1M']).stdout.toString());
      assert.equal(json.virtualSize, 1536 * 1024);
      assert.equal(json.file, img);
      assert.equal(run(VHDX_BIN, ['write', img, '--offset', '0', '--pattern', '1', '--length', '1']).code, 0);
      assert.match(run(VHDX_BIN, ['info', img]).stdout.toString(), /^log: +empty \(1 MiB at file offset 1 MiB\)$/m);
      const map = run(VHDX_BIN, ['map', img]).stdout.toString().split('\n');
      assert.match(map[1]!, /^ +0x0 +0x100000 +1 MiB  data /);
      assert.match(map[2]!, /^ +0x100000 +0x80000 +512 KiB  unallocated /);
      assert.equal(map[3], '2 extents; 1 MiB of 1.5 MiB stored in the file');
    } finally {
      dir.cleanup();
    }
  });

  test('--help and --version', () => {
    const help = run(VHDX_BIN, ['--help']);
    assert.equal(help.code, 0);
    for (const c of ['info', 'map', 'read', 'convert', 'demo']) assert.match(help.stdout.toString(), new RegExp(`\\b${c}\\b`));
    const commandHelp = run(VHDX_BIN, ['convert', '--help']);
    assert.match(commandHelp.stdout.toString(), /examples:/);
    assert.match(run(VHDX_BIN, ['--version']).stdout.toString(), /^vhdx \d+\.\d+\.\d+/);
    // The bundled CLI finds the native helper (built by the install on Linux) and says so.
    const expected = process.platform === 'linux' && process.env.VHDX_NATIVE !== '0' ? /\(native helper: fallocate, copy_file_range, sync_file_range, vmsplice, SEEK_DATA, aligned buffers\)/ : /no native helper/;
    assert.match(run(VHDX_BIN, ['--version']).stdout.toString(), expected);
    assert.match(run(VHDX_BIN, ['--version'], { env: { VHDX_NATIVE: '0' } }).stdout.toString(), /\(no native helper: plain file I\/O\)/);
  });

  test('demo runs end to end', () => {
    const r = run(VHDX_BIN, ['demo']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), /verified/);
    assert.match(r.stdout.toString(), /fully-present/);
  });
});
