/**
 * Any `DiskSource` into a new VHD (v1).
 *
 * Fixed: the virtual disk's bytes at offset 0 (sparse where the source is zero), then the footer. The
 * footer is written last and only after the data is durable, so a crash leaves a file without a valid
 * footer, which no reader takes for a VHD.
 *
 * Dynamic: footer copy at 0, dynamic header at 512, BAT at 1536, then one block (sector bitmap, then
 * data starting on a 4 KiB boundary) for each block of the disk that holds data, and the footer. Blocks
 * go first; only after they are durable are the BAT and dynamic header written, then (durable too) the
 * footer copy at 0 and the footer at the end: until then no reader takes the file for a VHD, and a BAT
 * entry never points at a block not yet written.
 */
import { convertSourceToRaw } from './convert-source.js';
import type { ConvertOptions } from './convert.js';
import { copyBuffer } from './buffers.js';
import { GiB, isAllZero, roundUp } from '../format/bytes.js';
import { VhdxError } from '../format/errors.js';
import type { Backend } from '../io/backend.js';
import { encodeVhdBat, vhdBatBytes, vhdBitmapBytes, VHD_SECTOR_SIZE, VHD_UNALLOCATED } from '../vhd/bat.js';
import { encodeVhdDynamicHeader, VHD_DEFAULT_BLOCK_SIZE, VHD_DYNAMIC_HEADER_SIZE, VHD_DYNAMIC_HEADER_VERSION, VHD_PARENT_LOCATOR_COUNT } from '../vhd/dynamic-header.js';
import { encodeVhdFooter, VHD_FOOTER_SIZE, type VhdFooter } from '../vhd/footer.js';
import { vhdFooterFor, type VhdFooterOptions } from '../vhd/footer-for.js';
import type { DiskSource } from './source.js';

export interface ConvertToVhdOptions extends ConvertOptions, VhdFooterOptions {
  /** Dynamic VHDs: bytes per block, a power of two from 512 KiB to 256 MiB (default 2 MiB, as Hyper-V). */
  blockSize?: number;
}

/** The largest disk a dynamic VHD holds (Hyper-V's limit: its BAT counts the file in 32-bit sector numbers). */
export const VHD_MAX_DYNAMIC_SIZE = 2040 * GiB;
export const VHD_MIN_WRITE_BLOCK_SIZE = 512 * 1024;
export const VHD_MAX_WRITE_BLOCK_SIZE = 256 * 1024 * 1024;
/** Bytes read and written at once (a block is read in pieces of this size, or its own when smaller). */
const PIECE = 2 * 1024 * 1024;
/** Block data starts on this boundary in the file (the bitmap just before it). */
const DATA_ALIGNMENT = 4096;

/**
 * Writes `source` to `output` as a fixed VHD (or a dynamic one, `type: 'dynamic'`) whose footer is
 * `vhdFooterFor(source, options)`, and returns that footer. The output is flushed (per its cache mode)
 * but not closed.
 */
export async function convertToVhd(source: DiskSource, output: Backend, options: ConvertToVhdOptions = {}): Promise<VhdFooter> {
  const footer = vhdFooterFor(source, options);
  if (footer.diskType === 'dynamic') return convertToDynamicVhd(source, output, footer, options);
  if (options.blockSize !== undefined) throw new VhdxError('INVALID_ARGUMENT', 'a block size applies to dynamic VHDs only');
  await convertSourceToRaw(source, { kind: 'file', backend: output }, { ...options, size: footer.currentSize });
  options.signal?.throwIfAborted();
  await output.flush();
  await output.write(encodeVhdFooter(footer), footer.currentSize);
  await output.flush();
  return footer;
}

