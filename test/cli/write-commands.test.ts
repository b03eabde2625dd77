import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { run, tempDir, VHDX_BIN, patternBytes } from '../helpers.js';

const MiB = 1024 * 1024;

function ok(args: string[], input?: Uint8Array): Buffer {
  const r = run(VHDX_BIN, args, input ? { input } : {});
  assert.equal(r.code, 0, `vhdx ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

function fails(args: string[], pattern: RegExp): void {
  const r = run(VHDX_BIN, args);
  assert.notEqual(r.code, 0, `vhdx ${args.join(' ')} should fail`);
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, r.stderr);
  assert.match(lines[0]!, pattern);
}

describe('create, write and convert on the command line', () => {
  test('create with Hyper-V defaults, write a pattern and a file, read it back', () => {
    const dir = tempDir();
    try {
      const img = join(dir.path, 'disk.vhdx');
      ok(['create', img, '64M']);
      const info = JSON.parse(ok(['info', img, '--json']).toString());
      assert.equal(info.type, 'dynamic');
      assert.equal(info.blockSize, 32 * MiB);
      assert.equal(info.logicalSectorSize, 512);
      assert.equal(info.physicalSectorSize, 4096);
      assert.equal(info.virtualSize, 64 * MiB);

      ok(['write', img, '--offset', '1000', '--pattern', '0xab', '--length', '3K']);
      const data = patternBytes(70_000, 5);
      const src = join(dir.path, 'data.bin');
      writeFileSync(src, data);
      ok(['write', img, '--offset', '40M', '--from', src]);
      ok(['write', img, '--offset', '50M', '--from', '-'], data.subarray(0, 4096));
      assert.deepEqual(new Uint8Array(ok(['read', img, '--offset', '1000', '--length', '3K'])), new Uint8Array(3072).fill(0xab));
      assert.deepEqual(new Uint8Array(ok(['read', img, '--offset', '40M', '--length', '70000'])), data);
      assert.deepEqual(new Uint8Array(ok(['read', img, '--offset', '50M', '--length', '4096'])), data.subarray(0, 4096));
      assert.equal(JSON.parse(ok(['info', img, '--json']).toString()).logState, 'empty');
      assert.equal(existsSync(`${img}.lock`), false, 'the write lock is released');
    } finally {
      dir.cleanup();
    }
  });

  test('a differencing disk gets 2 MiB blocks by default, as Hyper-V gives its children, or the block size asked for', () => {
    const dir = tempDir();
    try {
      const base = join(dir.path, 'base.vhdx');
      ok(['create', base, '64M', '--block-size', '8M']);
      ok(['write', base, '--offset', '5M', '--pattern', '0x5a', '--length', '4K']);
      for (const [args, expected] of [[[], 2 * MiB], [['--block-size', '16M'], 16 * MiB]] as const) {
        const child = join(dir.path, `child-${expected}.avhdx`);
        ok(['create', child, '--parent', base, ...args]);
        const info = JSON.parse(ok(['info', child, '--json']).toString());
        assert.equal(info.type, 'differencing');
        assert.equal(info.blockSize, expected, `create --parent ${args.join(' ')}`);
        assert.equal(info.virtualSize, 64 * MiB);
        ok(['write', child, '--offset', '5M', '--pattern', '0xc3', '--length', '512']);
        const read = new Uint8Array(ok(['read', child, '--offset', '5M', '--length', '4K']));
        assert.deepEqual(read.subarray(0, 512), new Uint8Array(512).fill(0xc3));
        assert.deepEqual(read.subarray(512), new Uint8Array(4096 - 512).fill(0x5a), 'the rest of the sector run comes from the parent');
      }
    } finally {
      dir.cleanup();
    }
  });

  test('create validates every option with a clear error and leaves nothing behind', () => {
    const dir = tempDir();
    try {
      const img = join(dir.path, 'x.vhdx');
      fails(['create', img, '1G', '--block-size', '3M'], /block size .* power of two/);
      fails(['create', img, '1G', '--block-size', '512M'], /block size/);
      fails(['create', img, '1000', '--logical-sector-size', '4096'], /multiple of the 4096-byte logical sector/);
      fails(['create', img, '65T'], /64 TiB/);
      fails(['create', img, '1G', '--logical-sector-size', '1024'], /logical sector size/);
      fails(['create', img, '1G', '--type', 'sparse'], /--type/);
      assert.equal(existsSync(img), false);
      ok(['create', img, '8M']);
      fails(['create', img, '8M'], /already exists/);
      ok(['create', img, '8M', '--force', '--type', 'fixed', '--block-size', '1M']);
      assert.equal(JSON.parse(ok(['info', img, '--json']).toString()).type, 'fixed');
    } finally {
      dir.cleanup();
    }
  });

  test('fixed images are fully allocated unless --sparse, and never grow on write', () => {
    const dir = tempDir();
    try {
      const full = join(dir.path, 'full.vhdx');
      const sparse = join(dir.path, 'sparse.vhdx');
      ok(['create', full, '16M', '--type', 'fixed', '--block-size', '1M']);
      ok(['create', sparse, '16M', '--type', 'fixed', '--block-size', '1M', '--sparse']);
      const size = statSync(full).size;
      assert.ok(statSync(full).blocks * 512 >= size, 'no holes');
      assert.ok(statSync(sparse).blocks * 512 < size / 2, '--sparse leaves the payload as a hole');
      ok(['write', full, '--offset', '3M', '--pattern', '7', '--length', '2M']);
      assert.equal(statSync(full).size, size);
    } finally {
      dir.cleanup();
    }
  });

  test('convert raw -> vhdx (dynamic stays sparse) -> raw round trip, and stdin input', () => {
    const dir = tempDir();
    try {
      const raw = join(dir.path, 'in.raw');
      const bytes = new Uint8Array(24 * MiB);
      bytes.set(patternBytes(MiB + 3, 1), 0);
      bytes.set(patternBytes(5000, 2), 20 * MiB + 17);
      writeFileSync(raw, bytes);
      const img = join(dir.path, 'out.vhdx');
      ok(['convert', raw, img, '--block-size', '1M']);
      const map = JSON.parse(ok(['map', img, '--json']).toString());
      const stored = map.filter((e: { kind: string }) => e.kind === 'data').reduce((n: number, e: { length: number }) => n + e.length, 0);
      assert.equal(stored, 3 * MiB, 'only the three non-zero 1 MiB blocks are stored');
      const back = join(dir.path, 'back.raw');
      ok(['convert', img, back]);
      assert.ok(Buffer.from(bytes).equals(readFileSync(back)));

      const fromStdin = join(dir.path, 'stdin.vhdx');
      ok(['convert', '-', fromStdin, '--size', '24M', '--type', 'fixed', '--block-size', '2M'], bytes);
      assert.equal(JSON.parse(ok(['info', fromStdin, '--json']).toString()).type, 'fixed');
      assert.ok(Buffer.from(bytes).equals(ok(['convert', fromStdin, '-'])));
      fails(['convert', '-', join(dir.path, 'nosize.vhdx')], /--size/);
      fails(['convert', raw, join(dir.path, 'o.raw')], /raw to raw/);
      fails(['convert', img, join(dir.path, 'o.raw'), '--block-size', '1M'], /apply to VHDX and VHD output only/);
    } finally {
      dir.cleanup();
    }
  });

  test('a second writable open is refused while the first holds the lock', () => {
    const dir = tempDir();
    try {
      const img = join(dir.path, 'locked.vhdx');
      ok(['create', img, '8M']);
      writeFileSync(`${img}.lock`, `${process.pid}\n`); // this test process is alive: the lock is held
      fails(['write', img, '--offset', '0', '--pattern', '1', '--length', '1'], /already open for writing by process/);
      writeFileSync(`${img}.lock`, '999999999\n'); // a dead process: stale, taken over
      ok(['write', img, '--offset', '0', '--pattern', '1', '--length', '1']);
    } finally {
      dir.cleanup();
    }
  });
});
