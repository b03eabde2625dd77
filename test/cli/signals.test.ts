/**
 * Ctrl-C and SIGTERM in the middle of `write` and `convert`, fed slowly from standard input: `write`
 * keeps what it wrote and closes a clean image, `convert` removes its partial output; both exit
 * 128 + the signal number with a one-line message.
 */
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { openImage } from '../../src/node/paths.js';
import { requireProgram, run, runOk, tempDir, tiledBytes, VHDX_BIN } from '../helpers.js';

const MiB = 1024 * 1024;
const STATUS = { SIGINT: 130, SIGTERM: 143 } as const;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Starts bin/vhdx with standard input left open for the test to feed. */
function start(args: string[]): { child: ChildProcessWithoutNullStreams; exited: Promise<{ code: number | null; stderr: string }> } {
  const child = spawn(VHDX_BIN, args);
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout.resume();
  child.stdin.on('error', () => undefined); // the process may stop reading before we stop writing
  const exited = new Promise<{ code: number | null; stderr: string }>((resolve) => child.on('close', (code) => resolve({ code, stderr })));
  return { child, exited };
}

/** Writes `data` into the pipe a MiB at a time, each piece handed to the kernel before the next. */
async function feed(child: ChildProcessWithoutNullStreams, data: Uint8Array): Promise<void> {
  for (let at = 0; at < data.length; at += MiB) {
    await new Promise<void>((resolve, reject) => child.stdin.write(data.subarray(at, at + MiB), (e) => (e ? reject(e) : resolve())));
    await sleep(30);
  }
}

describe('signals during write and convert', () => {
  requireProgram('qemu-img');
  const dir = tempDir();
  after(() => dir.cleanup());

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    test(`write --from - stopped by ${signal}: data so far kept, image flushed and clean`, async () => {
      const image = join(dir.path, `write-${signal}.vhdx`);
      runOk(VHDX_BIN, ['create', image, '64M', '--block-size', '1M']);
      const data = tiledBytes(6 * MiB, signal.length);
      const { child, exited } = start(['write', image, '--offset', '1M', '--from', '-']);
      try {
        await feed(child, data);
        await sleep(500); // let it write what the pipe holds; standard input stays open
        child.kill(signal);
        const { code, stderr } = await exited;
        assert.equal(code, STATUS[signal], stderr);
        const m = new RegExp(`^vhdx: \\S*write-${signal}\\.vhdx: interrupted by ${signal}; \\S+ \\w+ \\((\\d+) bytes\\) written at offset 1048576 were kept, and the image was flushed and closed\\n$`).exec(stderr);
        assert.ok(m, `one-line message, got: ${stderr}`);
        const written = Number(m[1]);
        assert.ok(written >= 5 * MiB && written <= data.length, `${written} bytes written`);

        assert.equal(existsSync(`${image}.lock`), false, 'lock released');
        runOk('qemu-img', ['check', '-f', 'vhdx', image]);
        const img = await openImage(image);
        try {
          assert.equal(img.info().logState, 'empty', 'closed clean: nothing left to replay');
          assert.deepEqual(await img.read(MiB, written), data.subarray(0, written), 'the bytes written before the signal');
          assert.ok((await img.read(MiB + written, 8 * MiB - written)).every((b) => b === 0), 'nothing after them');
        } finally {
          await img.close();
        }
      } finally {
        child.kill('SIGKILL');
      }
    });

    test(`convert - OUT stopped by ${signal}: no output left behind`, async () => {
      const out = join(dir.path, `convert-${signal}.vhdx`);
      const { child, exited } = start(['convert', '-', out, '--size', '64M', '--block-size', '1M']);
      try {
        await feed(child, tiledBytes(5 * MiB, 3));
        await sleep(300);
        assert.ok(existsSync(out), 'the output is being written when the signal comes');
        child.kill(signal);
        const { code, stderr } = await exited;
        assert.equal(code, STATUS[signal], stderr);
        assert.match(stderr, new RegExp(`^vhdx: \\S*convert-${signal}\\.vhdx: interrupted by ${signal}; the partial output was removed\\n$`));
        assert.equal(existsSync(out), false, 'partial output removed');
        assert.equal(existsSync(`${out}.lock`), false, 'lock released');
      } finally {
        child.kill('SIGKILL');
      }
    });
  }

  test('an interrupted VHDX to raw conversion to a file removes the file too', async () => {
    // A source big enough to be caught mid-copy: 512 MiB of one non-zero block pattern, read back to raw.
    const source = join(dir.path, 'big.vhdx');
    runOk(VHDX_BIN, ['create', source, '512M', '--type', 'fixed', '--block-size', '1M']);
    const out = join(dir.path, 'big.raw');
    const child = spawn(VHDX_BIN, ['convert', source, out], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    try {
      for (let i = 0; !existsSync(out); i++) {
        assert.ok(i < 400, 'the output appears');
        await sleep(5);
      }
      child.kill('SIGINT');
      const code = await exited;
      // The copy may have finished just before the signal: then it still counts as interrupted.
      assert.equal(code, 130, stderr);
      assert.match(stderr, /^vhdx: \S*big\.raw: interrupted by SIGINT; the partial output was removed\n$/);
      assert.equal(existsSync(out), false);
      assert.equal(run(VHDX_BIN, ['info', source]).code, 0, 'the input is closed and intact');
    } finally {
      child.kill('SIGKILL');
    }
  });
});
