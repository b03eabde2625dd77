/**
 * What the NBD server needs of an image: a `VhdxImage` is one as it is; `vhdNbdImage` makes a read-only
 * VHD one (its runs as extents: stored data, unallocated, or a differencing disk's parent runs, which
 * read through the parent and are reported as data).
 */
import { VhdxError } from '../format/errors.js';
import type { Extent } from '../image/reader.js';
import type { VhdImage } from '../vhd/image.js';

export interface NbdImage {
  readonly virtualSize: number;
  readonly logicalSectorSize: number;
  /** The preferred block size a client is told (at least the logical sector size). */
  readonly physicalSectorSize: number;
  readonly readOnly: boolean;
  readonly type: string;
  /** Sent to clients that ask for a description (default: `VHDX <type> image`). */
  readonly description?: string;
  readInto(target: Uint8Array, offset: number): Promise<void>;
  extents(offset: number, length: number): Promise<Extent[]>;
  /** The extents when known without I/O, else null (the caller then awaits `extents`). */
  extentsIfResident(offset: number, length: number): Extent[] | null;
  /** Reads from the page cache at once when it can; false when the caller must use `readInto`. */
  readIntoSync(target: Uint8Array, offset: number): boolean;
  write(offset: number, data: Uint8Array): Promise<void>;
  writeZeroes(offset: number, length: number): Promise<void>;
  discard(offset: number, length: number): Promise<void>;
  flush(): Promise<void>;
}

/** A VHD served read-only: every change is refused (the server answers EPERM before asking). */
export function vhdNbdImage(image: VhdImage): NbdImage {
  const refuse = async (): Promise<never> => {
    throw new VhdxError('READ_ONLY', 'a VHD is served read-only', { file: image.backend.name });
  };
  return {
    virtualSize: image.virtualSize,
    logicalSectorSize: 512,
    physicalSectorSize: 512,
    readOnly: true,
    type: image.type,
    description: `VHD ${image.type} image`,
    readInto: (target, offset) => image.readInto(target, offset),
    async extents(offset, length) {
      const out: Extent[] = [];
      for await (const run of image.walk(offset, length)) {
        const kind = run.kind === 'unallocated' ? 'unallocated' : 'data';
        const last = out[out.length - 1];
        // Neighbouring runs of one kind are one extent to a client (it sees no file offsets).
        if (last && last.kind === kind) last.length += run.length;
        else out.push({ offset: run.offset, length: run.length, kind, state: run.kind });
      }
      return out;
    },
    extentsIfResident: () => null,
    readIntoSync: () => false,
    write: refuse,
    writeZeroes: refuse,
    discard: refuse,
    flush: async () => undefined,
  };
}
