/**
 * The whole I/O contract of the library: positional reads and writes, a durability barrier, size and
 * truncate. Image code talks only to this; only the Node implementation touches the operating system.
 */
import { VhdxError } from '../format/errors.js';

export interface Backend {
  /** A name for messages: the file path, or a label for in-memory images. */
  readonly name: string;
  readonly readOnly: boolean;
  /** Reads up to `length` bytes at `position` into `target` (from its start); returns bytes read (short only at EOF). */
  read(target: Uint8Array, position: number): Promise<number>;
  /** Writes all of `data` at `position`, growing the file if needed. */
  write(data: Uint8Array, position: number): Promise<void>;
  /** Durability barrier: every write completed before the call is durable when it resolves. */
  flush(): Promise<void>;
  size(): Promise<number>;
  truncate(size: number): Promise<void>;
  close(): Promise<void>;
  /**
   * Optional fast path with the result of writing zeros: [position, position + length) reads as zeros
   * and its space is allocated (never left as a hole), growing the file if the range ends past it.
   * Callers use `writeZeros`, which falls back to writing zero bytes.
   */
  writeZeros?(position: number, length: number): Promise<void>;
  /**
   * Optional fast path: copies `length` bytes at `sourcePosition` of `source` to `position` of this
   * backend inside the operating system, without staging them in memory. Resolves to the bytes
   * copied from the start of the range; fewer (0 included) when it cannot go on (another kind of
   * backend, a file system without the call, the end of the source), and the caller copies the rest.
   */
  copyFrom?(source: Backend, sourcePosition: number, position: number, length: number): Promise<number>;
  /**
   * Optional: `read`, done synchronously, for small reads answered at once from a cache (the page cache
   * for a file). Same result as `read`. Callers fall back to `read` where it is missing.
   */
  readSync?(target: Uint8Array, position: number): number;
  /**
   * Optional: `write`, done synchronously, for small writes a cache takes at once (the page cache for a
   * file). Same effect as `write`; durable only after `flush` like it. Callers fall back to `write`.
   */
  writeSync?(data: Uint8Array, position: number): void;
  /**
   * Optional: the first offset at or after `position` that may hold data (everything before it reads as
   * zeros: a hole), or Infinity when nothing after `position` does; `position` itself when unknown. For
   * sources that skip holes without reading them (a sparse raw disk into `convert`).
   */
  nextData?(position: number): number;
  /**
   * Optional: the largest read `readFully` hands this backend at once (default `READ_PIECE`). A backend
   * whose every read is a round trip (HTTP) takes a whole chunk and splits it into parallel requests
   * itself, rather than being asked for 128 KiB at a time, one after another.
   */
  readonly readPiece?: number;
}

/** Zero bytes written by the `writeZeros` fallback, 1 MiB at a time. */
const ZEROS = new Uint8Array(1024 * 1024);

/** Makes [position, position + length) read as zeros with its space allocated: the backend's fast path, or zero bytes. */
export async function writeZeros(backend: Backend, position: number, length: number): Promise<void> {
  if (length <= 0) return;
  if (backend.writeZeros) return backend.writeZeros(position, length);
  return writeZeroBytes(backend, position, length);
}

/** The plain way: zero bytes written 1 MiB at a time. */
export async function writeZeroBytes(backend: Backend, position: number, length: number): Promise<void> {
  for (let done = 0; done < length; done += ZEROS.length) {
    await backend.write(ZEROS.subarray(0, Math.min(ZEROS.length, length - done)), position + done);
  }
}

/** Reads exactly `length` bytes or throws TRUNCATED naming `what`. */
export async function readExactly(backend: Backend, position: number, length: number, what: string): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  const got = await readFully(backend, out, position);
  if (got !== length) {
    throw new VhdxError('TRUNCATED', `file ends inside the ${what} (needs ${length} bytes at offset ${position}, file has ${got})`, {
      file: backend.name,
      offset: position,
    });
  }
  return out;
}

/**
 * The largest single read `readFully` asks for. Copies out of the page cache in pieces this size stay
 * in the CPU cache: on the development machine 2 GiB read in 128 KiB pieces took 0.22-0.26 s, in
 * 256 KiB to 32 MiB pieces 0.9-1.4 s.
 */
export const READ_PIECE = 128 * 1024;

/** Fills `target` from `position` in pieces of at most READ_PIECE (or the backend's `readPiece`); returns the bytes read (less only at EOF). */
export async function readFully(backend: Backend, target: Uint8Array, position: number): Promise<number> {
  const piece = backend.readPiece ?? READ_PIECE;
  let done = 0;
  while (done < target.length) {
    const n = await backend.read(target.subarray(done, done + Math.min(piece, target.length - done)), position + done);
    if (n <= 0) break;
    done += n;
  }
  return done;
}

/**
 * How a writable image uses the host's cache, with qemu-img's meanings:
 * - `writeback` (the default): writes go through the page cache and every durability barrier is an
 *   fdatasync, so data is durable before the metadata that points at it (the crash-safe order).
 * - `unsafe`: no flush at all, for scratch images. A power loss may leave an image that opens but
 *   holds garbage; a clean exit still leaves a complete, consistent image (the OS writes it back).
 * - `none`: O_DIRECT where the file system allows it (the page cache is bypassed), with the barriers
 *   of `writeback`.
 */
export type CacheMode = 'writeback' | 'unsafe' | 'none';

export const CACHE_MODES: readonly CacheMode[] = ['writeback', 'unsafe', 'none'];

/**
 * `backend` with every flush turned into a no-op: the `unsafe` cache mode for any backend (the Node
 * file backend takes the mode as an open option instead, without the extra call).
 */
export function withoutFlush(backend: Backend): Backend {
  return {
    get name() {
      return backend.name;
    },
    get readOnly() {
      return backend.readOnly;
    },
    read: (target, position) => backend.read(target, position),
    ...(backend.readSync ? { readSync: (target: Uint8Array, position: number) => backend.readSync!(target, position) } : {}),
    write: (data, position) => backend.write(data, position),
    ...(backend.writeSync ? { writeSync: (data: Uint8Array, position: number) => backend.writeSync!(data, position) } : {}),
    flush: async () => undefined,
    size: () => backend.size(),
    truncate: (size) => backend.truncate(size),
    close: () => backend.close(),
    ...(backend.writeZeros ? { writeZeros: (position: number, length: number) => backend.writeZeros!(position, length) } : {}),
    ...(backend.copyFrom ? { copyFrom: (source: Backend, from: number, position: number, length: number) => backend.copyFrom!(source, from, position, length) } : {}),
  };
}
