/**
 * Whole-disk comparison of two virtual disks, with the semantics of `qemu-img compare`: disks of
 * different sizes are equal when the extra bytes of the larger one read as zeros (unless `strict`), and
 * the result names the first differing byte.
 *
 * Ranges both sources know to read as zeros (unallocated or ZERO blocks of a VHDX image, and anything
 * past the end of a disk) are skipped without reading; a range known zero on one side only is read on
 * the other side alone and checked for zeros. Memory is two chunk buffers, whatever the disk sizes.
 */
import { VhdxError } from '../format/errors.js';
import { copyBuffer } from './buffers.js';
import type { DiskSource } from './source.js';

export interface CompareOptions {
  /** A size mismatch is a difference (at the end of the smaller disk, unless the contents differ before it). */
  strict?: boolean;
  /**
   * Bytes read from each side at a time: a multiple of 1 MiB, at most 64 MiB (default 2 MiB). Two
   * buffers of this size are all the memory a comparison holds.
   */
  chunkSize?: number;
  /** Called as the comparison advances: bytes of the compared range covered so far, and its length. */
  onProgress?: (done: number, total: number) => void;
}

export interface CompareResult {
  /** The two disks read the same (and, with `strict`, have the same size). */
  equal: boolean;
  /** Virtual byte offset of the first difference; absent when `equal`. */
  firstDifference?: number;
  sizeA: number;
  sizeB: number;
  /** The virtual sizes differ (a difference only with `strict`). */
  sizeMismatch: boolean;
}

const MiB = 1024 * 1024;
/**
 * Granularity of the zero probes: every VHDX block size is a multiple of 1 MiB, so a probe of an aligned
 * unit never straddles two blocks and the extent map answers it exactly.
 */
const UNIT = MiB;
const MAX_CHUNK = 64 * MiB;

type Zone = 'both-zero' | 'a-zero' | 'b-zero' | 'data';

/**
 * Compares the virtual disks `a` and `b`. Sources are read at increasing offsets only, so a stream
 * source works too (it is never known to be zero, so it is read without gaps). Reading stops at the
 * first difference.
 */
export async function compareDisks(a: DiskSource, b: DiskSource, options: CompareOptions = {}): Promise<CompareResult> {
  const chunkSize = options.chunkSize ?? 2 * MiB;
  if (!Number.isSafeInteger(chunkSize) || chunkSize < UNIT || chunkSize > MAX_CHUNK || chunkSize % UNIT !== 0) {
    throw new VhdxError('INVALID_ARGUMENT', `compare chunk size must be a multiple of 1 MiB up to 64 MiB, not ${chunkSize}`);
  }
  for (const [name, source] of [['A', a], ['B', b]] as const) {
    if (!Number.isSafeInteger(source.size) || source.size < 0) {
      throw new VhdxError('INVALID_ARGUMENT', `disk ${name} has an invalid size (${source.size})`);
    }
  }
  const sizeA = a.size;
  const sizeB = b.size;
  const sizeMismatch = sizeA !== sizeB;
  const strict = options.strict ?? false;
  // In strict mode bytes past the smaller disk do not exist on one side: only the common part is compared.
  const total = strict ? Math.min(sizeA, sizeB) : Math.max(sizeA, sizeB);
  const result = (firstDifference: number | undefined): CompareResult => {
    const out: CompareResult = { equal: firstDifference === undefined, sizeA, sizeB, sizeMismatch };
    if (firstDifference !== undefined) out.firstDifference = firstDifference;
    return out;
  };

  /** [offset, offset + length) of `source` reads as zeros without reading it (past its end always does). */
  const knownZero = async (source: DiskSource, offset: number, length: number): Promise<boolean> => {
    if (offset >= source.size) return true;
    return source.knownZero(offset, Math.min(length, source.size - offset));
  };
  const unitEnd = (offset: number): number => Math.min((Math.floor(offset / UNIT) + 1) * UNIT, total);
  const zone = async (offset: number): Promise<Zone> => {
    const length = unitEnd(offset) - offset;
    const za = await knownZero(a, offset, length);
    const zb = await knownZero(b, offset, length);
    return za ? (zb ? 'both-zero' : 'a-zero') : zb ? 'b-zero' : 'data';
  };
  /** Fills `target` with `source` at `offset`, zeros past its end (a VHDX image refuses reads past its end). */
  const read = async (source: DiskSource, target: Uint8Array, offset: number): Promise<void> => {
    const n = Math.max(0, Math.min(target.length, source.size - offset));
    if (n > 0) await source.read(target.subarray(0, n), offset);
    target.fill(0, n);
  };

  const bufferA = copyBuffer(chunkSize);
  const bufferB = copyBuffer(chunkSize);
  let position = 0;
  options.onProgress?.(0, total);
  while (position < total) {
    const kind = await zone(position);
    if (kind === 'both-zero') {
      // Gallop: double the probed run while both sides still know it is zero, so a long hole costs a
      // handful of extent-map walks rather than one per unit.
      let length = unitEnd(position) - position;
      while (position + length < total) {
        const next = Math.min(length * 2, total - position);
        if (!(await knownZero(a, position, next)) || !(await knownZero(b, position, next))) break;
        length = next;
      }
      position += length;
      options.onProgress?.(position, total);
      continue;
    }
    let end = unitEnd(position);
    while (end < total && end - position < chunkSize && (await zone(end)) === kind) end = unitEnd(end);
    const length = end - position;
    let at: number;
    if (kind === 'a-zero') {
      const piece = bufferB.subarray(0, length);
      await read(b, piece, position);
      at = firstNonZero(piece);
    } else if (kind === 'b-zero') {
      const piece = bufferA.subarray(0, length);
      await read(a, piece, position);
      at = firstNonZero(piece);
    } else {
      const pieceA = bufferA.subarray(0, length);
      const pieceB = bufferB.subarray(0, length);
      await Promise.all([read(a, pieceA, position), read(b, pieceB, position)]);
      at = firstMismatch(pieceA, pieceB);
    }
    if (at >= 0) return result(position + at);
    position = end;
    options.onProgress?.(position, total);
  }
  if (strict && sizeMismatch) return result(total);
  return result(undefined);
}

/** 32-bit words of `bytes` when it is 4-byte aligned (word loops run several times faster than byte loops), else null. */
function words(bytes: Uint8Array): Uint32Array | null {
  return bytes.byteOffset % 4 === 0 ? new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2) : null;
}

/** Index of the first non-zero byte of `bytes`, or -1. */
function firstNonZero(bytes: Uint8Array): number {
  let i = 0;
  const w = words(bytes);
  if (w) {
    let k = 0;
    while (k < w.length && w[k] === 0) k++;
    i = k * 4; // the byte loop below pins down the byte inside the first non-zero word
  }
  for (; i < bytes.length; i++) if (bytes[i] !== 0) return i;
  return -1;
}

/** Index of the first byte where `a` and `b` (of equal length) differ, or -1. */
function firstMismatch(a: Uint8Array, b: Uint8Array): number {
  let i = 0;
  const wa = words(a);
  const wb = words(b);
  if (wa && wb) {
    let k = 0;
    while (k < wa.length && wa[k] === wb[k]) k++;
    i = k * 4;
  }
  for (; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}
