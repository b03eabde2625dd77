/**
 * Helpers shared by the interop tests: expected raw images built from the data a test wrote, chunked
 * file comparison and hashing, the peers' views of an image (qemu-img, libvhdi) and a minimal,
 * independent reading of the VHDX header and BAT (so crash points are classified without our reader).
 */
import { createHash } from 'node:crypto';
import { closeSync, ftruncateSync, openSync, readSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT, SYSTEM_PYTHON, VHDX_BIN, run, runOk } from '../helpers.js';
import type { Op } from '../model.js';

export const MiB = 1024 * 1024;
/** 41 MiB + 7 sectors: a multiple of 512, not of 1 MiB, not of 8 or 32 MiB (the last block is partial). */
export const SMALL_SIZE = 41 * MiB + 7 * 512;
/** 256 MiB blocks need a disk larger than one block: two blocks, the second a partial one of 5 MiB + 7 sectors. */
export const LARGE_SIZE = 261 * MiB + 7 * 512;
const CHUNK = 4 * MiB;

/** One write the test made: the expected content of the virtual disk is zeros overlaid with these, in order. */
export interface Write {
  offset: number;
  data: Uint8Array;
}

export function fillWrite(offset: number, length: number, pattern: number): Write {
  return { offset, data: new Uint8Array(length).fill(pattern) };
}

/** The expected raw image: a sparse file of `size` bytes holding `writes` (later ones win). */
export function writeModelRaw(path: string, size: number, writes: readonly Write[]): void {
  const fd = openSync(path, 'w');
  try {
    ftruncateSync(fd, size);
    for (const w of writes) {
      if (w.offset + w.data.length > size) throw new Error(`model write [${w.offset}, ${w.offset + w.data.length}) is past the ${size}-byte disk`);
      let done = 0;
      while (done < w.data.length) done += writeSync(fd, w.data, done, w.data.length - done, w.offset + done);
    }
  } finally {
    closeSync(fd);
  }
}

/** Expected bytes of [offset, offset + length) of the virtual disk described by `writes`. */
export function modelBytes(writes: readonly Write[], offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (const w of writes) {
    const from = Math.max(offset, w.offset);
    const to = Math.min(offset + length, w.offset + w.data.length);
    if (from < to) out.set(w.data.subarray(from - w.offset, to - w.offset), from - offset);
  }
  return out;
}

export function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function readChunk(fd: number, buffer: Buffer, position: number): Buffer {
  let got = 0;
  while (got < buffer.length) {
    const n = readSync(fd, buffer, got, buffer.length - got, position + got);
    if (n === 0) break;
    got += n;
  }
  return buffer.subarray(0, got);
}

/** Describes the first difference between two byte strings that are known to differ. */
export function describeDifference(a: Uint8Array, b: Uint8Array, base: number, aName: string, bName: string): string {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  if (i === n) return `${aName} and ${bName} agree up to offset ${base + n}, then one ends (${aName} ${a.length} vs ${bName} ${b.length} bytes in this chunk)`;
  let end = i;
  while (end < n && a[end] !== b[end]) end++;
  const hex = (x: number | undefined) => `0x${(x ?? 0).toString(16).padStart(2, '0')}`;
  return `first difference at offset ${base + i}: ${aName} ${hex(a[i])}, ${bName} ${hex(b[i])} (differing run of at least ${end - i} bytes)`;
}

