/**
 * Helpers shared by the benchmarks (convert, stdout, random-io, write-seq, write-alloc): a scratch folder that
 * is always removed, timed child processes, durability and system-call tracing, verification with
 * qemu-img, and the report table with ratios and PASS/MISS verdicts.
 */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { closeSync, fdatasyncSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, statSync, statfsSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { NodeFileBackend } from '../src/node/file-backend.js';
import { create } from '../src/ops/create.js';

/** Repository root (the scripts run from dist/bench/). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const KiB = 1024;
export const MiB = 1024 * KiB;
export const GiB = 1024 * MiB;

/** The vhdx CLI launcher, run with this Node binary. */
export const VHDX_BIN = join(ROOT, 'bin', 'vhdx');

// ---------------------------------------------------------------------------------------------------
// Scratch folder

let scratchDir: string | null = null;

/** A fresh folder under `base` (default the system temp dir, /tmp), removed at exit or on a signal. */
export function scratch(prefix: string, base = tmpdir()): string {
  scratchDir = mkdtempSync(join(base, `${prefix}-`));
  const cleanup = (): void => {
    if (scratchDir) rmSync(scratchDir, { recursive: true, force: true });
    scratchDir = null;
  };
  process.on('exit', cleanup);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(signal, () => {
      cleanup();
      process.exit(130);
    });
  }
  return scratchDir;
}

export function removeFile(path: string): void {
  rmSync(path, { force: true });
  rmSync(`${path}.lock`, { force: true });
}

/** A new dynamic VHDX at `path` (replacing any file there) made by this library, not timed by callers. */
export async function createDynamicVhdx(path: string, virtualSize: number, blockSize: number): Promise<void> {
  removeFile(path);
  const backend = await NodeFileBackend.open(path, { readOnly: false, create: true });
  try {
    await create(backend, { virtualSize, type: 'dynamic', blockSize });
  } finally {
    await backend.close();
  }
}

/** The same image made by `qemu-img create`. */
export function createDynamicVhdxWithQemu(path: string, virtualSize: number, blockSize: number): void {
  removeFile(path);
  run('qemu-img', ['create', '-q', '-f', 'vhdx', '-o', `subformat=dynamic,block_size=${blockSize / MiB}M`, path, String(virtualSize)]);
}

// ---------------------------------------------------------------------------------------------------
// Command line

export interface CommonArgs {
  quick: boolean;
  runs: number;
  dir: string | undefined;
  trace: boolean;
  rest: Map<string, string>;
}

/** `--quick`, `--runs N`, `--dir DIR`, `--no-trace`, plus `--name value` pairs the script knows about. */
export function parseCommonArgs(argv: string[], known: string[] = []): CommonArgs {
  const out: CommonArgs = { quick: false, runs: 0, dir: undefined, trace: true, rest: new Map() };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--quick') out.quick = true;
    else if (a === '--no-trace') out.trace = false;
    else if (a === '--runs') out.runs = Number.parseInt(argv[++i] ?? '', 10);
    else if (a === '--dir') out.dir = argv[++i];
    else if (known.includes(a.slice(2))) out.rest.set(a.slice(2), argv[++i] ?? '');
    else {
      console.error(`unknown argument ${a}`);
      process.exit(2);
    }
  }
  if (!out.runs || out.runs < 1) out.runs = out.quick ? 1 : 3;
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Processes

export interface Timed {
  seconds: number;
  stdout: string;
  stderr: string;
}

