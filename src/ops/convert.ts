/** Whole-disk copy of a VHDX image to a raw image. */
import { copyBuffer } from './buffers.js';
import type { Backend } from '../io/backend.js';
import type { PlannedRange, VhdxImage } from '../image/image.js';

/** Where raw bytes go: a positional file (holes stay holes) or a stream that must receive every byte. */
export type RawOutput =
  | { kind: 'file'; backend: Backend }
  | {
      kind: 'stream';
      /** One call at a time; `data` is reused once the promise settles, and must not be changed (zeros are one shared buffer). */
      write(data: Uint8Array): Promise<void>;
      /** Optional: ranges that read as zeros, in pieces of at most `chunkSize` bytes (else `write` of a zero buffer). */
      writeZeros?(length: number): Promise<void>;
    };

export interface ConvertOptions {
  /**
   * Bytes per read; two buffers of this size are in flight. The 2 MiB default keeps both buffers cache
   * resident, so the kernel's copies in and out of them stay cheap; larger chunks measured no faster.
   */
  chunkSize?: number;
  onProgress?: (done: number, total: number) => void;
  /** Stops the copy at the next chunk boundary (after the write in flight), rejecting with its reason. */
  signal?: AbortSignal;
}

/** Bytes per kernel copy (`Backend.copyFrom`): progress and cancellation are checked between them. */
const KERNEL_COPY_PIECE = 32 * 1024 * 1024;

/**
 * Copies the virtual disk to `output`, following its read plan (`VhdxImage.readPlan`). To a file, the
 * output is sized first and only ranges that hold data are written, so unallocated ranges stay sparse.
 * File ranges go file to file inside the kernel when the output backend can (`copyFrom`); anything else
 * is read and written with reads and writes overlapping (one chunk each in flight).
 */
export async function convertToRaw(image: VhdxImage, output: RawOutput, options: ConvertOptions = {}): Promise<void> {
  const chunkSize = options.chunkSize ?? 2 * 1024 * 1024;
  const total = image.virtualSize;
  const buffers = [copyBuffer(chunkSize), copyBuffer(chunkSize)];
  // Ranges that read as zeros reach a stream without `writeZeros` as writes of this one buffer, which
  // nothing ever fills: no zeroing or reading per chunk.
  let zeros: Uint8Array | null = null;
  let which = 0;
  let pending: Promise<void> = Promise.resolve();
  let done = 0;
  const emit = async (data: Uint8Array, position: number): Promise<void> => {
    await pending;
    pending = output.kind === 'file' ? output.backend.write(data, position) : output.write(data);
  };
  if (output.kind === 'file') {
    // Only an output that already holds bytes is emptied first: truncating a file to zero makes ext4
    // (auto_da_alloc) start writeback of everything written since when the file is closed, which
    // stalls close() on a large conversion. A freshly created file is already empty.
    if ((await output.backend.size()) !== 0) await output.backend.truncate(0);
    await output.backend.truncate(total);
  }
  // The plan a window at a time: its length grows with the extents of the window, not of the disk.
  const window = Math.max(image.blockSize, PLAN_WINDOW - (PLAN_WINDOW % image.blockSize));
  for await (const range of planWindows(image, window)) {
    const hasData = range.kind !== 'zero';
    if (!hasData && output.kind === 'file') {
      done += range.length;
      options.onProgress?.(done, total);
      continue;
    }
    let position = range.offset;
    const end = range.offset + range.length;
    const copyFrom = output.kind === 'file' && range.kind === 'file' ? output.backend.copyFrom?.bind(output.backend) : undefined;
    while (copyFrom && range.kind === 'file' && position < end) {
      if (options.signal?.aborted) {
        await pending;
        options.signal.throwIfAborted();
      }
      const n = Math.min(KERNEL_COPY_PIECE, end - position);
      await pending;
      const copied = await copyFrom(range.backend, range.fileOffset + (position - range.offset), position, n);
      position += copied;
      done += copied;
      options.onProgress?.(done, total);
      if (copied < n) break; // the rest of the extent goes through memory
    }
    while (position < end) {
      if (options.signal?.aborted) {
        await pending;
        options.signal.throwIfAborted();
      }
      const n = Math.min(chunkSize, end - position);
      if (hasData) {
        const buffer = buffers[which]!.subarray(0, n);
        which ^= 1;
        await image.readInto(buffer, position);
        await emit(buffer, position);
      } else if (output.kind === 'stream' && output.writeZeros) {
        await pending;
        pending = output.writeZeros(n);
      } else {
        zeros ??= copyBuffer(chunkSize);
        await emit(zeros.subarray(0, n), position);
      }
      position += n;
      done += n;
      options.onProgress?.(done, total);
    }
  }
  await pending;
}

/** Virtual bytes whose read plan is made at once (the rest follows, window by window). */
const PLAN_WINDOW = 16 * 1024 * 1024 * 1024;

async function* planWindows(image: VhdxImage, window: number): AsyncGenerator<PlannedRange> {
  for (let offset = 0; offset < image.virtualSize; offset += window) {
    yield* await image.readPlan(offset, Math.min(window, image.virtualSize - offset));
  }
}
