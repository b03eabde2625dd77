/**
 * Creating an image (format reference §10). Every byte of every structure is written (no holes: Hyper-V
 * refuses sparse VHDX files), fixed images are fully allocated unless `sparse` is asked for, and the
 * file identifier is written last, after a flush: until that final 64 KiB write lands, the file is not
 * a VHDX at all, so an interrupted create can never open as a valid but wrong image.
 */
import { MiB } from '../format/bytes.js';
import { encodeBatEntry, isSectorBitmapEntryIndex, PAYLOAD_BLOCK_FULLY_PRESENT } from '../format/bat.js';
import { HEADER1_OFFSET, HEADER2_OFFSET, REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET, HEADER_SECTION_SIZE } from '../format/constants.js';
import { encodeFileIdentifier } from '../format/file-identifier.js';
import { guidFromString, randomGuid, ZERO_GUID, type Guid } from '../format/guid.js';
import { VhdxError } from '../format/errors.js';
import { encodeParentLocator } from '../format/parent-locator.js';
import { PARENT_LOCATOR_TYPE_VHDX } from '../format/constants.js';
import type { VhdxImage } from '../image/image.js';
import { encodeHeader } from '../format/header.js';
import { writeZeros, type Backend } from '../io/backend.js';
import { encodeLayoutRegionTable, encodeMetadataRegion, planLayout, validateParameters, type ImageParameters, type Layout } from './layout.js';

export interface CreateOptions {
  virtualSize: number;
  /** Default dynamic, as Hyper-V's New-VHD. */
  type?: 'dynamic' | 'fixed';
  /** Default 32 MiB. */
  blockSize?: number;
  /** Default 512. */
  logicalSectorSize?: number;
  /** Default 4096. */
  physicalSectorSize?: number;
  /** Default 1 MiB. */
  logLength?: number;
  /** Fixed images only: leave the payload area as a hole instead of writing zeros. */
  sparse?: boolean;
  creator?: string;
  virtualDiskId?: Guid;
  /**
   * A differencing disk (§6.4): size, sector sizes and virtual disk ID come from `parent.image` (its
   * options here are ignored), the locator records the parent's current DataWriteGuid and the paths.
   * The parent is only read. `relativePath` is relative to the child's folder; both use the separator
   * given (Windows tools expect `\`).
   */
  parent?: { image: VhdxImage; relativePath: string; absolutePath: string };
  onProgress?: (done: number, total: number) => void;
  /** Stops writing the zeros of a fixed image at the next chunk, rejecting with its reason. */
  signal?: AbortSignal;
}

/**
 * Hyper-V's defaults. A differencing disk gets 2 MiB blocks, as Hyper-V gives its children: their
 * writes are scattered, and each first write to a block allocates all of it.
 */
export const CREATE_DEFAULTS = { type: 'dynamic', blockSize: 32 * MiB, differencingBlockSize: 2 * MiB, logicalSectorSize: 512, physicalSectorSize: 4096, logLength: MiB } as const;

export function resolveCreateOptions(options: CreateOptions): ImageParameters {
  const p: ImageParameters = {
    virtualSize: options.virtualSize,
    blockSize: options.blockSize ?? CREATE_DEFAULTS.blockSize,
    logicalSectorSize: options.logicalSectorSize ?? CREATE_DEFAULTS.logicalSectorSize,
    physicalSectorSize: options.physicalSectorSize ?? CREATE_DEFAULTS.physicalSectorSize,
    logLength: options.logLength ?? CREATE_DEFAULTS.logLength,
    fixed: (options.type ?? CREATE_DEFAULTS.type) === 'fixed',
  };
  validateParameters(p);
  return p;
}