async function convertToDynamicVhd(source: DiskSource, output: Backend, footer: VhdFooter, options: ConvertToVhdOptions): Promise<VhdFooter> {
  const blockSize = options.blockSize ?? VHD_DEFAULT_BLOCK_SIZE;
  if (!Number.isSafeInteger(blockSize) || blockSize < VHD_MIN_WRITE_BLOCK_SIZE || blockSize > VHD_MAX_WRITE_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw new VhdxError('INVALID_ARGUMENT', `VHD block size ${blockSize} is not a power of two from 512 KiB to 256 MiB`);
  }
  const size = footer.currentSize;
  if (size > VHD_MAX_DYNAMIC_SIZE) throw new VhdxError('INVALID_ARGUMENT', `a dynamic VHD holds at most 2040 GiB; this disk is ${size} bytes (a fixed VHD, or VHDX, holds it)`);
  const blocks = Math.ceil(size / blockSize);
  const tableOffset = VHD_FOOTER_SIZE + VHD_DYNAMIC_HEADER_SIZE;
  const bitmapBytes = vhdBitmapBytes(blockSize);
  // Every sector of a stored block is marked present: its data is written whole, zeros included.
  const bitmap = new Uint8Array(bitmapBytes).fill(0xff);
  const bat = new Uint32Array(blocks).fill(VHD_UNALLOCATED);
  let end = tableOffset + vhdBatBytes(blocks);

  if ((await output.size()) !== 0) await output.truncate(0);
  // Read in pieces of at most 2 MiB, whatever the block size (memory stays bounded), the next piece read
  // while the one before is written: two buffers, each refilled only after its own write is done; the
  // writes go out in order, one at a time. A block gets its place in the file at its first piece that
  // is not all zeros; pieces of zeros are not written (holes, which read as zeros).
  const pieceSize = Math.min(blockSize, options.chunkSize ?? PIECE);
  const buffers = [copyBuffer(pieceSize), copyBuffer(pieceSize)];
  const written: Promise<void>[] = [Promise.resolve(), Promise.resolve()];
  let writes: Promise<void> = Promise.resolve();
  let which = 0;
  const queue = (data: Uint8Array, position: number, extra?: { bytes: Uint8Array; at: number }): void => {
    writes = writes.then(async () => {
      if (extra) await output.write(extra.bytes, extra.at);
      await output.write(data, position);
    });
    writes.catch(() => undefined); // handled here for now: it is awaited before the buffer is reused, and at the end
    written[which] = writes;
    which ^= 1;
  };
  try {
    for (let b = 0; b < blocks; b++) {
      options.signal?.throwIfAborted();
      const start = b * blockSize;
      const length = Math.min(blockSize, size - start);
      const inSource = Math.max(0, Math.min(length, source.size - start));
      let dataAt = -1;
      if (inSource > 0 && !(await source.knownZero(start, inSource))) {
        for (let at = 0; at < inSource; at += pieceSize) {
          const buffer = buffers[which]!;
          await written[which];
          const data = buffer.subarray(0, Math.min(pieceSize, inSource - at));
          await source.read(data, start + at);
          if (isAllZero(data)) continue;
          if (dataAt < 0) {
            dataAt = roundUp(end + bitmapBytes, DATA_ALIGNMENT);
            bat[b] = (dataAt - bitmapBytes) / VHD_SECTOR_SIZE;
            end = dataAt + blockSize;
            queue(data, dataAt + at, { bytes: bitmap, at: dataAt - bitmapBytes });
          } else {
            queue(data, dataAt + at);
          }
        }
      }
      options.onProgress?.(start + length, size);
    }
  } finally {
    // No write may still be running when this returns or throws (the caller closes the output).
    await writes.catch(() => undefined);
  }
  await writes;
  options.signal?.throwIfAborted();
  // The blocks are durable before anything points at them; the footers make the file a VHD, last.
  await output.truncate(end + VHD_FOOTER_SIZE);
  await output.flush();
  await output.write(encodeVhdBat(bat), tableOffset);
  await output.write(
    encodeVhdDynamicHeader({
      tableOffset,
      maxTableEntries: blocks,
      blockSize,
      version: VHD_DYNAMIC_HEADER_VERSION,
      parentUniqueId: new Uint8Array(16),
      parentTimestamp: 0,
      parentName: '',
      parentLocators: Array.from({ length: VHD_PARENT_LOCATOR_COUNT }, () => ({ platformCode: '', dataSpace: 0, dataLength: 0, dataOffset: 0 })),
    }),
    VHD_FOOTER_SIZE,
  );
  await output.flush();
  const encoded = encodeVhdFooter(footer);
  await output.write(encoded, 0);
  await output.write(encoded, end);
  await output.flush();
  return footer;
}
