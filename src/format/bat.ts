/**
 * BAT entries and geometry (format reference §7). An entry is a u64: state in bits 0-2, reserved bits
 * 3-19, FileOffsetMB in bits 20-63. Decoded without bigint: this is the hot path of every read.
 */
import { MiB, roundUp } from './bytes.js';
import { SECTORS_PER_BITMAP_BLOCK } from './constants.js';

export const BAT_ENTRY_SIZE = 8;

/** Payload block states (§7.2). */
export const PAYLOAD_BLOCK_NOT_PRESENT = 0;
export const PAYLOAD_BLOCK_UNDEFINED = 1;
export const PAYLOAD_BLOCK_ZERO = 2;
export const PAYLOAD_BLOCK_UNMAPPED = 3;
/** v0.95 draft value of UNMAPPED; read as UNMAPPED, never written (§12). */
export const PAYLOAD_BLOCK_UNMAPPED_V095 = 5;
export const PAYLOAD_BLOCK_FULLY_PRESENT = 6;
export const PAYLOAD_BLOCK_PARTIALLY_PRESENT = 7;

/** Sector bitmap block states (§7.3). */
export const SB_BLOCK_NOT_PRESENT = 0;
export const SB_BLOCK_PRESENT = 6;

export const PAYLOAD_STATE_NAMES: Record<number, string> = {
  0: 'not-present',
  1: 'undefined',
  2: 'zero',
  3: 'unmapped',
  4: 'reserved(4)',
  5: 'unmapped',
  6: 'fully-present',
  7: 'partially-present',
};

export interface BatEntry {
  state: number;
  /** Byte offset of the block in the file (FileOffsetMB x 1 MiB). */
  fileOffset: number;
  /** Bits 3-19, which must be zero. */
  reserved: number;
}

export function decodeBatEntry(bytes: Uint8Array, index: number): BatEntry {
  const at = index * BAT_ENTRY_SIZE;
  const lo = (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
  const hi = (bytes[at + 4]! | (bytes[at + 5]! << 8) | (bytes[at + 6]! << 16) | (bytes[at + 7]! << 24)) >>> 0;
  return { state: lo & 7, fileOffset: (hi * 4096 + (lo >>> 20)) * MiB, reserved: (lo >>> 3) & 0x1ffff };
}

export function encodeBatEntry(bytes: Uint8Array, index: number, state: number, fileOffset: number): void {
  if (fileOffset % MiB !== 0 || fileOffset < 0 || fileOffset >= 2 ** 64) throw new RangeError(`bad block offset ${fileOffset}`);
  const mb = fileOffset / MiB;
  const lo = ((mb % 4096) * 2 ** 20 + (state & 7)) >>> 0;
  const hi = Math.floor(mb / 4096) >>> 0;
  const at = index * BAT_ENTRY_SIZE;
  bytes[at] = lo & 0xff;
  bytes[at + 1] = (lo >>> 8) & 0xff;
  bytes[at + 2] = (lo >>> 16) & 0xff;
  bytes[at + 3] = lo >>> 24;
  bytes[at + 4] = hi & 0xff;
  bytes[at + 5] = (hi >>> 8) & 0xff;
  bytes[at + 6] = (hi >>> 16) & 0xff;
  bytes[at + 7] = hi >>> 24;
}

/** Everything derived from block size, sector size and virtual size (§7.4, §7.5). */
export interface BatGeometry {
  blockSize: number;
  logicalSectorSize: number;
  virtualDiskSize: number;
  /** Payload blocks per sector-bitmap block. */
  chunkRatio: number;
  /** PB = ceil(VirtualDiskSize / BlockSize). */
  payloadBlocks: number;
  /** SB = ceil(PB / ChunkRatio). */
  sectorBitmapBlocks: number;
  /** Entries a reader requires: dynamic/fixed end at the last payload entry, differencing at the last SB entry. */
  requiredEntries: number;
  /** Bytes a writer reserves for the BAT region: roundUp(8 x SB x (ChunkRatio + 1), 1 MiB). */
  regionSize: number;
}

export function batGeometry(virtualDiskSize: number, blockSize: number, logicalSectorSize: number, hasParent: boolean): BatGeometry {
  const chunkRatio = (SECTORS_PER_BITMAP_BLOCK * logicalSectorSize) / blockSize;
  const payloadBlocks = Math.ceil(virtualDiskSize / blockSize);
  const sectorBitmapBlocks = Math.ceil(payloadBlocks / chunkRatio);
  const requiredEntries = hasParent
    ? sectorBitmapBlocks * (chunkRatio + 1)
    : payloadBlocks + Math.floor((payloadBlocks - 1) / chunkRatio);
  const regionSize = roundUp(BAT_ENTRY_SIZE * sectorBitmapBlocks * (chunkRatio + 1), MiB);
  return { blockSize, logicalSectorSize, virtualDiskSize, chunkRatio, payloadBlocks, sectorBitmapBlocks, requiredEntries, regionSize };
}

/** BAT index of payload block `block`: b + floor(b / ChunkRatio). */
export function payloadEntryIndex(block: number, chunkRatio: number): number {
  return block + Math.floor(block / chunkRatio);
}

/** BAT index of chunk `chunk`'s sector-bitmap entry. */
export function sectorBitmapEntryIndex(chunk: number, chunkRatio: number): number {
  return chunk * (chunkRatio + 1) + chunkRatio;
}

export function isSectorBitmapEntryIndex(index: number, chunkRatio: number): boolean {
  return (index + 1) % (chunkRatio + 1) === 0;
}
