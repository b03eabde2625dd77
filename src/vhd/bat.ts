/**
 * The VHD (v1) Block Allocation Table and sector bitmaps. The BAT is an array of big-endian u32 sector
 * numbers, one per block; 0xFFFFFFFF means the block is not allocated (it reads as zeros, or from the
 * parent of a differencing disk). An allocated block starts with its sector bitmap (one bit per
 * 512-byte sector, most significant bit first, padded to a whole sector), followed by the block's data.
 * Virtual Hard Disk Image Format Specification, "Block Allocation Table and Data Blocks".
 */
import { VhdxError } from '../format/errors.js';

export const VHD_SECTOR_SIZE = 512;
export const VHD_BAT_ENTRY_SIZE = 4;
/** A BAT entry that maps no block. */
export const VHD_UNALLOCATED = 0xffff_ffff;

/** Bytes of the BAT region for `entries` entries: the table is padded to a whole sector. */
export function vhdBatBytes(entries: number): number {
  return Math.ceil((entries * VHD_BAT_ENTRY_SIZE) / VHD_SECTOR_SIZE) * VHD_SECTOR_SIZE;
}

/** Bytes of the sector bitmap in front of each block: a bit per sector, padded to a whole sector. */
export function vhdBitmapBytes(blockSize: number): number {
  return Math.ceil(blockSize / VHD_SECTOR_SIZE / 8 / VHD_SECTOR_SIZE) * VHD_SECTOR_SIZE;
}

/** The first `entries` entries of a BAT as sector numbers. */
export function decodeVhdBat(bytes: Uint8Array, entries: number, file?: string): Uint32Array {
  if (bytes.length < entries * VHD_BAT_ENTRY_SIZE) {
    throw new VhdxError('BAD_VHD', `VHD BAT needs ${entries * VHD_BAT_ENTRY_SIZE} bytes for ${entries} entries, got ${bytes.length}`, { file });
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Uint32Array(entries);
  for (let i = 0; i < entries; i++) out[i] = dv.getUint32(i * VHD_BAT_ENTRY_SIZE);
  return out;
}

/** The BAT region for `table`: entries big-endian, the padding as unallocated entries (as writers leave it). */
export function encodeVhdBat(table: ArrayLike<number>): Uint8Array {
  const out = new Uint8Array(vhdBatBytes(table.length)).fill(0xff);
  const dv = new DataView(out.buffer);
  for (let i = 0; i < table.length; i++) dv.setUint32(i * VHD_BAT_ENTRY_SIZE, table[i]!);
  return out;
}

/** True when sector `sector` of the block is marked present in its bitmap (bit 7 of byte 0 is sector 0). */
export function vhdSectorPresent(bitmap: Uint8Array, sector: number): boolean {
  return ((bitmap[sector >>> 3]! >>> (7 - (sector & 7))) & 1) === 1;
}

/** Marks sectors [first, first + count) present. */
export function vhdMarkSectors(bitmap: Uint8Array, first: number, count: number): void {
  for (let s = first; s < first + count; s++) bitmap[s >>> 3]! |= 0x80 >>> (s & 7);
}

/**
 * Runs of equal presence among sectors [first, first + count) of a block: `[present, sectors]` pairs in
 * order. Whole bytes of equal bits are skipped at once.
 */
export function vhdSectorRuns(bitmap: Uint8Array, first: number, count: number): [boolean, number][] {
  const runs: [boolean, number][] = [];
  const end = first + count;
  let s = first;
  while (s < end) {
    const present = vhdSectorPresent(bitmap, s);
    const start = s;
    const fill = present ? 0xff : 0x00;
    s++;
    while (s < end) {
      if ((s & 7) === 0 && s + 8 <= end && bitmap[s >>> 3] === fill) {
        s += 8;
        continue;
      }
      if (vhdSectorPresent(bitmap, s) !== present) break;
      s++;
    }
    runs.push([present, s - start]);
  }
  return runs;
}
