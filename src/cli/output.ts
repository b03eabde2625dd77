import { fstatSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { native } from '../node/native.js';
import type { OptionSpec } from './command.js';
import { isHttpUrl, redactUrl } from '../io/http.js';

/** A FILE argument fit to print: a URL's query string (a SAS token, a presigned signature) redacted. */
export function shownPath(path: string): string {
  return isHttpUrl(path) ? redactUrl(path) : path;
}

/** Writing to stdout with backpressure, so large outputs never pile up in memory. */
export function writeStdout(data: Uint8Array | string): Promise<void> {
  return new Promise((resolve, reject) => {
    process.stdout.write(data, (error) => (error ? reject(error) : resolve()));
  });
}

/** `--json`, as every command that can print JSON takes it (what it prints is `printJson`'s). */
export const JSON_OPTION: OptionSpec = { type: 'boolean', description: 'print the result as JSON (machine-readable)' };

export function printJson(value: unknown): Promise<void> {
  return writeStdout(`${JSON.stringify(value, null, 2)}\n`);
}

/** Standard output as the sink of a long byte stream, such as a whole disk (`vhdx convert IN -`). */
export interface StdoutSink {
  /** Writes `data`; the buffer may be reused once the promise settles. */
  write(data: Uint8Array): Promise<void>;
  /** Writes `length` zero bytes. */
  writeZeros(length: number): Promise<void>;
}

/** Zero bytes handed to the stream at a time when the native helper cannot move them. */
const ZERO_PIECE = 1024 * 1024;
/** When the pipe is full, a write this small through the stream waits until the reader makes room. */
const WAKE_PIECE = 4096;
/** The event loop gets a turn at least this often (bytes), so signals and progress are seen. */
const YIELD_EVERY = 32 * 1024 * 1024;

/**
 * Every write goes through `process.stdout` (its backpressure, its EPIPE handling), one at a time,
 * except zeros into a pipe when the native helper is built: those are moved by vmsplice from one
 * never-written zero region, so no byte is copied or filled, and the pipe is first grown from 64 KiB to
 * 1 MiB (at most /proc/sys/fs/pipe-max-size), so the reader and this process wake each other far less
 * often. A full pipe is waited for through the stream (a small write that
 * completes when the reader has made room), never by blocking, so signals are handled as before.
 * Without the helper, zeros are writes of one shared zero buffer that nothing ever fills.
 */
export function stdoutSink(): StdoutSink {
  // process.stdout is created first: on a pipe it makes the descriptor non-blocking (libuv), which the
  // splicing honours, so a full pipe is waited for in the event loop, never inside a system call.
  const fd = process.stdout.fd;
  let splice = native !== null && isPipe(fd);
  if (splice && native!.pipeZeros(fd, 0, pipeSize()) < 0) splice = false;
  let zeros: Uint8Array | null = null;
  const zeroPiece = (n: number): Uint8Array => (zeros ??= new Uint8Array(ZERO_PIECE)).subarray(0, Math.min(n, ZERO_PIECE));
  let sinceTurn = 0;
  const counted = async (n: number): Promise<void> => {
    sinceTurn += n;
    if (sinceTurn >= YIELD_EVERY) {
      sinceTurn = 0;
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  };
  return {
    async write(data) {
      await writeStdout(data);
      await counted(data.length);
    },
    async writeZeros(length) {
      const total = length;
      while (length > 0) {
        if (splice) {
          const moved = native!.pipeZeros(fd, length, 0);
          if (moved > 0) {
            length -= moved;
            continue;
          }
          if (moved === -constants.errno.EPIPE) throw errnoError('EPIPE', moved);
          // Any error but a full pipe (EAGAIN): the stream takes over for good, and reports it if real.
          if (moved !== -constants.errno.EAGAIN) splice = false;
        }
        // Through the stream: everything left, or while splicing a small piece that waits for room.
        const piece = zeroPiece(splice ? Math.min(WAKE_PIECE, length) : length);
        await writeStdout(piece);
        length -= piece.length;
      }
      await counted(total);
    },
  };
}

function isPipe(fd: number): boolean {
  try {
    return fstatSync(fd).isFIFO();
  } catch {
    return false;
  }
}

/** The pipe size asked for: 1 MiB, or less where /proc/sys/fs/pipe-max-size (Linux) allows less. */
function pipeSize(): number {
  const wanted = 1024 * 1024;
  try {
    const max = Number.parseInt(readFileSync('/proc/sys/fs/pipe-max-size', 'utf8'), 10);
    if (Number.isSafeInteger(max) && max > 0) return Math.min(max, wanted);
  } catch {
    // not Linux: the helper is not built there anyway
  }
  return wanted;
}

/** An error like the ones Node's own writes fail with (`code` EPIPE ...), from a negative errno. */
function errnoError(code: string, negativeErrno: number): NodeJS.ErrnoException {
  const error: NodeJS.ErrnoException = new Error(`write ${code}`);
  error.code = code;
  error.errno = negativeErrno;
  error.syscall = 'write';
  return error;
}
