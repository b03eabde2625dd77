/** Shared test utilities: temporary folders, running programs, hashing. Keep this small and generic. */
import { spawn, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Repository root (tests run from dist/test/...). */
export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const VHDX_BIN = join(ROOT, 'bin', 'vhdx');
export const SHARED_FIXTURES = join(ROOT, '..', 'shared', 'fixtures', 'windows-structures');

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
