/** Shared test utilities: temporary folders, running programs, hashing. Keep this small and generic. */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VhdxError, type VhdxErrorCode } from '../src/format/errors.js';

/** Repository root (tests run from dist/test/...). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const VHDX_BIN = join(ROOT, 'bin', 'vhdx');
/** Bytes written by Windows itself (see the README beside them), kept in the repository. */
export const WINDOWS_FIXTURES = join(ROOT, 'test', 'fixtures', 'windows-structures');

/** A fresh temporary folder, removed by the returned cleanup. */
export function tempDir(prefix = 'vhdx-test-'): { path: string; cleanup: () => void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, cleanup: () => rmSync(path, { recursive: true, force: true }) };
}

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs a program to completion (no shell). Throws if it cannot be started at all. */
export function run(command: string, args: string[], options: { input?: Uint8Array; timeoutMs?: number; cwd?: string; env?: Record<string, string> } = {}): RunResult {
  const env = options.env ? { ...process.env, ...options.env } : undefined;
  const r = spawnSync(command, args, { input: options.input, timeout: options.timeoutMs ?? 120_000, cwd: options.cwd, env, maxBuffer: 1 << 30 });
  if (r.error) throw r.error;
  return { code: r.status, signal: r.signal, stdout: r.stdout, stderr: r.stderr.toString() };
}

/** Runs a program and throws with its stderr unless it exits 0. */
export function runOk(command: string, args: string[], options: { input?: Uint8Array; timeoutMs?: number; cwd?: string; env?: Record<string, string> } = {}): Buffer {
  const r = run(command, args, options);
  if (r.code !== 0) throw new Error(`${command} ${args.join(' ')} exited ${r.code ?? r.signal}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Runs a program asynchronously (for tests that must kill it mid-way). */
export function runAsync(command: string, args: string[]): Promise<RunResult> {
  return new Promise((resolvePromise, reject) => {
    const child = spawn(command, args);
    const out: Buffer[] = [];
    let err = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code, signal) => resolvePromise({ code, signal, stdout: Buffer.concat(out), stderr: err }));
  });
}

export function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** Fails loudly when a peer program is missing: interop tests never skip. */
export function requireProgram(name: string): void {
  const r = spawnSync('sh', ['-c', `command -v ${name}`]);
  if (r.status !== 0) throw new Error(`${name} is not installed; run the test set-up command from the README (it installs the peers)`);
}

/** The system Python that has Debian's pyvhdi module (a Python from elsewhere on PATH may not). */
export const SYSTEM_PYTHON = '/usr/bin/python3';

/** Deterministic pseudo-random bytes (xorshift32), so failures reproduce. */
export function patternBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 0x9e3779b9;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x & 0xff;
  }
  return out;
}

/**
 * Large deterministic data, fast: a pseudo-random tile of a prime length (65521 bytes) repeated, so no
 * block, sector or page misplacement lines up with the period.
 */
export function tiledBytes(length: number, seed: number): Uint8Array {
  const TILE = 65521;
  if (length <= TILE) return patternBytes(length, seed);
  const out = new Uint8Array(length);
  out.set(patternBytes(TILE, seed), 0);
  for (let filled = TILE; filled < length; filled *= 2) out.copyWithin(filled, 0, Math.min(filled, length - filled));
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Codec tests

/** One of the Windows structure fixtures, by file name. */
export function fixture(name: string): Uint8Array {
  return new Uint8Array(readFileSync(join(WINDOWS_FIXTURES, name)));
}

/** Bytes from space-separated hex pairs ("01 ff 20"). */
export function hex(text: string): Uint8Array {
  return Uint8Array.from(text.trim().split(/\s+/), (p) => parseInt(p, 16));
}

/** `fn` throws a VhdxError with `code`. */
export function assertVhdxError(fn: () => unknown, code: VhdxErrorCode): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof VhdxError, `expected a VhdxError, got ${String(e)}`);
    assert.equal(e.code, code);
    return true;
  });
}

/**
 * Stores the CRC-32C of `bytes` (computed with its checksum field, bytes 4-7, as zero) in that field, as
 * headers, region tables and log entries carry it. A bitwise implementation of its own, so codec tests
 * never check the codec's checksum with itself.
 */
export function seal(bytes: Uint8Array): Uint8Array {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) {
    c ^= i >= 4 && i < 8 ? 0 : bytes[i]!;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
  }
  new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength).setUint32(4, (c ^ 0xffffffff) >>> 0, true);
  return bytes;
}