/** Byte-for-byte comparison of two files (cmp): null when identical, else where they first differ. */
export function compareFiles(a: string, b: string): string | null {
  const fa = openSync(a, 'r');
  const fb = openSync(b, 'r');
  try {
    const ba = Buffer.alloc(CHUNK);
    const bb = Buffer.alloc(CHUNK);
    for (let position = 0; ; position += CHUNK) {
      const ca = readChunk(fa, ba, position);
      const cb = readChunk(fb, bb, position);
      if (!ca.equals(cb)) return describeDifference(ca, cb, position, a, b);
      if (ca.length < CHUNK) return null;
    }
  } finally {
    closeSync(fa);
    closeSync(fb);
  }
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Copies a file, leaving holes where a 64 KiB chunk is all zero (images stay sparse). */
export function sparseCopy(from: string, to: string): void {
  const src = openSync(from, 'r');
  const dst = openSync(to, 'w');
  try {
    const buffer = Buffer.alloc(64 * 1024);
    const zero = Buffer.alloc(buffer.length);
    let position = 0;
    for (;;) {
      const chunk = readChunk(src, buffer, position);
      if (chunk.length > 0 && !chunk.equals(zero.subarray(0, chunk.length))) {
        let done = 0;
        while (done < chunk.length) done += writeSync(dst, chunk, done, chunk.length - done, position + done);
      }
      position += chunk.length;
      if (chunk.length < buffer.length) break;
    }
    ftruncateSync(dst, position);
  } finally {
    closeSync(src);
    closeSync(dst);
  }
}

/** sha256 of a file, streamed in chunks. */
export function sha256OfFile(path: string): string {
  const fd = openSync(path, 'r');
  try {
    const hash = createHash('sha256');
    const buffer = Buffer.alloc(CHUNK);
    for (let position = 0; ; position += CHUNK) {
      const chunk = readChunk(fd, buffer, position);
      hash.update(chunk);
      if (chunk.length < CHUNK) return hash.digest('hex');
    }
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------- peers

export interface QemuInfo {
  'virtual-size': number;
  'cluster-size'?: number;
  format: string;
  [key: string]: unknown;
}

export function qemuImgInfo(image: string): QemuInfo {
  return JSON.parse(runOk('qemu-img', ['info', '--output=json', '-f', 'vhdx', image]).toString()) as QemuInfo;
}

/** `qemu-io` arguments that perform `writes` (each a single-byte pattern) in one session. */
export function qemuIoWriteArgs(writes: readonly { offset: number; length: number; pattern: number }[]): string[] {
  return writes.flatMap((w) => ['-c', `write -P 0x${w.pattern.toString(16)} ${w.offset} ${w.length}`]);
}

/** What `vhdx info --json` printed (only the fields the tests use are typed). */
export interface VhdxInfoJson {
  type: string;
  virtualSize: number;
  blockSize: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
  logState: string;
  logGuid: string;
  [key: string]: unknown;
}

export function vhdxInfo(image: string): VhdxInfoJson {
  return JSON.parse(runOk(VHDX_BIN, ['info', image, '--json']).toString()) as VhdxInfoJson;
}

export interface LibvhdiView {
  mediaSize: number;
  bytesPerSector: number;
  /** libvhdi's disk type: 2 fixed, 3 dynamic, 4 differential. */
  diskType: number;
  sha256: string;
  firstDifference: { offset: number; libvhdi: number | null; expected: number | string | null } | null;
}

export const LIBVHDI_DISK_TYPES: Record<number, string> = { 2: 'fixed', 3: 'dynamic', 4: 'differencing' };

const VHDI_READ = join(ROOT, 'test', 'interop', 'vhdi-read.py');

/** Reads the whole virtual disk through libvhdi (system Python + pyvhdi), optionally comparing with a raw file. */
export function libvhdiRead(image: string, compareWith?: string): LibvhdiView {
  const args = [VHDI_READ, image];
  if (compareWith !== undefined) args.push('--compare', compareWith);
  const r = run(SYSTEM_PYTHON, args);
  if (r.code !== 0) throw new Error(`libvhdi could not read ${image} (${SYSTEM_PYTHON} ${args.join(' ')} exited ${r.code ?? r.signal}): ${r.stderr.trim()}`);
  return JSON.parse(r.stdout.toString()) as LibvhdiView;
}

/** Fails with a clear message unless the system Python can import pyvhdi. */
export function requirePyvhdi(): void {
  const r = run(SYSTEM_PYTHON, ['-c', 'import pyvhdi']);
  if (r.code !== 0) throw new Error(`${SYSTEM_PYTHON} cannot import pyvhdi (install python3-libvhdi): ${r.stderr.trim()}`);
}

// ---------------------------------------------------------------- independent on-disk reading

const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[i] = c >>> 0;
  }
  return table;
})();

