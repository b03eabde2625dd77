/** What a conversion reads from: a virtual disk of known size, read in order or at random. */
import { isAllZero } from '../format/bytes.js';
import { readFully, type Backend } from '../io/backend.js';
import type { VhdxImage } from '../image/image.js';
import { guidFromString } from '../format/guid.js';
import type { DiskIdentity } from '../vhd/footer-for.js';
import type { VhdImage } from '../vhd/image.js';

export interface DiskSource {
  readonly size: number;
  /** Fills `target` with the bytes at `offset` (zeros past the end). Sequential sources need increasing offsets. */
  read(target: Uint8Array, offset: number): Promise<void>;
  /** True when [offset, offset + length) is known to read as zeros without reading it. */
  knownZero(offset: number, length: number): boolean | Promise<boolean>;
  /** A VHDX or VHD source: its Virtual Disk ID or Unique Id, which a VHD made from it keeps (`vhdFooterFor`). */
  readonly identity?: DiskIdentity;
}

/**
 * A raw image in a backend. Holes the backend can name (`nextData`: SEEK_DATA in a file) are skipped
 * without reading; other zeros are found by reading (the callers test what they read).
 */
export function rawSource(backend: Backend, size: number): DiskSource {
  return {
    size,
    async read(target, offset) {
      const got = await readFully(backend, target, offset);
      target.fill(0, got);
    },
    knownZero: (offset, length) => (backend.nextData ? backend.nextData(offset) >= offset + length : false),
  };
}

/** A VHDX image: unallocated and zero extents are skipped without reading. */
export function vhdxSource(image: VhdxImage): DiskSource {
  return {
    size: image.virtualSize,
    identity: { format: 'vhdx', id: guidFromString(image.info().virtualDiskId) },
    read: (target, offset) => image.readInto(target, offset),
    async knownZero(offset, length) {
      // Walked, not listed: the first run that holds data ends it (a long range costs one BAT walk at most).
      for await (const e of image.walk(offset, length, { resolved: true })) if (e.kind !== 'zero' && e.kind !== 'unallocated') return false;
      return true;
    },
  };
}

/**
 * A VHD (fixed, dynamic, or differencing with its parent attached): unallocated blocks, and for a
 * fixed disk the holes the backend can name, are skipped without reading.
 */
export function vhdSource(image: VhdImage): DiskSource {
  return {
    size: image.virtualSize,
    identity: { format: 'vhd', id: image.uniqueId },
    read: (target, offset) => image.readInto(target, offset),
    knownZero: (offset, length) => image.knownZero(offset, length),
  };
}

/** A stream of bytes (standard input): reads must come in order, without gaps. */
export function streamSource(chunks: AsyncIterable<Uint8Array>, size: number): DiskSource {
  const iterator = chunks[Symbol.asyncIterator]();
  let buffered: Uint8Array = new Uint8Array(0);
  let position = 0;
  let ended = false;
  return {
    size,
    async read(target, offset) {
      if (offset !== position) throw new RangeError(`stream source read at ${offset}, expected ${position}`);
      let filled = 0;
      while (filled < target.length) {
        if (buffered.length === 0) {
          if (ended) break;
          const next = await iterator.next();
          if (next.done) {
            ended = true;
            break;
          }
          buffered = next.value;
        }
        const n = Math.min(buffered.length, target.length - filled);
        target.set(buffered.subarray(0, n), filled);
        buffered = buffered.subarray(n);
        filled += n;
      }
      target.fill(0, filled);
      position += target.length;
    },
    knownZero: () => false,
  };
}

export { isAllZero };
