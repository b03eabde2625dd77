/** Small helpers shared by the benchmarks: running and timing programs, files, formatting. */
import { spawnSync } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { closeSync, fdatasyncSync, ftruncateSync, openSync, readFileSync, readSync, statSync, statfsSync, writeSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (benchmarks run from dist/bench/). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** Runs a program to completion (no shell) and throws with its stderr unless it exits 0. Returns stdout. */
export function runOk(command: string, args: string[]): string {
  const r = spawnSync(command, args, { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * MiB });
  if (r.error) throw new Error(`cannot run ${command}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr.toString().trim()}`);
  return r.stdout.toString();
}

/** Whether `command` can be started (it is looked up on PATH). */
export function available(command: string, versionArgs: string[] = ['--version']): boolean {
  const r = spawnSync(command, versionArgs, { stdio: 'ignore' });
  return !r.error;
}

/** The first line a program prints for `--version`, or `unknown`. */
export function versionLine(command: string, args: string[] = ['--version']): string {
  const r = spawnSync(command, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  if (r.error || r.status !== 0) return 'unknown';
  return r.stdout.toString().split('\n')[0]!.trim();
}

/**
 * Runs a program with stdout/stderr captured and returns its wall-clock time in seconds, measured
 * around the whole spawn (process start-up included: that is what a user waits for).
 */
export function timeCommand(command: string, args: string[]): number {
  const start = process.hrtime.bigint();
  const r = spawnSync(command, args, { stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 64 * MiB });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (r.error) throw new Error(`cannot run ${command}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${command} ${args.join(' ')} exited ${r.status ?? r.signal}: ${r.stderr.toString().trim()}`);
  return seconds;
}

/** The machine's load: other work competing for the CPUs or the disk makes every figure noisier. */
export function loadLine(): string {
  const cpus = availableParallelism();
  const load = loadavg()[0]!;
  let pressure = '';
  try {
    // Linux pressure stall information: the share of the last 10 s in which some task waited for a CPU.
    const some = /some avg10=([\d.]+)/.exec(readFileSync('/proc/pressure/cpu', 'utf8'));
    if (some) pressure = `, CPU pressure ${some[1]}%`;
  } catch {
    // not Linux, or PSI disabled
  }
  const note = load > cpus / 2 ? ' (busy machine: expect noisy figures; compare best and median)' : '';
  return `load average ${load.toFixed(2)} on ${cpus} CPUs${pressure}${note}`;
}

/**
 * Node.js start-up on this machine, best of 5 `node -e 0`, and, when NODE_EXTRA_CA_CERTS is set, the
 * same without it (Node 20 reads that file at every start; bin/vhdx run as an executable drops it).
 */
export function nodeStartupLine(): string {
  const best = (env: NodeJS.ProcessEnv): number => {
    let t = Infinity;
    for (let i = 0; i < 5; i++) {
      const start = process.hrtime.bigint();
      spawnSync(process.execPath, ['-e', '0'], { env, stdio: 'ignore' });
      t = Math.min(t, Number(process.hrtime.bigint() - start) / 1e9);
    }
    return t;
  };
  const line = `node start-up ${best(process.env).toFixed(3)} s`;
  if (!process.env.NODE_EXTRA_CA_CERTS) return line;
  const { NODE_EXTRA_CA_CERTS: _dropped, ...rest } = process.env;
  return `${line} with NODE_EXTRA_CA_CERTS set, ${best(rest).toFixed(3)} s without (bin/vhdx drops it)`;
}

/** fdatasync()s a file and returns the seconds it took. */
export function timeFdatasync(path: string): number {
  const start = process.hrtime.bigint();
  const fd = openSync(path, 'r');
  try {
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Flushes every dirty page of the system, so the next timed run starts from a settled state. */
export function settle(): void {
  spawnSync('sync', [], { stdio: 'ignore' });
}

/** Bytes actually allocated on disk for `path` (holes excluded). */
export function allocatedBytes(path: string): number {
  return statSync(path).blocks * 512;
}

/** Free bytes for unprivileged users on the file system holding `path`. */
export function freeBytes(path: string): number {
  const s = statfsSync(path);
  return s.bavail * s.bsize;
}

/** Reads a whole file once (into a small reused buffer) so its pages are in the page cache. */
export function warmPageCache(path: string): void {
  const fd = openSync(path, 'r');
  const buffer = Buffer.allocUnsafe(8 * MiB);
  try {
    let position = 0;
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, position);
      if (n <= 0) break;
      position += n;
    }
  } finally {
    closeSync(fd);
  }
}

/** A run of a layout: `data` ranges are filled with random bytes, `hole` ranges are never written. */
export interface Segment {
  offset: number;
  length: number;
  kind: 'data' | 'hole';
}

/** Alternating data / hole segments of `segment` bytes each, starting with data, covering `size`. */
export function alternatingLayout(size: number, segment: number): Segment[] {
  const out: Segment[] = [];
  for (let offset = 0, i = 0; offset < size; offset += segment, i++) {
    out.push({ offset, length: Math.min(segment, size - offset), kind: i % 2 === 0 ? 'data' : 'hole' });
  }
  return out;
}

/** Writes a sparse raw file of `size` bytes: random bytes in the data segments, holes elsewhere. */
export function writeSparseRandomRaw(path: string, size: number, layout: Segment[]): void {
  const fd = openSync(path, 'wx');
  const buffer = Buffer.allocUnsafe(8 * MiB);
  try {
    ftruncateSync(fd, size);
    for (const s of layout) {
      if (s.kind !== 'data') continue;
      for (let done = 0; done < s.length; ) {
        const n = Math.min(buffer.length, s.length - done);
        randomFillSync(buffer, 0, n);
        let written = 0;
        while (written < n) written += writeSync(fd, buffer, written, n - written, s.offset + done + written);
        done += n;
      }
    }
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** Byte-for-byte comparison of two files with cmp(1). */
export function identical(a: string, b: string): boolean {
  const r = spawnSync('cmp', ['-s', a, b], { stdio: 'ignore' });
  if (r.error) throw new Error(`cannot run cmp: ${r.error.message}`);
  return r.status === 0;
}

/** Runs a program under strace and returns how often it called each of the durability system calls. */
export function syncCalls(command: string, args: string[], traceFile: string): Map<string, number> {
  const calls = ['fsync', 'fdatasync', 'sync_file_range', 'syncfs', 'sync', 'msync'];
  runOk('strace', ['-f', '-qq', '-o', traceFile, '-e', `trace=${calls.join(',')}`, command, ...args]);
  const counts = new Map<string, number>();
  const text = spawnSync('cat', [traceFile], { encoding: 'utf8' }).stdout ?? '';
  for (const line of text.split('\n')) {
    const m = /^\s*(?:\d+\s+)?([a-z_]+)\(/.exec(line);
    if (m && calls.includes(m[1]!)) counts.set(m[1]!, (counts.get(m[1]!) ?? 0) + 1);
  }
  return counts;
}

export function min(values: number[]): number {
  return Math.min(...values);
}

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function formatBytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (n >= KiB) return `${(n / KiB).toFixed(1)} KiB`;
  return `${n} B`;
}

export function formatSeconds(s: number): string {
  return `${s.toFixed(3)} s`;
}

/** A plain text table: the first row is the header; columns are left-aligned except numbers. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const numeric = (s: string): boolean => /^[\d.]+( (s|GiB|MiB|KiB|B|x))?$/.test(s);
  const line = (r: string[]): string =>
    r
      .map((cell, c) => (numeric(cell) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd();
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}
