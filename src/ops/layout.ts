/**
 * The layout this library gives new images (format reference §10): header section, log at 1 MiB,
 * metadata after the log, BAT after the metadata, payload after the BAT; plus the encoders for the
 * metadata region and region table that creation needs. Shared by `create` and the fixture generator.
 */
import { MiB, TiB, roundUp } from '../format/bytes.js';
import { batGeometry, type BatGeometry } from '../format/bat.js';
import {
  MAX_BLOCK_SIZE,
  MAX_VIRTUAL_DISK_SIZE,
  MIN_BLOCK_SIZE,
  REGION_BAT,
  REGION_METADATA,
} from '../format/constants.js';
import { VhdxError } from '../format/errors.js';
import { encodeRegionTable } from '../format/region-table.js';

export interface ImageParameters {
  virtualSize: number;
  blockSize: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
  logLength: number;
  fixed: boolean;
  hasParent?: boolean;
}

export interface Layout {
  geometry: BatGeometry;
  logOffset: number;
  logLength: number;
  metadataOffset: number;
  metadataLength: number;
  batOffset: number;
  batLength: number;
  /** First byte of the payload area. */
  dataOffset: number;
}

const invalid = (message: string): VhdxError => new VhdxError('INVALID_ARGUMENT', message);

/** Checks every creation parameter against the spec's limits (§5.4), with a message naming the value. */
export function validateParameters(p: ImageParameters): void {
  const { blockSize, logicalSectorSize, physicalSectorSize, virtualSize, logLength } = p;
  if (!Number.isSafeInteger(blockSize) || blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw invalid(`block size ${blockSize} must be a power of two from 1 MiB to 256 MiB`);
  }
  if (logicalSectorSize !== 512 && logicalSectorSize !== 4096) throw invalid(`logical sector size ${logicalSectorSize} must be 512 or 4096`);
  if (physicalSectorSize !== 512 && physicalSectorSize !== 4096) throw invalid(`physical sector size ${physicalSectorSize} must be 512 or 4096`);
  if (!Number.isSafeInteger(virtualSize) || virtualSize <= 0) throw invalid(`virtual size ${virtualSize} must be a positive number of bytes`);
  if (virtualSize > MAX_VIRTUAL_DISK_SIZE) throw invalid(`virtual size ${virtualSize} is larger than the 64 TiB maximum (${64 * TiB})`);
  if (virtualSize % logicalSectorSize !== 0) throw invalid(`virtual size ${virtualSize} is not a multiple of the ${logicalSectorSize}-byte logical sector`);
  if (!Number.isSafeInteger(logLength) || logLength < MiB || logLength % MiB !== 0 || logLength > 4095 * MiB) {
    throw invalid(`log size ${logLength} must be a whole number of MiB from 1 MiB to 4095 MiB`);
  }
}

export function planLayout(p: ImageParameters): Layout {
  const geometry = batGeometry(p.virtualSize, p.blockSize, p.logicalSectorSize, p.hasParent ?? false);
  const logOffset = MiB;
  const metadataOffset = logOffset + p.logLength;
  const metadataLength = MiB;
  const batOffset = metadataOffset + metadataLength;
  const batLength = geometry.regionSize;
  return { geometry, logOffset, logLength: p.logLength, metadataOffset, metadataLength, batOffset, batLength, dataOffset: roundUp(batOffset + batLength, MiB) };
}

export function encodeLayoutRegionTable(layout: Layout): Uint8Array {
  return encodeRegionTable({
    entries: [
      { guid: REGION_BAT, fileOffset: layout.batOffset, length: layout.batLength, required: true },
      { guid: REGION_METADATA, fileOffset: layout.metadataOffset, length: layout.metadataLength, required: true },
    ],
  });
}

export { encodeMetadataRegion } from '../format/metadata-region.js';
