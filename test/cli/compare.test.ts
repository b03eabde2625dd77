/**
 * `vhdx compare` (run as a subprocess) and `compareDisks` (the library function): equality across
 * formats and block sizes, the exact first differing byte, size mismatches, --strict, --json, errors
 * (exit 2, one line), and large sparse disks whose unallocated ranges are skipped without reading.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { closeSync, ftruncateSync, mkdirSync, openSync, writeFileSync, writeSync } from 'node:fs';
import { patternBytes, run, tempDir, tiledBytes, VHDX_BIN } from '../helpers.js';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { MemoryBackend } from '../../src/io/memory.js';
import { VhdxImage } from '../../src/image/image.js';
import { create } from '../../src/ops/create.js';
import { buildImage } from '../build-image.js';
import { mulberry32 } from '../model.js';
import { compareDisks, type CompareResult } from '../../src/ops/compare.js';
import { rawSource, streamSource, vhdxSource, type DiskSource } from '../../src/ops/source.js';
import { PAYLOAD_BLOCK_UNMAPPED, PAYLOAD_BLOCK_ZERO } from '../../src/format/bat.js';
import { VhdxError } from '../../src/format/errors.js';
import { openImage } from '../../src/node/paths.js';

const MiB = 1024 * 1024;
const GiB = 1024 * MiB;

interface Write {
  offset: number;
  data: Uint8Array;
}

/** 41 MiB + 7 sectors: a multiple of 512, not of 1 MiB nor of any block size. */
const SIZE = 41 * MiB + 7 * 512;
const RANDOM_AT = 20 * MiB + 17;
const RANDOM = tiledBytes(2 * MiB + 1000, 9);
const WRITES: Write[] = [
  { offset: 1000, data: new Uint8Array(3001).fill(0x11) },
  { offset: 7777777, data: new Uint8Array([0x13]) },
  { offset: RANDOM_AT, data: RANDOM },
  { offset: SIZE - 1234, data: new Uint8Array(1234).fill(0x66) },
];

/** A VHDX image made by the real writer (`create`, then writes through the image). */
async function makeVhdx(path: string, size: number, writes: readonly Write[], shape: { blockSize?: number; type?: 'dynamic' | 'fixed' } = {}): Promise<string> {
  const backend = await NodeFileBackend.open(path, { readOnly: false, create: true });
  await create(backend, { virtualSize: size, ...shape });
  await backend.close();
  const image = await openImage(path, { readOnly: false });
  for (const w of writes) await image.write(w.offset, w.data);
  await image.close();
  return path;
}

/** A raw image: a sparse file of `size` bytes holding `writes`. */
function makeRaw(path: string, size: number, writes: readonly Write[]): string {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
    for (const w of writes) writeSync(fd, w.data, 0, w.data.length, w.offset);
  } finally {
    closeSync(fd);
  }
  return path;
}

function compareCli(...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = run(VHDX_BIN, ['compare', ...args]);
  return { code: r.code, stdout: r.stdout.toString(), stderr: r.stderr };
}

function assertIdentical(a: string, b: string, note = false): void {
  const r = compareCli(a, b);
  assert.equal(r.code, 0, `vhdx compare ${a} ${b}: ${r.stdout}${r.stderr}`);
  if (note) assert.match(r.stdout, /^disks are identical \(sizes differ: .* is \d+ bytes, .* is \d+ bytes; the extra bytes read as zeros\)\n$/);
  else assert.equal(r.stdout, 'disks are identical\n');
  assert.equal(r.stderr, '');
}

function assertDiffer(a: string, b: string, offset: number, extra: string[] = []): void {
  const r = compareCli(a, b, ...extra);
  assert.equal(r.code, 1, `vhdx compare ${a} ${b}: ${r.stdout}${r.stderr}`);
  const lines = r.stdout.trimEnd().split('\n');
  assert.equal(lines.length, 1, r.stdout);
  assert.match(lines[0]!, new RegExp(`^disks differ at offset ${offset} \\(0x${offset.toString(16)}\\)`));
  assert.equal(r.stderr, '');
}

