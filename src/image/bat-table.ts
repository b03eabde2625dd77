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
  /** For payload blocks and sector bitmap blocks: which one, and its BAT entry index. */
  block?: number;
  chunk?: number;
  index?: number;
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
   * blocks); throws BAD_BAT or OVERLAP at the first problem.
   */
  validate(options: BatCheckOptions): { warnings: string[]; used: Range[] } {
    const inspected = this.inspect(options);
    const first = inspected.problems[0];
    if (first) throw new VhdxError(first.code, first.message, { file: options.file, offset: first.entryOffset });
    return inspected;
  }

  /**
   * Like `validate`, but every problem is collected instead of thrown (check and repair need them all).
   * An entry with a problem is left out of `used`; where two blocks share space, the one listed first
   * in the sweep (lower file offset, then lower block number) keeps it and the other is the problem.
   */
  inspect(options: BatCheckOptions): { warnings: string[]; used: Range[]; problems: BatProblem[] } {
    const { chunkRatio, payloadBlocks, sectorBitmapBlocks, blockSize, virtualDiskSize } = this.geometry;
    const warnings: string[] = [];
    const problems: BatProblem[] = [];
    const blocks: Range[] = [];
    const entryOffset = (index: number): number => options.batOffset + index * BAT_ENTRY_SIZE;
    const problem = (kind: BatProblemKind, message: string, index: number, extra: { block?: number; chunk?: number; sharedWith?: number } = {}): void => {
      problems.push({ kind, code: kind === 'overlaps-block' || kind === 'overlaps-structure' ? 'OVERLAP' : 'BAD_BAT', message, entryIndex: index, entryOffset: entryOffset(index), ...extra });
    };
    for (let block = 0; block < payloadBlocks; block++) {
      const index = payloadEntryIndex(block, chunkRatio);
      const state = this.entryState(index);
      if (state === 4) {
        problem('illegal-state', `BAT entry ${index} (block ${block}) has reserved state 4`, index, { block });
        continue;
      }
      if (state === PAYLOAD_BLOCK_PARTIALLY_PRESENT && !options.hasParent) {
        problem('illegal-state', `BAT entry ${index} (block ${block}) is partially present in a disk without a parent`, index, { block });
        continue;
      }
      if (state === PAYLOAD_BLOCK_PARTIALLY_PRESENT && this.sectorBitmapState(Math.floor(block / chunkRatio)) !== SB_BLOCK_PRESENT) {
        problem('illegal-state', `BAT entry ${index} (block ${block}) is partially present but its chunk's sector bitmap is not`, index, { block });
        continue;
      }
      if (state !== PAYLOAD_BLOCK_FULLY_PRESENT && state !== PAYLOAD_BLOCK_PARTIALLY_PRESENT) continue;
      const offset = this.entryOffset(index);
      if (offset < MiB) {
        problem('in-header-section', `BAT entry ${index} (block ${block}) points into the header section (offset ${offset})`, index, { block });
        continue;
      }
      // QEMU's fixed images may end inside the last block: only the part that holds virtual data must exist (§11 pitfall 3).
      const needed = Math.min(blockSize, virtualDiskSize - block * blockSize);
      if (offset + needed > options.fileSize) {
        const kind = offset < options.fileSize ? 'cut-short' : 'past-eof';
        problem(kind, `BAT entry ${index} (block ${block}) points past the end of the file (offset ${offset}, file size ${options.fileSize})`, index, { block });
        continue;
      }
      if (offset + blockSize > options.fileSize) warnings.push(`block ${block} at file offset ${offset} is cut short by the end of the file; its missing tail reads as zeros`);
      blocks.push({ start: offset, end: offset + blockSize, what: `block ${block}`, block, index });
    }
    for (let chunk = 0; chunk < sectorBitmapBlocks; chunk++) {
      const index = sectorBitmapEntryIndex(chunk, chunkRatio);
      if (index * BAT_ENTRY_SIZE >= this.bytes.length) break; // dynamic/fixed BATs may end before the last SB slot
      const state = this.entryState(index);
      if (state === SB_BLOCK_NOT_PRESENT) continue;
      if (state !== SB_BLOCK_PRESENT) {
        problem('bad-sector-bitmap', `sector bitmap entry ${index} has illegal state ${state}`, index, { chunk });
        continue;
      }
      if (!options.hasParent) {
        // Seen in the wild by VirtualBox; harmless because nothing reads it in a disk without a parent.
        warnings.push(`sector bitmap entry ${index} is marked present in a disk without a parent; ignored`);
        continue;
      }
      const offset = this.entryOffset(index);
      if (offset < MiB || offset + SECTOR_BITMAP_BLOCK_SIZE > options.fileSize) {
        problem('bad-sector-bitmap', `sector bitmap entry ${index} points outside the file (offset ${offset})`, index, { chunk });
        continue;
      }
      blocks.push({ start: offset, end: offset + SECTOR_BITMAP_BLOCK_SIZE, what: `sector bitmap ${chunk}`, chunk, index });
    }
    // One sweep over the blocks in file order: a block that overlaps a structure (there are few), or
    // that starts before the end of the furthest-reaching block kept so far.
    blocks.sort((a, b) => a.start - b.start || (a.block ?? a.chunk ?? 0) - (b.block ?? b.chunk ?? 0));
    const used: Range[] = [...options.structures];
    let widest: Range | undefined;
    for (const r of blocks) {
      const structure = options.structures.find((s) => s.start < r.end && r.start < s.end);
      if (structure) {
        problem('overlaps-structure', `${r.what} [${r.start}, ${r.end}) overlaps the ${structure.what} [${structure.start}, ${structure.end})`, r.index!, pick(r));
      } else if (widest && r.start < widest.end) {
        problem('overlaps-block', `${r.what} [${r.start}, ${r.end}) overlaps ${widest.what} [${widest.start}, ${widest.end})`, r.index!, { ...pick(r), sharedWith: widest.block ?? widest.chunk! });
      } else {
        used.push(r);
        widest = r;
      }
    }
    return { warnings, used, problems };
  }
}

export interface BatCheckOptions {
  hasParent: boolean;
  fileSize: number;
  structures: Range[];
  file: string;
  batOffset: number;
}

export type BatProblemKind =
  | 'illegal-state' // reserved state, or partially present without a parent
  | 'in-header-section' // a present block inside the first MiB
  | 'past-eof' // a present block that starts at or past the end of the file
  | 'cut-short' // a present block that starts inside the file but whose data runs past its end
  | 'overlaps-structure' // a present block sharing bytes with the headers, log, BAT or metadata
  | 'overlaps-block' // a present block sharing bytes with another block
  | 'bad-sector-bitmap'; // a sector bitmap entry with an illegal state or offset

export interface BatProblem {
  kind: BatProblemKind;
  code: 'BAD_BAT' | 'OVERLAP';
  message: string;
  /** Index of the entry in the BAT, and the file offset of its 8 bytes. */
  entryIndex: number;
  entryOffset: number;
  /** The payload block (or the sector bitmap chunk) the entry describes. */
  block?: number;
  chunk?: number;
  /** For 'overlaps-block': the block (or chunk) that keeps the shared space. */
  sharedWith?: number;
}

function pick(r: Range): { block?: number; chunk?: number } {
  return r.block !== undefined ? { block: r.block } : r.chunk !== undefined ? { chunk: r.chunk } : {};
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