/** Lays out a new image on an empty (or to be emptied) backend. */
export async function create(backend: Backend, options: CreateOptions): Promise<Layout> {
  const parent = options.parent;
  if (parent && options.type === 'fixed') throw new VhdxError('INVALID_ARGUMENT', 'a differencing disk cannot be fixed');
  const p = resolveCreateOptions(
    parent
      ? {
          ...options,
          virtualSize: parent.image.virtualSize,
          blockSize: options.blockSize ?? CREATE_DEFAULTS.differencingBlockSize,
          logicalSectorSize: parent.image.logicalSectorSize,
          physicalSectorSize: parent.image.physicalSectorSize,
          type: 'dynamic',
        }
      : options,
  );
  if (parent) p.hasParent = true;
  const locator = parent
    ? encodeParentLocator({
        locatorType: PARENT_LOCATOR_TYPE_VHDX,
        entries: [
          { key: 'parent_linkage', value: `{${parent.image.info().dataWriteGuid.toLowerCase()}}` },
          { key: 'relative_path', value: parent.relativePath },
          { key: 'absolute_win32_path', value: parent.absolutePath },
        ],
      })
    : undefined;
  const virtualDiskId = parent ? guidFromString(parent.image.info().virtualDiskId) : (options.virtualDiskId ?? randomGuid());
  const layout = planLayout(p);
  const { geometry } = layout;
  const fileEnd = layout.dataOffset + (p.fixed ? geometry.payloadBlocks * p.blockSize : 0);

  await backend.truncate(0);
  // Header section except the identifier: zeros, two headers, two region tables.
  await backend.write(new Uint8Array(HEADER_SECTION_SIZE - 64 * 1024), 64 * 1024);
  const header = { sequenceNumber: 1n, fileWriteGuid: randomGuid(), dataWriteGuid: randomGuid(), logGuid: ZERO_GUID, logVersion: 0, version: 1, logLength: layout.logLength, logOffset: layout.logOffset };
  await backend.write(encodeHeader(header), HEADER1_OFFSET);
  await backend.write(encodeHeader({ ...header, sequenceNumber: 2n }), HEADER2_OFFSET);
  const regionTable = encodeLayoutRegionTable(layout);
  await backend.write(regionTable, REGION_TABLE1_OFFSET);
  await backend.write(regionTable, REGION_TABLE2_OFFSET);

  await backend.write(new Uint8Array(layout.logLength), layout.logOffset);
  await backend.write(encodeMetadataRegion(p, virtualDiskId, layout.metadataLength, locator), layout.metadataOffset);

  // BAT, a MiB at a time: fixed images point every payload entry at consecutive blocks.
  for (let start = 0; start < layout.batLength; start += MiB) {
    const chunk = new Uint8Array(Math.min(MiB, layout.batLength - start));
    if (p.fixed) {
      for (let index = start / 8; index < (start + chunk.length) / 8; index++) {
        if (isSectorBitmapEntryIndex(index, geometry.chunkRatio)) continue;
        const block = index - Math.floor(index / (geometry.chunkRatio + 1));
        if (block >= geometry.payloadBlocks) break;
        encodeBatEntry(chunk, index - start / 8, PAYLOAD_BLOCK_FULLY_PRESENT, layout.dataOffset + block * p.blockSize);
      }
    }
    await backend.write(chunk, layout.batOffset + start);
  }

  // Fixed payload: zeros, fully allocated (fallocate where the backend can, else written), unless
  // sparse was asked for. Pieces are larger when no bytes need writing.
  if (p.fixed) {
    const total = fileEnd - layout.dataOffset;
    if (options.sparse) {
      await backend.truncate(fileEnd);
    } else {
      const piece = backend.writeZeros ? 256 * MiB : 8 * MiB;
      for (let done = 0; done < total; done += piece) {
        options.signal?.throwIfAborted();
        const n = Math.min(piece, total - done);
        await writeZeros(backend, layout.dataOffset + done, n);
        options.onProgress?.(done + n, total);
      }
    }
  } else if ((await backend.size()) < fileEnd) {
    await backend.truncate(fileEnd);
  }
  await backend.flush();
  await backend.write(encodeFileIdentifier({ creator: options.creator ?? 'vhdx' }), 0);
  await backend.flush();
  return layout;
}
