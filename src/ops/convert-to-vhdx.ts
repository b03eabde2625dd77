/**
 * Copying a virtual disk (raw, stream or another VHDX) into a new VHDX image. The copy goes a block at
 * a time so every allocation is written whole (no zero fill then overwrite); blocks that read as all
 * zeros are skipped, so a dynamic output stays sparse. Reading the next block overlaps writing this one.
 * All BAT changes are committed by one flush at the end (split only where the log is too small).
 */
import { copyBuffer } from './buffers.js';
import { isAllZero } from '../format/bytes.js';
import { VhdxError } from '../format/errors.js';
import type { Backend } from '../io/backend.js';
import { VhdxImage } from '../image/image.js';
import { create, type CreateOptions } from './create.js';
import type { DiskSource } from './source.js';

export interface ConvertToVhdxOptions extends Omit<CreateOptions, 'virtualSize' | 'onProgress'> {
  onProgress?: (done: number, total: number) => void;
  /**
   * Stops the copy at the next block (after the writes in flight), rejecting with its reason. The output
   * is then closed without the final flush: it is not a finished image, and the caller removes it.
   */
  signal?: AbortSignal;
}

export async function convertToVhdx(source: DiskSource, output: Backend, options: ConvertToVhdxOptions = {}): Promise<void> {
  const logicalSectorSize = options.logicalSectorSize ?? 512;
  // A raw size that is not a whole number of sectors is padded with zeros, as a disk would be.
  const virtualSize = Math.ceil(source.size / logicalSectorSize) * logicalSectorSize;
  if (virtualSize === 0) throw new VhdxError('INVALID_ARGUMENT', 'the source is empty', { file: output.name });
  await create(output, { ...options, virtualSize });
  options.signal?.throwIfAborted();
  const image = await VhdxImage.open(output, { readOnly: false });
  const writing: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
  try {
    const blockSize = image.blockSize;
    const chunk = Math.min(blockSize, Math.max(logicalSectorSize, virtualSize));
    // Two buffers: one being written into the image while the next is read from the source.
    const buffers = [copyBuffer(chunk), copyBuffer(chunk)];
    let which = 0;
    for (let offset = 0; offset < virtualSize; offset += chunk) {
      if (options.signal?.aborted) {
        await Promise.all(writing);
        options.signal.throwIfAborted();
      }
      const length = Math.min(chunk, virtualSize - offset);
      if (!source.knownZero(offset, length)) {
        await writing[which];
        const buffer = buffers[which]!.subarray(0, length);
        await source.read(buffer, offset);
        // Fixed images are created full of zeros, and dynamic blocks never written read as zeros.
        if (!isAllZero(buffer)) writing[which] = image.write(offset, buffer);
        which ^= 1;
      }
      options.onProgress?.(offset + length, virtualSize);
    }
    await Promise.all(writing);
    await image.close();
  } catch (error) {
    await Promise.allSettled(writing); // no write is left running against a closed file
    if (options.signal?.aborted) await output.close().catch(() => undefined);
    else await image.close().catch(() => undefined);
    throw error;
  }
}
