/**
 * `--cache MODE` on every command that writes an image, checked with the system calls the real
 * process makes (strace): `unsafe` issues no fsync/fdatasync at all, `writeback` (the default) syncs,
 * and in the safe order: a new block's data is synced before the log entry that points at it is
 * written, and that entry is synced before the BAT is changed in place. `none` opens with O_DIRECT.
 * Every output is checked by qemu-img afterwards, so a mode that skips syncs still writes a whole image.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { VHDX_BIN, patternBytes, requireProgram, run, runOk, tempDir } from '../helpers.js';

const MiB = 1024 * 1024;
const SYNC_CALLS = ['fsync', 'fdatasync', 'sync_file_range', 'syncfs', 'sync', 'msync'];

interface Call {
  name: string;
  args: string;
}

/** The system calls of `trace` (strace -f output) named in `names`, in order. */
function calls(traceFile: string, names: string[]): Call[] {
  const out: Call[] = [];
  for (const line of readFileSync(traceFile, 'utf8').split('\n')) {
    const m = /^\s*(?:\d+\s+)?([a-z_0-9]+)\((.*)$/.exec(line);
    if (m && names.includes(m[1]!)) out.push({ name: m[1]!, args: m[2]! });
  }
  return out;
}

/** Runs `vhdx ARGS` under strace (following threads) and returns the traced calls; the command must succeed. */
function traced(dir: string, args: string[], names = SYNC_CALLS): Call[] {
  const traceFile = join(dir, 'trace.txt');
  const r = run('strace', ['-f', '-qq', '-o', traceFile, '-e', `trace=${names.join(',')}`, process.execPath, VHDX_BIN, ...args]);
  assert.equal(r.code, 0, `vhdx ${args.join(' ')}: ${r.stderr}`);
  const out = calls(traceFile, names);
  rmSync(traceFile, { force: true });
  return out;
}

const syncCount = (list: Call[]): number => list.filter((c) => SYNC_CALLS.includes(c.name)).length;

function qemuCheckClean(path: string): void {
  const r = run('qemu-img', ['check', '-f', 'vhdx', path]);
  assert.equal(r.code, 0, `qemu-img check ${path}: ${r.stdout.toString()}${r.stderr}`);
}

describe('--cache on the writing commands', () => {
  let dir: { path: string; cleanup: () => void };
  let raw: string;
  let data: Uint8Array;
  before(() => {
    for (const program of ['strace', 'qemu-img', 'qemu-io']) requireProgram(program);
    const s = run('strace', ['-f', '-o', '/dev/null', 'true']);
    if (s.code !== 0) throw new Error(`strace cannot trace here: ${s.stderr.trim()}`);
    dir = tempDir('vhdx-cache-');
    raw = join(dir.path, 'source.raw');
    data = new Uint8Array(24 * MiB);
    data.set(patternBytes(3 * MiB, 1), 0);
    data.set(patternBytes(2 * MiB, 2), 17 * MiB + 123);
    writeFileSync(raw, data);
  });
  after(() => dir.cleanup());

  const path = (name: string): string => join(dir.path, name);

  test('a bad mode is a usage error, and --cache goes only where something is written', () => {
    const bad = run(process.execPath, [VHDX_BIN, 'convert', raw, path('x.vhdx'), '--cache', 'directsync']);
    assert.equal(bad.code, 2);
    assert.match(bad.stderr, /^vhdx: --cache must be writeback, unsafe, none, not "directsync"\n$/);
    runOk(process.execPath, [VHDX_BIN, 'create', path('plain.vhdx'), '64M']);
    const check = run(process.execPath, [VHDX_BIN, 'check', path('plain.vhdx'), '--cache', 'unsafe']);
    assert.equal(check.code, 2);
    assert.match(check.stderr, /--cache applies to --repair/);
    const stdout = run(process.execPath, [VHDX_BIN, 'convert', path('plain.vhdx'), '-', '-t', 'unsafe']);
    assert.equal(stdout.code, 2);
    assert.match(stdout.stderr, /--cache applies to an output file/);
    for (const command of ['create', 'write', 'convert', 'commit', 'check', 'serve', 'rebase']) {
      const help = runOk(process.execPath, [VHDX_BIN, command, '--help']).toString();
      assert.match(help, /-t, --cache VALUE +writeback \(default/, `${command} --help documents --cache`);
    }
  });

  for (const mode of ['unsafe', 'writeback'] as const) {
    const expectSyncs = (list: Call[], what: string): void => {
      if (mode === 'unsafe') assert.equal(syncCount(list), 0, `${what} --cache unsafe synced: ${JSON.stringify(list)}`);
      else assert.ok(syncCount(list) > 0, `${what} --cache writeback never synced`);
    };
    const cache = mode === 'writeback' ? [] : ['--cache', mode]; // writeback is the default: nothing to say

    test(`${mode}: create, write, convert both ways, check --repair, commit, rebase`, () => {
      const image = path(`${mode}.vhdx`);
      expectSyncs(traced(dir.path, ['create', image, '64M', ...cache]), 'create');
      expectSyncs(traced(dir.path, ['write', image, '--offset', '1M', '--pattern', '9', '--length', '3M', ...cache]), 'write');
      qemuCheckClean(image);
      assert.equal(runOk(process.execPath, [VHDX_BIN, 'read', image, '--offset', String(MiB + 5), '--length', '1'])[0], 9);

      const converted = path(`${mode}-converted.vhdx`);
      expectSyncs(traced(dir.path, ['convert', raw, converted, ...cache]), 'convert raw to VHDX');
      qemuCheckClean(converted);
      assert.equal(run('qemu-img', ['compare', '-f', 'raw', '-F', 'vhdx', raw, converted]).code, 0, 'convert output differs');
      const back = path(`${mode}-back.raw`);
      expectSyncs(traced(dir.path, ['convert', converted, back, ...cache]), 'convert VHDX to raw');
      assert.ok(Buffer.from(readFileSync(back)).equals(Buffer.from(data)), 'raw output differs');

      // A leaked tail is what --repair writes through (a log entry, then the cut).
      const damaged = path(`${mode}-damaged.vhdx`);
      copyFileSync(converted, damaged);
      writeFileSync(damaged, new Uint8Array(MiB), { flag: 'a' }); // 1 MiB of leaked tail for repair to cut
      expectSyncs(traced(dir.path, ['check', damaged, '--repair', ...cache]), 'check --repair');
      assert.equal(run(process.execPath, [VHDX_BIN, 'check', damaged]).code, 0, 'repair left findings');

      const child = path(`${mode}-child.avhdx`);
      expectSyncs(traced(dir.path, ['create', child, '--parent', converted, ...cache]), 'create --parent');
      expectSyncs(traced(dir.path, ['write', child, '--offset', '4M', '--pattern', '0xab', '--length', '100K', ...cache]), 'write into a child');
      const moved = path(`${mode}-moved.vhdx`);
      copyFileSync(converted, moved);
      expectSyncs(traced(dir.path, ['rebase', child, '--parent', moved, ...cache]), 'rebase');
      expectSyncs(traced(dir.path, ['commit', child, ...cache]), 'commit');
      qemuCheckClean(moved);
      const expected = Buffer.from(data);
      expected.fill(0xab, 4 * MiB, 4 * MiB + 100 * 1024);
      const committed = path(`${mode}-committed.raw`);
      runOk(process.execPath, [VHDX_BIN, 'convert', moved, committed]);
      assert.ok(readFileSync(committed).equals(expected), 'the committed parent holds the child\'s write');
      for (const name of [image, converted, back, damaged, child, moved, committed]) rmSync(name, { force: true });
    });

    test(`${mode}: serve, with a client writing and flushing`, async () => {
      const image = path(`${mode}-served.vhdx`);
      runOk(process.execPath, [VHDX_BIN, 'create', image, '64M']);
      const traceFile = path(`${mode}-serve-trace.txt`);
      const socket = path(`${mode}.sock`);
      const tracer = spawn('strace', ['-f', '-qq', '-o', traceFile, '-e', `trace=${SYNC_CALLS.join(',')}`, process.execPath, VHDX_BIN, 'serve', image, '--socket', socket, ...cache], {
        stdio: ['ignore', 'ignore', 'pipe'],
      });
      const exited = new Promise<number | null>((resolve) => tracer.on('exit', (code) => resolve(code)));
      let err = '';
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`serve did not start: ${err}`)), 20_000);
        tracer.stderr!.on('data', (d: Buffer) => {
          err += d.toString();
          if (/ at nbd\+unix/.test(err)) {
            clearTimeout(timer);
            resolve();
          }
        });
      });
      const io = spawnSync('qemu-io', ['-f', 'raw', `nbd+unix:///?socket=${socket}`, '-c', 'write -P 0x5a 1M 256k', '-c', 'flush'], { encoding: 'utf8', timeout: 60_000 });
      assert.equal(io.status, 0, io.stderr);
      // The server is strace's child: signal it, not strace.
      const pid = spawnSync('pgrep', ['-P', String(tracer.pid)], { encoding: 'utf8' }).stdout.trim().split('\n')[0]!;
      assert.match(pid, /^\d+$/, 'the traced server process');
      process.kill(Number(pid), 'SIGTERM');
      assert.equal(await exited, 0, err);
      const list = calls(traceFile, SYNC_CALLS);
      expectSyncs(list, 'serve');
      qemuCheckClean(image);
      assert.equal(runOk(process.execPath, [VHDX_BIN, 'read', image, '--offset', String(MiB + 1000), '--length', '1'])[0], 0x5a);
      rmSync(image, { force: true });
      rmSync(traceFile, { force: true });
    });
  }

  test('writeback: a new block is synced before its log entry, and the entry before the BAT changes in place', () => {
    const image = path('order.vhdx');
    runOk(process.execPath, [VHDX_BIN, 'create', image, '256M', '--block-size', '1M']);
    const info = JSON.parse(runOk(process.execPath, [VHDX_BIN, 'info', image, '--json']).toString()) as { logOffset: number; logLength: number };
    const list = traced(dir.path, ['write', image, '--offset', String(5 * MiB + 4096), '--pattern', '0x77', '--length', '8192'], ['pwrite64', 'fdatasync', 'fsync', 'fallocate']);
    const map = JSON.parse(runOk(process.execPath, [VHDX_BIN, 'map', image, '--json']).toString()) as { kind: string; fileOffset?: number }[];
    const block = map.find((e) => e.kind === 'data')!.fileOffset!;
    // pwrite64(fd, "...", count, offset) = n
    const offsetOf = (c: Call): number => Number(/, (\d+)\) = \d+$/.exec(c.args)?.[1] ?? NaN);
    const isSync = (c: Call): boolean => c.name === 'fdatasync' || c.name === 'fsync';
    const writes = list.map((c, i) => ({ i, c })).filter(({ c }) => c.name === 'pwrite64');
    const dataWrite = writes.find(({ c }) => offsetOf(c) >= block && offsetOf(c) < block + MiB);
    assert.ok(dataWrite, `no data write at the new block (file offset ${block}): ${JSON.stringify(list)}`);
    const logWrite = writes.find(({ c }) => offsetOf(c) >= info.logOffset && offsetOf(c) < info.logOffset + info.logLength);
    assert.ok(logWrite, 'no log entry written');
    // The BAT changes in place after the log entry: the first write past the log that is neither data nor header.
    const batWrite = writes.find(({ i, c }) => i > logWrite.i && offsetOf(c) >= info.logOffset + info.logLength && (offsetOf(c) < block || offsetOf(c) >= block + MiB));
    assert.ok(batWrite, 'no in-place BAT write after the log entry');
    const syncBetween = (from: number, to: number): boolean => list.slice(from + 1, to).some(isSync);
    assert.ok(dataWrite.i < logWrite.i && syncBetween(dataWrite.i, logWrite.i), 'the data is synced before the log entry that points at it');
    assert.ok(syncBetween(logWrite.i, batWrite.i), 'the log entry is synced before the BAT changes in place');
    qemuCheckClean(image);
  });

  test('none: the output is opened O_DIRECT and is right', () => {
    const out = path('direct.vhdx');
    const list = traced(dir.path, ['convert', raw, out, '--cache', 'none'], ['openat']);
    assert.ok(list.some((c) => c.args.includes('direct.vhdx"') && /O_DIRECT/.test(c.args)), `direct.vhdx not opened O_DIRECT: ${JSON.stringify(list)}`);
    qemuCheckClean(out);
    assert.equal(run('qemu-img', ['compare', '-f', 'raw', '-F', 'vhdx', raw, out]).code, 0);
    // Unaligned writes through O_DIRECT: read-modify-write of the edge units.
    runOk(process.execPath, [VHDX_BIN, 'write', out, '--offset', String(17 * MiB + 4000), '--pattern', '0x11', '--length', '5000', '-t', 'none']);
    const expected = Buffer.from(data);
    expected.fill(0x11, 17 * MiB + 4000, 17 * MiB + 9000);
    const back = path('direct.raw');
    runOk(process.execPath, [VHDX_BIN, 'convert', out, back, '-t', 'none']);
    assert.ok(readFileSync(back).equals(expected), 'O_DIRECT round trip differs');
    qemuCheckClean(out);
  });
});
