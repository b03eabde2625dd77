/**
 * `vhdx convert IMG -` into a real pipe, as a shell pipeline makes it. There (and only there: a test
 * runner's captured stdout is a socket) zero ranges are moved by vmsplice from one shared zero region
 * when the native helper is built, so this is the test of that path: the bytes that come out of the
 * pipe must equal the conversion to a file, for a reader that takes random amounts at random pauses
 * (the pipe fills and drains at every possible point) and for zero ranges that are not 4 KiB aligned
 * (a differencing child written at sector granularity).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VHDX_BIN, SYSTEM_PYTHON, patternBytes, run, runOk, tempDir } from '../helpers.js';

const MiB = 1024 * 1024;

/** Reads stdin in random amounts with random short pauses, writes what it read to stdout. */
const SLOW_READER = `
import os, random, sys, time
random.seed(int(sys.argv[1]))
out = sys.stdout.buffer
while True:
    chunk = os.read(0, random.choice([1, 511, 4095, 4097, 65536, 200000, 1 << 20]))
    if not chunk:
        break
    out.write(chunk)
    if random.random() < 0.02:
        time.sleep(0.001)
out.flush()
`;

const sha = (data: Uint8Array): string => createHash('sha256').update(data).digest('hex');

describe('convert to a pipe', () => {
  let dir: { path: string; cleanup: () => void };
  before(() => {
    dir = tempDir('vhdx-pipe-');
    writeFileSync(join(dir.path, 'reader.py'), SLOW_READER);
  });
  after(() => dir.cleanup());
  const path = (name: string): string => join(dir.path, name);

  /** The pipeline's output, through a slow random reader or straight into a file, and its exit status. */
  function piped(image: string, seed: number, slow: boolean): { status: number; bytes: Buffer } {
    const out = path(`piped-${seed}.raw`);
    const reader = slow ? `"${SYSTEM_PYTHON}" "${path('reader.py')}" ${seed}` : 'cat';
    const r = run('sh', ['-c', `"${process.execPath}" "${VHDX_BIN}" convert "$1" - | ${reader} > "$2"`, 'sh', image, out], { timeoutMs: 300_000 });
    assert.equal(r.stderr, '', 'nothing on stderr');
    return { status: r.code ?? -1, bytes: readFileSync(out) };
  }

  test('a dynamic image with data at unaligned offsets, read fast and slowly', () => {
    const image = path('dynamic.vhdx');
    runOk(process.execPath, [VHDX_BIN, 'create', image, '200M', '--block-size', '1M']);
    for (const [offset, length, seed] of [[0, 3000, 1], [5 * MiB + 777, 2 * MiB + 5, 2], [77 * MiB + 4095, 12345, 3], [199 * MiB + 100, MiB - 100, 4]]) {
      writeFileSync(path('piece'), patternBytes(length!, seed!));
      runOk(process.execPath, [VHDX_BIN, 'write', image, '--offset', String(offset), '--from', path('piece')]);
    }
    runOk(process.execPath, [VHDX_BIN, 'convert', image, path('dynamic.raw')]);
    const expected = sha(readFileSync(path('dynamic.raw')));
    for (const [seed, slow] of [[1, false], [2, true], [3, true]] as const) {
      const { status, bytes } = piped(image, seed, slow);
      assert.equal(status, 0);
      assert.equal(bytes.length, 200 * MiB);
      assert.equal(sha(bytes), expected, `seed ${seed}${slow ? ', slow reader' : ''}`);
    }
  });

  test('a differencing child: zero ranges end inside 4 KiB pages', () => {
    const base = path('base.vhdx');
    const child = path('child.avhdx');
    runOk(process.execPath, [VHDX_BIN, 'create', base, '64M', '--block-size', '1M']);
    writeFileSync(path('piece'), patternBytes(3 * 512, 9));
    runOk(process.execPath, [VHDX_BIN, 'write', base, '--offset', String(2 * MiB + 512), '--from', path('piece')]);
    runOk(process.execPath, [VHDX_BIN, 'create', child, '--parent', base]);
    for (const [offset, seed] of [[512, 10], [2 * MiB + 4096 + 1024, 11], [40 * MiB + 3 * 512, 12]] as const) {
      writeFileSync(path('piece'), patternBytes(512, seed));
      runOk(process.execPath, [VHDX_BIN, 'write', child, '--offset', String(offset), '--from', path('piece')]);
    }
    runOk(process.execPath, [VHDX_BIN, 'convert', child, path('child.raw')]);
    const expected = sha(readFileSync(path('child.raw')));
    for (const seed of [4, 5]) {
      const { status, bytes } = piped(child, seed, true);
      assert.equal(status, 0);
      assert.equal(sha(bytes), expected, `seed ${seed}`);
    }
  });

  test('a reader that stops early ends the command quietly', () => {
    const image = path('early.vhdx');
    runOk(process.execPath, [VHDX_BIN, 'create', image, '1G']);
    const r = run('sh', ['-c', `"${process.execPath}" "${VHDX_BIN}" convert "$1" - | head -c 100000 | wc -c`, 'sh', image]);
    assert.equal(r.stdout.toString().trim(), '100000');
    assert.equal(r.stderr, '');
  });
});