export function crc32c(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = CRC32C_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function readAt(path: string, position: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    return readChunk(fd, Buffer.alloc(length), position);
  } finally {
    closeSync(fd);
  }
}

export interface HeaderView {
  slot: 1 | 2;
  sequence: bigint;
  logGuidHex: string;
  logGuidIsZero: boolean;
}

/**
 * The current header, read straight from the file: of the two 4 KiB headers at 64 KiB and 128 KiB, the
 * valid one (signature `head`, CRC-32C over the 4 KiB with the checksum field zeroed) with the higher
 * sequence number.
 */
export function currentHeader(image: string): HeaderView {
  const valid: HeaderView[] = [];
  for (const [slot, offset] of [[1, 64 * 1024], [2, 128 * 1024]] as const) {
    const bytes = readAt(image, offset, 4096);
    if (bytes.length !== 4096 || bytes.toString('latin1', 0, 4) !== 'head') continue;
    const stored = bytes.readUInt32LE(4);
    const copy = Buffer.from(bytes);
    copy.writeUInt32LE(0, 4);
    if (crc32c(copy) !== stored) continue;
    const logGuid = bytes.subarray(48, 64);
    valid.push({ slot, sequence: bytes.readBigUInt64LE(8), logGuidHex: logGuid.toString('hex'), logGuidIsZero: logGuid.every((b) => b === 0) });
  }
  if (valid.length === 0) throw new Error(`${image}: neither header is valid`);
  return valid.reduce((a, b) => (b.sequence > a.sequence ? b : a));
}

/** BAT region GUID 2DC27766-F623-4200-9D64-115E9BFD4A08, as stored (mixed-endian). */
const BAT_REGION_GUID = Buffer.from('6677c22d23f600429d64115e9bfd4a08', 'hex');

/** File offset of the BAT, from the region table at 192 KiB. */
export function batOffset(image: string): number {
  const table = readAt(image, 192 * 1024, 64 * 1024);
  if (table.toString('latin1', 0, 4) !== 'regi') throw new Error(`${image}: no region table at 192 KiB`);
  const count = table.readUInt32LE(8);
  for (let i = 0; i < count; i++) {
    const entry = table.subarray(16 + 32 * i, 48 + 32 * i);
    if (entry.subarray(0, 16).equals(BAT_REGION_GUID)) return Number(entry.readBigUInt64LE(16));
  }
  throw new Error(`${image}: region table has no BAT entry`);
}

/** State (low 3 bits) of payload block `block`'s BAT entry as stored in the file: 0 NOT_PRESENT, 6 FULLY_PRESENT... */
export function batBlockState(image: string, block: number, blockSize: number, logicalSectorSize = 512): number {
  const chunkRatio = (2 ** 23 * logicalSectorSize) / blockSize;
  const index = block + Math.floor(block / chunkRatio);
  return Number(readAt(image, batOffset(image) + 8 * index, 8).readBigUInt64LE(0) & 7n);
}

export interface LogEntryView {
  /** Offset of the entry inside the log ring. */
  logOffset: number;
  entryLength: number;
  sequence: bigint;
  tail: number;
  /** The entry runs past the end of the ring and continues at its start. */
  wraps: boolean;
}

/**
 * Entries in the log ring that carry the current header's LogGuid (signature `loge` at a 4 KiB
 * boundary; the checksum is not verified here), in ring order.
 */
