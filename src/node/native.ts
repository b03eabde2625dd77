/**
 * The optional native helper (native/vhdx_native.c, built at install by node-gyp): Linux file system
 * calls Node.js does not expose. The Node file backend uses it, and `vhdx convert IN -` for the zeros it
 * sends into a pipe; without it (another platform, no compiler at install, or VHDX_NATIVE=0 in the
 * environment) they do plain reads and writes.
 */
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { packageRoot } from './package-root.js';

/** Every call returns a negative errno on failure instead of throwing. */
export interface NativeIo {
  fallocate(fd: number, mode: number, offset: number, length: number): number;
  copyFileRangeAsync(fdIn: number, offIn: number, fdOut: number, offOut: number, length: number): Promise<number>;
  /** sync_file_range(2) on the thread pool. */
  syncFileRangeAsync(fd: number, offset: number, length: number, flags: number): Promise<number>;
  /** Zeroed memory starting on a 4096-byte boundary (for O_DIRECT); `length` a multiple of 4096 up to 1 GiB. */
  alignedBuffer(length: number): ArrayBuffer;
  /**
   * Moves up to `length` zero bytes into the pipe `fd` by vmsplice(2), without copying them; returns
   * the bytes moved (fewer, or -EAGAIN, when a non-blocking pipe is full). A `pipeSize` > 0 first grows
   * the pipe to that many bytes (F_SETPIPE_SZ; best effort, never shrinks).
   */
  pipeZeros(fd: number, length: number, pipeSize: number): number;
  /** lseek(fd, offset, SEEK_DATA): the first offset at or after `offset` that holds data; -ENXIO when none does. Absent from helpers built before it. */
  seekData?(fd: number, offset: number): number;
}

/** sync_file_range flag (linux/fs.h): start writeback of the dirty pages in the range, without waiting. */
export const SYNC_FILE_RANGE_WRITE = 2;

/** fallocate mode (linux/falloc.h): zero a range, allocated, growing the file if it ends past it. */
export const FALLOC_FL_ZERO_RANGE = 0x10;

function load(): NativeIo | null {
  if (process.env.VHDX_NATIVE === '0') return null;
  const root = packageRoot(import.meta.url);
  if (!root) return null;
  try {
    return createRequire(import.meta.url)(join(root, 'build', 'Release', 'vhdx_native.node')) as NativeIo;
  } catch {
    return null;
  }
}

/** The helper, or null when it is not built or turned off. */
export const native: NativeIo | null = load();

/** For `vhdx --version`: which native calls the file backend has. */
export function nativeSummary(): string {
  return native ? 'native helper: fallocate, copy_file_range, sync_file_range, vmsplice, SEEK_DATA, aligned buffers' : 'no native helper: plain file I/O';
}
