/** The in-memory BAT: raw entry bytes plus the geometry that maps payload blocks to entries (§7). */
import { MiB } from '../format/bytes.js';
import {
  BAT_ENTRY_SIZE,
  PAYLOAD_BLOCK_FULLY_PRESENT,
  PAYLOAD_BLOCK_PARTIALLY_PRESENT,
  SB_BLOCK_NOT_PRESENT,
  SB_BLOCK_PRESENT,
  encodeBatEntry,
  payloadEntryIndex,
  sectorBitmapEntryIndex,
  type BatGeometry,
} from '../format/bat.js';
import { SECTOR_BITMAP_BLOCK_SIZE } from '../format/constants.js';
import { VhdxError } from '../format/errors.js';

export interface Range {
  start: number;
  end: number;
  what: string;
}

export class BatTable {
  constructor(
    readonly geometry: BatGeometry,
    /** Entry bytes, 8 per entry, at least `geometry.requiredEntries` entries. */
    readonly bytes: Uint8Array,
  ) {}

  private lo(index: number): number {
    const b = this.bytes;
    const at = index * BAT_ENTRY_SIZE;
    return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
  }

  private hi(index: number): number {
    const b = this.bytes;
    const at = index * BAT_ENTRY_SIZE + 4;
    return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
  }

  entryState(index: number): number {
    return this.lo(index) & 7;
  }

  entryOffset(index: number): number {
    return (this.hi(index) * 4096 + (this.lo(index) >>> 20)) * MiB;
  }

  entryReserved(index: number): number {
    return (this.lo(index) >>> 3) & 0x1ffff;
  }

  blockState(block: number): number {
    return this.entryState(payloadEntryIndex(block, this.geometry.chunkRatio));
  }

  blockOffset(block: number): number {
    return this.entryOffset(payloadEntryIndex(block, this.geometry.chunkRatio));
  }

  setBlock(block: number, state: number, fileOffset: number): number {
    const index = payloadEntryIndex(block, this.geometry.chunkRatio);
    encodeBatEntry(this.bytes, index, state, fileOffset);
    return index;
  }

  sectorBitmapState(chunk: number): number {
    return this.entryState(sectorBitmapEntryIndex(chunk, this.geometry.chunkRatio));
  }

  sectorBitmapOffset(chunk: number): number {
    return this.entryOffset(sectorBitmapEntryIndex(chunk, this.geometry.chunkRatio));
  }

  /**
   * Checks every entry (§7.2, §7.3, §9 rule 12): legal state for the disk type, zero reserved bits,
   * present blocks after the header section, inside the file and overlapping neither each other nor
   * `structures`. Returns warnings for tolerated oddities and every byte range in use (structures and
   * blocks); throws BAD_BAT or OVERLAP otherwise.
   */
  validate(options: { hasParent: boolean; fileSize: number; structures: Range[]; file: string; batOffset: number }): { warnings: string[]; used: Range[] } {
    const { chunkRatio, payloadBlocks, sectorBitmapBlocks, blockSize, virtualDiskSize } = this.geometry;
    const warnings: string[] = [];
    const used: Range[] = [...options.structures];
    const fail = (message: string, index: number): never => {
      throw new VhdxError('BAD_BAT', message, { file: options.file, offset: options.batOffset + index * BAT_ENTRY_SIZE });
    };
    for (let block = 0; block < payloadBlocks; block++) {
      const index = payloadEntryIndex(block, chunkRatio);
      const state = this.entryState(index);
      if (state === 4) fail(`BAT entry ${index} (block ${block}) has reserved state 4`, index);
      if (state === PAYLOAD_BLOCK_PARTIALLY_PRESENT && !options.hasParent) {
        fail(`BAT entry ${index} (block ${block}) is partially present in a disk without a parent`, index);
      }
      if (state !== PAYLOAD_BLOCK_FULLY_PRESENT && state !== PAYLOAD_BLOCK_PARTIALLY_PRESENT) continue;
      const offset = this.entryOffset(index);
      if (offset < MiB) fail(`BAT entry ${index} (block ${block}) points into the header section (offset ${offset})`, index);
      // QEMU's fixed images may end inside the last block: only the part that holds virtual data must exist (§11 pitfall 3).
      const needed = Math.min(blockSize, virtualDiskSize - block * blockSize);
      if (offset + needed > options.fileSize) {
        fail(`BAT entry ${index} (block ${block}) points past the end of the file (offset ${offset}, file size ${options.fileSize})`, index);
      }
      if (offset + blockSize > options.fileSize) warnings.push(`block ${block} at file offset ${offset} is cut short by the end of the file; its missing tail reads as zeros`);
      used.push({ start: offset, end: offset + blockSize, what: `block ${block}` });
    }
    for (let chunk = 0; chunk < sectorBitmapBlocks; chunk++) {
      const index = sectorBitmapEntryIndex(chunk, chunkRatio);
      if (index * BAT_ENTRY_SIZE >= this.bytes.length) break; // dynamic/fixed BATs may end before the last SB slot
      const state = this.entryState(index);
      if (state === SB_BLOCK_NOT_PRESENT) continue;
      if (state !== SB_BLOCK_PRESENT) fail(`sector bitmap entry ${index} has illegal state ${state}`, index);
      if (!options.hasParent) {
        // Seen in the wild by VirtualBox; harmless because nothing reads it in a disk without a parent.
        warnings.push(`sector bitmap entry ${index} is marked present in a disk without a parent; ignored`);
        continue;
      }
      const offset = this.entryOffset(index);
      if (offset < MiB || offset + SECTOR_BITMAP_BLOCK_SIZE > options.fileSize) {
        fail(`sector bitmap entry ${index} points outside the file (offset ${offset})`, index);
      }
      used.push({ start: offset, end: offset + SECTOR_BITMAP_BLOCK_SIZE, what: `sector bitmap ${chunk}` });
    }
    const overlap = findOverlap(used);
    if (overlap) {
      throw new VhdxError('OVERLAP', `${overlap[0].what} [${overlap[0].start}, ${overlap[0].end}) overlaps ${overlap[1].what} [${overlap[1].start}, ${overlap[1].end})`, {
        file: options.file,
        offset: overlap[1].start,
      });
    }
    return { warnings, used };
  }
}

/** The first pair of overlapping ranges, by a sort and one sweep. */
export function findOverlap(ranges: Range[]): [Range, Range] | null {
  const sorted = ranges.filter((r) => r.end > r.start).sort((a, b) => a.start - b.start || a.end - b.end);
  let widest: Range | undefined;
  for (const r of sorted) {
    if (widest && r.start < widest.end) return [widest, r];
    if (!widest || r.end > widest.end) widest = r;
  }
  return null;
}