export function logEntriesOfCurrentGuid(image: string): LogEntryView[] {
  const headerOffset = currentHeader(image).slot === 1 ? 64 * 1024 : 128 * 1024;
  const header = readAt(image, headerOffset, 80);
  const logGuid = header.subarray(48, 64);
  const logLength = header.readUInt32LE(68);
  const logOffset = Number(header.readBigUInt64LE(72));
  const log = readAt(image, logOffset, logLength);
  const out: LogEntryView[] = [];
  for (let at = 0; at + 4096 <= log.length; at += 4096) {
    if (log.toString('latin1', at, at + 4) !== 'loge' || !log.subarray(at + 32, at + 48).equals(logGuid)) continue;
    const entryLength = log.readUInt32LE(at + 8);
    out.push({ logOffset: at, entryLength, tail: log.readUInt32LE(at + 12), sequence: log.readBigUInt64LE(at + 16), wraps: at + entryLength > logLength });
  }
  return out;
}

// ---------------------------------------------------------------- write-side helpers

/**
 * The expected content after `ops` (write, writeZeroes and discard; flush and reopen change nothing),
 * as non-overlapping data runs in offset order, for `writeModelRaw` and `modelBytes`. Zeroed ranges
 * simply leave no run, so the model of a large, mostly empty disk stays small.
 */
export function writesOfOps(ops: readonly Op[]): Write[] {
  let runs: Write[] = [];
  for (const op of ops) {
    if (op.kind === 'flush' || op.kind === 'reopen') continue;
    const start = op.offset;
    const end = start + (op.kind === 'write' ? op.data.length : op.length);
    if (end === start) continue;
    const next: Write[] = [];
    for (const r of runs) {
      const rEnd = r.offset + r.data.length;
      if (rEnd <= start || r.offset >= end) {
        next.push(r);
        continue;
      }
      if (r.offset < start) next.push({ offset: r.offset, data: r.data.subarray(0, start - r.offset) });
      if (rEnd > end) next.push({ offset: end, data: r.data.subarray(end - r.offset) });
    }
    if (op.kind === 'write') next.push({ offset: op.offset, data: op.data });
    runs = next.sort((a, b) => a.offset - b.offset);
  }
  return runs;
}

export interface QemuCheckResult {
  code: number | null;
  /** stdout and stderr together. */
  output: string;
}

/** `qemu-img check` (read-only, or repairing with `repair`), never throwing. */
export function qemuImgCheck(image: string, repair?: 'leaks' | 'all'): QemuCheckResult {
  const args = ['check', '-f', 'vhdx'];
  if (repair) args.push('-r', repair);
  const r = run('qemu-img', [...args, image]);
  return { code: r.code, output: `${r.stdout.toString()}${r.stderr}` };
}

/**
 * Why a `qemu-img check` result is not clean, or null when it is: exit status 0, the "No errors were
 * found" verdict, and no mention of leaked clusters anywhere in the output.
 */
export function qemuCheckProblem(r: QemuCheckResult): string | null {
  if (r.code !== 0) return `qemu-img check exited ${r.code}: ${r.output.trim()}`;
  if (/leak/i.test(r.output)) return `qemu-img check reports leaks: ${r.output.trim()}`;
  if (!/No errors were found on the image/.test(r.output)) return `qemu-img check did not report a clean image: ${r.output.trim()}`;
  return null;
}

/** `qemu-img compare -f vhdx -F raw IMAGE RAW`: exit 0 means identical content, 1 different. */
export function qemuCompare(image: string, raw: string): QemuCheckResult {
  const r = run('qemu-img', ['compare', '-f', 'vhdx', '-F', 'raw', image, raw]);
  return { code: r.code, output: `${r.stdout.toString()}${r.stderr}` };
}

/** Offset of the first hole in a file (lseek SEEK_HOLE from 0, via the system Python): the file size when it has none. */
export function firstHole(path: string): number {
  const script = 'import os, sys\nfd = os.open(sys.argv[1], os.O_RDONLY)\nprint(os.lseek(fd, 0, os.SEEK_HOLE))';
  return Number(runOk(SYSTEM_PYTHON, ['-c', script, path]).toString().trim());
}

/** Bytes the file system has allocated to a file (st_blocks of 512 bytes). */
export function diskUsage(path: string): number {
  return statSync(path).blocks * 512;
}

export function fileSize(path: string): number {
  return statSync(path).size;
}
