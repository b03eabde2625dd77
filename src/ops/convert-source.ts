/**
 * Any `DiskSource` (raw, stream, VHDX, VHD) copied to raw bytes: the payload of a raw image and of a
 * fixed VHD. To a file, only chunks holding data are written (the file is sized first, so ranges the
 * source knows are zero, and chunks that read as all zeros, stay holes); to a stream every byte goes.
 * One read and one write are in flight at a time, on two alternating buffers.
 */
import { copyBuffer } from './buffers.js';
import { isAllZero } from '../format/bytes.js';
import { VhdxError } from '../format/errors.js';
import type { ConvertOptions, RawOutput } from './convert.js';
import type { DiskSource } from './source.js';

export interface CopySourceOptions extends ConvertOptions {
  /** Bytes of output: at least the source's size, the rest zeros (default: the source's size). */
  size?: number;
}

export async function convertSourceToRaw(source: DiskSource, output: RawOutput, options: CopySourceOptions = {}): Promise<void> {
  const chunkSize = options.chunkSize ?? 2 * 1024 * 1024;
  const total = options.size ?? source.size;
  if (!Number.isSafeInteger(total) || total < source.size) {
    throw new VhdxError('INVALID_ARGUMENT', `output size ${total} is smaller than the ${source.size}-byte source`);
  }
  const buffers = [copyBuffer(chunkSize), copyBuffer(chunkSize)];
  let zeros: Uint8Array | null = null;
  let which = 0;
  // The write in flight, and the one each buffer last went to: a buffer is refilled only after its own
  // write is done (a chunk found zero after reading is not written, so the buffers do not simply alternate).
  let pending: Promise<void> = Promise.resolve();
  const written: Promise<void>[] = [pending, pending];
  const emit = async (data: Uint8Array, position: number, buffer: number): Promise<void> => {
    await pending;
    pending = output.kind === 'file' ? output.backend.write(data, position) : output.write(data);
    written[buffer] = pending;
  };
  if (output.kind === 'file') {
    // As convertToRaw: only an output holding bytes is emptied, then it is sized (holes where nothing is written).
    if ((await output.backend.size()) !== 0) await output.backend.truncate(0);
    await output.backend.truncate(total);
  }
  for (let position = 0; position < total; ) {
    if (options.signal?.aborted) {
      await pending;
      options.signal.throwIfAborted();
    }
    const n = Math.min(chunkSize, total - position);
    // Bytes of this chunk that come from the source; the rest is padding past its end.
    const fromSource = Math.max(0, Math.min(n, source.size - position));
    let zero = fromSource === 0 || (await source.knownZero(position, fromSource));
    if (!zero) {
      const index = which;
      which ^= 1;
      await written[index];
      const buffer = buffers[index]!.subarray(0, n);
      await source.read(buffer.subarray(0, fromSource), position);
      buffer.fill(0, fromSource);
      zero = output.kind === 'file' && isAllZero(buffer);
      if (!zero) await emit(buffer, position, index);
    }
    if (zero && output.kind === 'stream') {
      if (output.writeZeros) {
        await pending;
        pending = output.writeZeros(n);
      } else {
        zeros ??= copyBuffer(chunkSize);
        await pending;
        pending = output.write(zeros.subarray(0, n));
      }
    }
    position += n;
    options.onProgress?.(position, total);
  }
  await pending;
}