function assertError(args: string[], pattern: RegExp): void {
  const r = compareCli(...args);
  assert.equal(r.code, 2, `vhdx compare ${args.join(' ')} should exit 2: ${r.stdout}${r.stderr}`);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line expected, got: ${r.stderr}`);
  assert.match(lines[0]!, /^vhdx: /);
  assert.match(lines[0]!, pattern);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

function withByte(writes: readonly Write[], offset: number, value: number): Write[] {
  return [...writes, { offset, data: new Uint8Array([value]) }];
}

describe('vhdx compare', () => {
  test('equal disks: VHDX vs raw, VHDX vs VHDX with other block sizes and types', async () => {
    const dir = tempDir();
    try {
      const a = await makeVhdx(join(dir.path, 'a.vhdx'), SIZE, WRITES, { blockSize: MiB });
      const b = await makeVhdx(join(dir.path, 'b.vhdx'), SIZE, WRITES, { blockSize: 32 * MiB });
      const c = await makeVhdx(join(dir.path, 'c.vhdx'), SIZE, WRITES, { blockSize: 8 * MiB, type: 'fixed' });
      const raw = makeRaw(join(dir.path, 'a.raw'), SIZE, WRITES);
      assertIdentical(a, raw);
      assertIdentical(raw, a);
      assertIdentical(a, b);
      assertIdentical(b, c);
      assertIdentical(c, raw);
      assertIdentical(a, a);
      const empty1 = await makeVhdx(join(dir.path, 'e1.vhdx'), SIZE, [], { blockSize: MiB });
      const empty2 = makeRaw(join(dir.path, 'e2.raw'), SIZE, []);
      assertIdentical(empty1, empty2);
      // -p is accepted (the bar itself shows only on a terminal).
      assert.equal(compareCli(a, b, '-p').code, 0);
    } finally {
      dir.cleanup();
    }
  });

  test('the first differing byte is reported exactly, from data, unallocated and raw ranges', async () => {
    const dir = tempDir();
    try {
      const a = await makeVhdx(join(dir.path, 'a.vhdx'), SIZE, WRITES, { blockSize: MiB });
      const raw = makeRaw(join(dir.path, 'a.raw'), SIZE, WRITES);
      // Inside the random data, at an odd offset: both sides hold data there.
      const inData = RANDOM_AT + 123457;
      const flipped = withByte(WRITES, inData, RANDOM[inData - RANDOM_AT]! ^ 0x5a);
      const d = await makeVhdx(join(dir.path, 'd.vhdx'), SIZE, flipped, { blockSize: 32 * MiB });
      assertDiffer(a, d, inData);
      assertDiffer(d, a, inData);
      assertDiffer(raw, d, inData);
      // A byte where the other image has no block: one side is known zero, the other is read alone.
      const inHole = 30 * MiB + 5;
      const e = await makeVhdx(join(dir.path, 'e.vhdx'), SIZE, withByte(WRITES, inHole, 1), { blockSize: MiB });
      assertDiffer(a, e, inHole);
      assertDiffer(e, a, inHole);
      assertDiffer(raw, e, inHole);
      assertDiffer(e, raw, inHole);
      // Two differences: the first one is named.
      const both = await makeVhdx(join(dir.path, 'both.vhdx'), SIZE, withByte(flipped, inHole, 1));
      assertDiffer(a, both, inData);
      // The very first and the very last byte of the disk.
      assertDiffer(a, await makeVhdx(join(dir.path, 'first.vhdx'), SIZE, withByte(WRITES, 0, 9)), 0);
      assertDiffer(a, makeRaw(join(dir.path, 'last.raw'), SIZE, withByte(WRITES, SIZE - 1, 0)), SIZE - 1);
    } finally {
      dir.cleanup();
    }
  });

  test('size mismatch: equal when the extra part reads as zeros, else the first non-zero byte; --strict', async () => {
    const dir = tempDir();
    try {
      const a = await makeVhdx(join(dir.path, 'a.vhdx'), SIZE, WRITES, { blockSize: MiB });
      const bigRaw = makeRaw(join(dir.path, 'big.raw'), SIZE + 3 * MiB + 100, WRITES);
      const bigVhdx = await makeVhdx(join(dir.path, 'big.vhdx'), SIZE + 64 * MiB, WRITES);
      assertIdentical(a, bigRaw, true);
      assertIdentical(bigRaw, a, true);
      assertIdentical(a, bigVhdx, true);
      assertIdentical(bigVhdx, bigRaw, true);
      // --strict: the sizes differ, the contents agree up to the end of the smaller disk.
      assertDiffer(a, bigRaw, SIZE, ['--strict']);
      assertDiffer(bigRaw, a, SIZE, ['-s']);
      assertDiffer(bigVhdx, bigRaw, SIZE + 3 * MiB + 100, ['--strict']);
      // --strict on equal sizes changes nothing; a content difference before the end still comes first.
      assert.equal(compareCli(a, makeRaw(join(dir.path, 'same.raw'), SIZE, WRITES), '--strict').code, 0);
      const early = makeRaw(join(dir.path, 'early.raw'), SIZE + MiB, withByte(WRITES, 4242, 1));
      assertDiffer(a, early, 4242, ['--strict']);
      // A non-zero byte in the extra part of the larger disk.
      const tailAt = SIZE + 777777;
      const tailRaw = makeRaw(join(dir.path, 'tail.raw'), SIZE + 2 * MiB, withByte(WRITES, tailAt, 0x5a));
      assertDiffer(a, tailRaw, tailAt);
      assertDiffer(tailRaw, a, tailAt);
      const tailVhdxAt = SIZE + 40 * MiB + 3;
      const tailVhdx = await makeVhdx(join(dir.path, 'tail.vhdx'), SIZE + 64 * MiB, withByte(WRITES, tailVhdxAt, 0xff), { blockSize: MiB });
      assertDiffer(a, tailVhdx, tailVhdxAt);
      assertDiffer(tailVhdx, bigRaw, tailVhdxAt); // past the end of bigRaw, tailVhdx must read as zeros
      assertDiffer(tailVhdx, bigVhdx, tailVhdxAt);
      // The human line mentions the sizes when they differ.
      assert.match(compareCli(a, tailRaw).stdout, /; sizes differ: .*a\.vhdx is 42995200 bytes, .*tail\.raw is 45092352 bytes\n$/);
    } finally {
      dir.cleanup();
    }
  });

  test('--json prints one object with a stable shape', async () => {
    const dir = tempDir();
    try {
      const a = await makeVhdx(join(dir.path, 'a.vhdx'), SIZE, WRITES, { blockSize: MiB });
      const bigRaw = makeRaw(join(dir.path, 'big.raw'), SIZE + MiB, WRITES);
      const equal = compareCli(a, bigRaw, '--json');
      assert.equal(equal.code, 0);
      assert.deepEqual(JSON.parse(equal.stdout), { a, b: bigRaw, equal: true, firstDifference: null, sizeA: SIZE, sizeB: SIZE + MiB, sizeMismatch: true, strict: false });
      const strict = compareCli(a, bigRaw, '--json', '--strict');
      assert.equal(strict.code, 1);
      assert.deepEqual(JSON.parse(strict.stdout), { a, b: bigRaw, equal: false, firstDifference: SIZE, sizeA: SIZE, sizeB: SIZE + MiB, sizeMismatch: true, strict: true });
      const at = 5 * MiB + 3;
      const d = makeRaw(join(dir.path, 'd.raw'), SIZE, withByte(WRITES, at, 1));
      const differ = compareCli(a, d, '--json');
      assert.equal(differ.code, 1);
      assert.deepEqual(JSON.parse(differ.stdout), { a, b: d, equal: false, firstDifference: at, sizeA: SIZE, sizeB: SIZE, sizeMismatch: false, strict: false });
    } finally {
      dir.cleanup();
    }
  });

  test('errors exit 2 with one line naming the file and no stack trace', async () => {
    const dir = tempDir();
    try {
      const a = await makeVhdx(join(dir.path, 'a.vhdx'), 8 * MiB, WRITES.slice(0, 2));
      assertError([a, join(dir.path, 'missing.vhdx')], /missing\.vhdx: no such file/);
      assertError([join(dir.path, 'missing.raw'), a], /missing\.raw: no such file/);
      // A file with the VHDX signature but nothing valid after it is a VHDX image that cannot be opened.
      const bad = join(dir.path, 'bad.vhdx');
      writeFileSync(bad, Buffer.concat([Buffer.from('vhdxfile'), Buffer.alloc(300 * 1024, 0xee)]));
      assertError([a, bad], /bad\.vhdx: /);
      assertError([bad, a], /bad\.vhdx: /);
      const folder = join(dir.path, 'folder');
      mkdirSync(folder);
      assertError([a, folder], /folder: is a directory/);
      assertError([a], /usage: vhdx compare A B/);
      assertError([a, a, '--bogus'], /bogus/);
      const debug = run(VHDX_BIN, ['compare', a, bad, '--debug']);
      assert.equal(debug.code, 2);
      assert.match(debug.stderr, /\n\s+at /, '--debug shows the stack');
    } finally {
      dir.cleanup();
    }
  });

  test('64 GiB sparse images compare through the command line', () => {
    const dir = tempDir();
    try {
      const a = join(dir.path, 'a.vhdx');
      const b = join(dir.path, 'b.vhdx');
      const ok = (args: string[]): void => {
        const r = run(VHDX_BIN, args);
        assert.equal(r.code, 0, `vhdx ${args.join(' ')}: ${r.stderr}`);
      };
      ok(['create', a, '64G']);
      ok(['create', b, '64G', '--block-size', '1M']);
      for (const image of [a, b]) {
        ok(['write', image, '--offset', '1000', '--pattern', '0x21', '--length', '5000']);
        ok(['write', image, '--offset', String(17 * GiB + 3), '--pattern', '0x22', '--length', '70000']);
        ok(['write', image, '--offset', String(64 * GiB - 512), '--pattern', '0x23', '--length', '512']);
      }
      assertIdentical(a, b);
      const at = 40 * GiB + 12345;
      ok(['write', b, '--offset', String(at), '--pattern', '1', '--length', '1']);
      assertDiffer(a, b, at);
      assertDiffer(b, a, at);
    } finally {
      dir.cleanup();
    }
  });
});

// ---------------------------------------------------------------- the library function

/** A source that counts the bytes read through it. */
function counting(source: DiskSource): { source: DiskSource; bytesRead: () => number } {
  let bytes = 0;
  return {
    source: {
      size: source.size,
      knownZero: (offset, length) => source.knownZero(offset, length),
      async read(target, offset) {
        bytes += target.length;
        await source.read(target, offset);
      },
    },
    bytesRead: () => bytes,
  };
}

async function memoryVhdx(spec: Parameters<typeof buildImage>[1]): Promise<VhdxImage> {
  const backend = new MemoryBackend();
  await buildImage(backend, spec);
  return VhdxImage.open(backend, { readOnly: true });
}

function memoryRaw(bytes: Uint8Array): DiskSource {
  return rawSource(new MemoryBackend(bytes.slice()), bytes.length);
}

/** The expected answer, by brute force over whole byte arrays. */
function naiveCompare(a: Uint8Array, b: Uint8Array, strict: boolean): CompareResult {
  const sizeMismatch = a.length !== b.length;
  const n = strict ? Math.min(a.length, b.length) : Math.max(a.length, b.length);
  const base = { sizeA: a.length, sizeB: b.length, sizeMismatch };
  for (let i = 0; i < n; i++) if ((a[i] ?? 0) !== (b[i] ?? 0)) return { equal: false, firstDifference: i, ...base };
  if (strict && sizeMismatch) return { equal: false, firstDifference: n, ...base };
  return { equal: true, ...base };
}

describe('compareDisks', () => {
  test('agrees with a byte-by-byte comparison on random disks (VHDX with data, ZERO and unmapped blocks, and raw)', async () => {
    const next = mulberry32(20261125);
    const int = (n: number): number => Math.floor(next() * n);
    for (let round = 0; round < 60; round++) {
      // Two disks that share most content, so differences are rare and land anywhere.
      const sizeA = (int(6 * 2048) + 1) * 512;
      const sizeB = next() < 0.5 ? sizeA : (int(6 * 2048) + 1) * 512;
      const common: Write[] = [];
      for (let i = int(4); i > 0; i--) {
        const offset = int(Math.max(sizeA, sizeB));
        common.push({ offset, data: patternBytes(Math.min(1 + int(300_000), Math.max(sizeA, sizeB) - offset), round * 10 + i) });
      }
      const own = (): Write[] => {
        const out: Write[] = [];
        for (let i = int(3); i > 0; i--) {
          const offset = int(Math.max(sizeA, sizeB));
          out.push({ offset, data: next() < 0.3 ? new Uint8Array(1 + int(5000)) : new Uint8Array([1 + int(255)]) });
        }
        return out;
      };
      const bytesOf = (size: number, writes: Write[]): Uint8Array => {
        const out = new Uint8Array(size);
        for (const w of writes) if (w.offset < size) out.set(w.data.subarray(0, size - w.offset), w.offset);
        return out;
      };
      const side = async (size: number, writes: Write[]): Promise<{ source: DiskSource; bytes: Uint8Array }> => {
        let bytes = bytesOf(size, writes);
        if (next() < 0.3) return { source: memoryRaw(bytes), bytes };
        const blockSize = [1, 2, 4][int(3)]! * MiB;
        const blocks = Math.ceil(size / blockSize);
        // Some blocks forced to ZERO or UNMAPPED: they read as zeros whatever was written there.
        const blockStates: { block: number; state: number }[] = [];
        for (let block = 0; block < blocks; block++) {
          if (next() < 0.15) blockStates.push({ block, state: next() < 0.5 ? PAYLOAD_BLOCK_ZERO : PAYLOAD_BLOCK_UNMAPPED });
        }
        for (const s of blockStates) bytes.fill(0, s.block * blockSize, Math.min(size, (s.block + 1) * blockSize));
        const image = await memoryVhdx({ virtualSize: size, blockSize, type: next() < 0.2 ? 'fixed' : 'dynamic', writes: writes.filter((w) => w.offset < size).map((w) => ({ offset: w.offset, data: w.data.subarray(0, size - w.offset) })), blockStates });
        bytes = new Uint8Array(await image.read(0, size));
        return { source: vhdxSource(image), bytes };
      };
      const a = await side(sizeA, [...common, ...own()]);
      const b = await side(sizeB, [...common, ...own()]);
      for (const strict of [false, true]) {
        for (const chunkSize of [MiB, 2 * MiB]) {
          const got = await compareDisks(a.source, b.source, { strict, chunkSize });
          assert.deepEqual(got, naiveCompare(a.bytes, b.bytes, strict), `round ${round}, strict ${strict}, chunk ${chunkSize}`);
        }
      }
    }
  });

  test('64 GiB dynamic images: unallocated ranges are skipped without reading', async () => {
    const writes: Write[] = [
      { offset: 1000, data: patternBytes(5000, 1) },
      { offset: 17 * GiB + 3, data: patternBytes(70_000, 2) },
      { offset: 64 * GiB - 512, data: patternBytes(512, 3) },
    ];
    const a = counting(vhdxSource(await memoryVhdx({ virtualSize: 64 * GiB, blockSize: MiB, writes })));
    const b = counting(vhdxSource(await memoryVhdx({ virtualSize: 64 * GiB, blockSize: MiB, writes })));
    let lastDone = 0;
    let total = 0;
    const result = await compareDisks(a.source, b.source, {
      onProgress(done, t) {
        assert.ok(done >= lastDone, 'progress never goes back');
        lastDone = done;
        total = t;
      },
    });
    assert.deepEqual(result, { equal: true, sizeA: 64 * GiB, sizeB: 64 * GiB, sizeMismatch: false });
    assert.equal(lastDone, 64 * GiB);
    assert.equal(total, 64 * GiB);
    // Three 1 MiB blocks hold data, and they are all that is read of 64 GiB.
    assert.equal(a.bytesRead(), 3 * MiB);
    assert.equal(b.bytesRead(), 3 * MiB);

    // Data on one side only: only that side is read, and the byte is found exactly.
    const at = 40 * GiB + 12345;
    const c = counting(vhdxSource(await memoryVhdx({ virtualSize: 64 * GiB, blockSize: 4 * MiB, writes: [...writes, { offset: at, data: new Uint8Array([7]) }] })));
    const a2 = counting(vhdxSource(await memoryVhdx({ virtualSize: 64 * GiB, blockSize: MiB, writes })));
    assert.deepEqual(await compareDisks(a2.source, c.source), { equal: false, firstDifference: at, sizeA: 64 * GiB, sizeB: 64 * GiB, sizeMismatch: false });
    assert.ok(c.bytesRead() <= 3 * 4 * MiB, `read ${c.bytesRead()} bytes of the 4 MiB-block image`);
    assert.ok(a2.bytesRead() <= 2 * MiB, `read ${a2.bytesRead()} bytes of the 1 MiB-block image`);
  });

  test('a stream source is read in order without gaps', async () => {
    const bytes = new Uint8Array(5 * MiB + 300);
    bytes.set(patternBytes(70_000, 4), 3 * MiB - 5);
    const image = await memoryVhdx({ virtualSize: 6 * MiB, blockSize: MiB, writes: [{ offset: 3 * MiB - 5, data: patternBytes(70_000, 4) }] });
    async function* pieces(): AsyncGenerator<Uint8Array> {
      for (let i = 0; i < bytes.length; i += 100_000) yield bytes.subarray(i, i + 100_000);
    }
    assert.deepEqual(await compareDisks(vhdxSource(image), streamSource(pieces(), bytes.length)), {
      equal: true,
      sizeA: 6 * MiB,
      sizeB: bytes.length,
      sizeMismatch: true,
    });
  });

  test('bad options are refused with INVALID_ARGUMENT', async () => {
    const a = memoryRaw(new Uint8Array(10));
    for (const chunkSize of [0, 4096, MiB + 1, 128 * MiB, Number.NaN]) {
      await assert.rejects(compareDisks(a, a, { chunkSize }), (e: unknown) => e instanceof VhdxError && e.code === 'INVALID_ARGUMENT');
    }
    const broken: DiskSource = { size: -1, read: async () => undefined, knownZero: () => false };
    await assert.rejects(compareDisks(a, broken), (e: unknown) => e instanceof VhdxError && e.code === 'INVALID_ARGUMENT');
    assert.deepEqual(await compareDisks(memoryRaw(new Uint8Array(0)), memoryRaw(new Uint8Array(0))), { equal: true, sizeA: 0, sizeB: 0, sizeMismatch: false });
  });
});