/** Runs a program (no shell), timing the whole process (start-up included); throws unless it exits 0. */
export function timed(command: string, args: string[], input?: string): Timed {
  const start = process.hrtime.bigint();
  const r: SpawnSyncReturns<string> = spawnSync(command, args, {
    encoding: 'utf8',
    input,
    stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
    maxBuffer: 256 * MiB,
  });
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  if (r.error) throw new Error(`cannot run ${command}: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`${command} ${short(args)} exited ${r.status ?? r.signal}: ${(r.stderr ?? '').trim().slice(0, 2000)}`);
  return { seconds, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

export function run(command: string, args: string[], input?: string): string {
  return timed(command, args, input).stdout;
}

export function available(command: string, args: string[] = ['--version']): boolean {
  return !spawnSync(command, args, { stdio: 'ignore' }).error;
}

export function versionLine(command: string, args: string[] = ['--version']): string {
  const r = spawnSync(command, args, { encoding: 'utf8' });
  return r.error || r.status !== 0 ? 'unknown' : (r.stdout ?? '').split('\n')[0]!.trim();
}

function short(args: string[]): string {
  const s = args.join(' ');
  return s.length > 300 ? `${s.slice(0, 300)}... (${args.length} arguments)` : s;
}

// ---------------------------------------------------------------------------------------------------
// Page cache and durability

/** Writes back every dirty page of the system, so a timed run does not pay for the previous one. */
export function settle(): void {
  spawnSync('sync', [], { stdio: 'ignore' });
}

/** fdatasync()s a file; returns the seconds it took (near zero when the writer already synced). */
export function fdatasyncSeconds(path: string): number {
  const start = process.hrtime.bigint();
  const fd = openSync(path, 'r');
  try {
    fdatasyncSync(fd);
  } finally {
    closeSync(fd);
  }
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Reads a whole file so its pages are in the page cache. */
export function warm(path: string): void {
  const fd = openSync(path, 'r');
  const buffer = Buffer.allocUnsafe(8 * MiB);
  try {
    for (let position = 0; ; ) {
      const n = readSync(fd, buffer, 0, buffer.length, position);
      if (n <= 0) break;
      position += n;
    }
  } finally {
    closeSync(fd);
  }
}

export function allocatedBytes(path: string): number {
  return statSync(path).blocks * 512;
}

export function fileSize(path: string): number {
  return statSync(path).size;
}

export function freeBytes(path: string): number {
  const s = statfsSync(path);
  return s.bavail * s.bsize;
}

// ---------------------------------------------------------------------------------------------------
// strace

const SYNC_CALLS = ['fsync', 'fdatasync', 'sync_file_range', 'syncfs', 'sync', 'msync'];

export interface Trace {
  /** Calls per system call name (every thread, whole process). */
  calls: Map<string, number>;
}

/** Runs a program under `strace -f -c` and returns the call counts of every system call. */
export function traceCounts(command: string, args: string[], traceFile: string, input?: string): Trace {
  run('strace', ['-f', '-c', '-o', traceFile, command, ...args], input);
  const calls = new Map<string, number>();
  for (const line of readFileSync(traceFile, 'utf8').split('\n')) {
    // % time  seconds  usecs/call  calls  [errors]  syscall
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)\s*$/.exec(line);
    if (m && m[2] !== 'total') calls.set(m[2]!, Number(m[1]));
  }
  rmSync(traceFile, { force: true });
  return { calls };
}

/** "fsync 3, fdatasync 0" style summary of the durability calls, or "none". */
export function syncSummary(t: Trace): string {
  const parts = SYNC_CALLS.filter((c) => (t.calls.get(c) ?? 0) > 0).map((c) => `${c} ${t.calls.get(c)}`);
  return parts.length ? parts.join(', ') : 'none';
}

export function syncCount(t: Trace): number {
  return SYNC_CALLS.reduce((n, c) => n + (t.calls.get(c) ?? 0), 0);
}

/** Positional writes and in-kernel copies: the calls that put data into files (plain write(2) is left
 * out, as both Node's libuv and QEMU's thread pool also use it to wake their event loops). */
export function writeCallCount(t: Trace): number {
  return ['pwrite64', 'pwritev', 'pwritev2', 'copy_file_range'].reduce((n, c) => n + (t.calls.get(c) ?? 0), 0);
}

// ---------------------------------------------------------------------------------------------------
// Verification

/** `qemu-img compare` (content as a guest sees it); returns null when identical, else the message. */
export function qemuCompare(a: string, aFormat: string, b: string, bFormat: string): string | null {
  const r = spawnSync('qemu-img', ['compare', '-q', '-f', aFormat, '-F', bFormat, a, b], { encoding: 'utf8' });
  if (r.error) return `cannot run qemu-img compare: ${r.error.message}`;
  if (r.status === 0) return null;
  const again = spawnSync('qemu-img', ['compare', '-f', aFormat, '-F', bFormat, a, b], { encoding: 'utf8' });
  return `qemu-img compare ${a} ${b}: exit ${r.status}: ${((again.stdout ?? '') + (again.stderr ?? '')).trim()}`;
}

/** `qemu-img check`; returns null when clean. */
export function qemuCheck(path: string): string | null {
  const r = spawnSync('qemu-img', ['check', '-f', 'vhdx', path], { encoding: 'utf8' });
  if (r.error) return `cannot run qemu-img check: ${r.error.message}`;
  return r.status === 0 ? null : `qemu-img check ${path}: exit ${r.status}: ${((r.stdout ?? '') + (r.stderr ?? '')).trim()}`;
}

// ---------------------------------------------------------------------------------------------------
// Statistics and report

export const best = (values: number[]): number => Math.min(...values);

export function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? s[mid]! : (s[mid - 1]! + s[mid]!) / 2;
}

export function seconds(s: number): string {
  return `${s.toFixed(3)} s`;
}

export function bytes(n: number): string {
  if (n >= GiB) return `${(n / GiB).toFixed(2)} GiB`;
  if (n >= MiB) return `${(n / MiB).toFixed(1)} MiB`;
  if (n >= KiB) return `${(n / KiB).toFixed(1)} KiB`;
  return `${n} B`;
}

/** A plain text table; the first row is the header. Cells that look numeric are right-aligned. */
export function table(rows: string[][]): string {
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length)));
  const numeric = (s: string): boolean => /^[\d.,]+( ?(s|ms|us|GiB|MiB|KiB|B|x|\/s))?$/.test(s);
  const line = (r: string[]): string =>
    r
      .map((cell, c) => (numeric(cell) ? cell.padStart(widths[c]!) : cell.padEnd(widths[c]!)))
      .join('  ')
      .trimEnd();
  return [line(rows[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.slice(1).map(line)].join('\n');
}

export interface Target {
  name: string;
  /** The measured ratio. */
  ratio: number;
  /** `<=` or `>=` the limit passes. */
  op: '<=' | '>=';
  limit: number;
  note?: string;
}

export function verdict(t: Target): string {
  const pass = t.op === '<=' ? t.ratio <= t.limit : t.ratio >= t.limit;
  return `${t.name} = ${t.ratio.toFixed(3)}  (target ${t.op} ${t.limit})  ${pass ? 'PASS' : 'MISS'}${t.note ? `  ${t.note}` : ''}`;
}

/** One line describing the machine and how busy it was (the figures are only as good as that). */
export function environmentLine(): string {
  const [one, five] = loadavg();
  return `node ${process.version}; ${versionLine('qemu-img')}; load average ${one!.toFixed(2)} (1 min), ${five!.toFixed(2)} (5 min)`;
}

/** Runs the contenders in rounds, interleaved (A B C, A B C, ...), so background noise hits all alike. */
export function rounds<K extends string>(keys: K[], count: number, once: (key: K, round: number) => void): void {
  for (let round = 0; round < count; round++) for (const key of keys) once(key, round);
}
