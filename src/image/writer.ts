/**
 * The write path of an open image (format reference §7.8, §8.8, §9). The ordering rules, each enforced
 * here and nowhere else:
 * 1. Before the first change of a session, one header update installs a fresh FileWriteGuid and
 *    DataWriteGuid (§3.4); nothing is written to the file before it.
 * 2. A new block's payload (data plus explicit zeros for the rest of the block) is written before its
 *    BAT entry changes in memory, and `flush` syncs the file before logging that entry: a BAT entry is
 *    never durable before the data it points to.
 * 3. BAT entries change only in memory; `flush` carries every dirty BAT sector through the log in one
 *    entry (`LogWriter`). Writes into present blocks go in place and need no log.
 * 4. Space a BAT change frees is reused only after that change is durable (`BlockAllocator.release`).
 */
import { MiB } from '../format/bytes.js';
import {
  BAT_ENTRY_SIZE,
  PAYLOAD_BLOCK_FULLY_PRESENT,
  PAYLOAD_BLOCK_PARTIALLY_PRESENT,
  PAYLOAD_BLOCK_UNMAPPED,
  PAYLOAD_BLOCK_ZERO,
  encodeBatEntry,
  isSectorBitmapEntryIndex,
  PAYLOAD_BLOCK_NOT_PRESENT,
  payloadEntryIndex,
  SB_BLOCK_PRESENT,
  sectorBitmapEntryIndex,
} from '../format/bat.js';
import { LOG_SECTOR_SIZE } from '../format/constants.js';
import { VhdxError } from '../format/errors.js';
import { randomGuid, type Guid } from '../format/guid.js';
import { readFully, writeZeros, type Backend } from '../io/backend.js';
import { BlockAllocator } from './allocator.js';
import { LogWriter } from './log-writer.js';
import type { OpenedLayout } from './open.js';

const ZERO_CHUNK = new Uint8Array(4 * MiB);

export class ImageWriter {
  private readonly allocator: BlockAllocator;
  private readonly log: LogWriter;
  private readonly dirtyBatSectors = new Set<number>();
  /** Differencing disks: dirty 4 KiB sectors of sector bitmap blocks, as `chunk:sector` keys. */
  private readonly dirtyBitmapSectors = new Map<string, { chunk: number; sector: number }>();
  private sessionGuidsInstalled: boolean;
  private dataSinceSync = false;
  private fileSize: number;

  constructor(
    private readonly backend: Backend,
    private readonly layout: OpenedLayout,
    private readonly options: { sparse?: boolean; readVirtual?: (target: Uint8Array, offset: number) => Promise<void> } = {},
  ) {
    this.allocator = new BlockAllocator(layout.metadata.blockSize, layout.used);
    this.log = new LogWriter(backend, layout.headerWriter, layout.header.logOffset, layout.header.logLength);
    this.sessionGuidsInstalled = false;
    this.fileSize = layout.fileSize;
  }

  get size(): number {
    return this.fileSize;
  }

  get logEntriesWritten(): number {
    return this.log.entriesWritten;
  }

  private get fixed(): boolean {
    return this.layout.metadata.leaveBlockAllocated && !this.layout.metadata.hasParent;
  }

  /** Rule 1: one header update with fresh FileWriteGuid and DataWriteGuid before the first change. */
  private async beginChange(): Promise<void> {
    if (this.sessionGuidsInstalled) return;
    await this.layout.headerWriter.update({ fileWriteGuid: randomGuid(), dataWriteGuid: this.nextDataWriteGuid ?? randomGuid() });
    this.sessionGuidsInstalled = true;
  }

  private nextDataWriteGuid: Guid | null = null;

  /**
   * The DataWriteGuid this session installs at its first change, instead of a random one: a merge
   * records it in the child's parent_linkage2 first, so the child accepts the parent at every instant.
   */
  presetDataWriteGuid(guid: Guid): void {
    if (this.sessionGuidsInstalled) throw new VhdxError('INVALID_ARGUMENT', 'this session already changed the image: its DataWriteGuid is set', { file: this.backend.name });
    this.nextDataWriteGuid = guid;
  }

  /**
   * Replaces the metadata region's bytes (e.g. a new parent locator): the 4 KiB sectors that differ
   * are committed through the log, after any pending data and BAT changes.
   */
  async rewriteMetadata(region: Uint8Array, current: Uint8Array): Promise<void> {
    await this.beginChange();
    await this.flush();
    const { metadataRegion } = this.layout;
    const sectors: { fileOffset: number; data: Uint8Array }[] = [];
    for (let at = 0; at < region.length; at += LOG_SECTOR_SIZE) {
      const next = region.subarray(at, at + LOG_SECTOR_SIZE);
      const old = current.subarray(at, at + LOG_SECTOR_SIZE);
      if (next.some((b, i) => b !== old[i])) sectors.push({ fileOffset: metadataRegion.fileOffset + at, data: next.slice() });
    }
    await this.log.commit(sectors, this.fileSize, Math.max(this.fileSize, this.allocator.allocatedEnd));
  }

  private markBatDirty(block: number): void {
    this.markEntryDirty(payloadEntryIndex(block, this.layout.geometry.chunkRatio));
  }

  private markEntryDirty(index: number): void {
    this.dirtyBatSectors.add(Math.floor((index * BAT_ENTRY_SIZE) / LOG_SECTOR_SIZE));
  }

  private async writeAt(data: Uint8Array, fileOffset: number): Promise<void> {
    await this.backend.write(data, fileOffset);
    this.fileSize = Math.max(this.fileSize, fileOffset + data.length);
    this.dataSinceSync = true;
  }

  /** Zeros with their space allocated: the backend's fast path (fallocate) where it has one. */
  private async writeZerosAt(fileOffset: number, length: number): Promise<void> {
    if (length <= 0) return;
    await writeZeros(this.backend, fileOffset, length);
    this.fileSize = Math.max(this.fileSize, fileOffset + length);
    this.dataSinceSync = true;
  }

  /**
   * Writes a fresh block's content: zeros, `data` at `inBlock`, zeros. In one write of the whole block
   * when it is small and the backend can only write bytes; otherwise zeros around the data, which a
   * backend with a zero fast path allocates without writing them.
   */
  private async writeFreshBlock(offset: number, blockSize: number, inBlock: number, data: Uint8Array): Promise<void> {
    if (blockSize <= ZERO_CHUNK.length && !this.backend.writeZeros) {
      const whole = new Uint8Array(blockSize);
      whole.set(data, inBlock);
      await this.writeAt(whole, offset);
      return;
    }
    await this.writeZerosAt(offset, inBlock);
    await this.writeAt(data, offset + inBlock);
    await this.writeZerosAt(offset + inBlock + data.length, blockSize - inBlock - data.length);
  }

  /** Rule 2: a fresh block holding `data` at `inBlock` and zeros elsewhere, written before the BAT points at it. */
  private async allocateBlock(block: number, inBlock: number, data: Uint8Array): Promise<void> {
    const { blockSize } = this.layout.metadata;
    const offset = this.allocator.allocate();
    try {
      if (this.options.sparse && offset >= this.fileSize) {
        // Past the end of the file: extending it makes the rest of the block read as zeros (a hole).
        await this.writeAt(data, offset + inBlock);
        if (this.fileSize < offset + blockSize) {
          await this.backend.truncate(offset + blockSize);
          this.fileSize = offset + blockSize;
        }
      } else {
        await this.writeFreshBlock(offset, blockSize, inBlock, data);
      }
    } catch (error) {
      this.allocator.unallocate(offset);
      throw error;
    }
    this.layout.bat.setBlock(block, PAYLOAD_BLOCK_FULLY_PRESENT, offset);
    this.markBatDirty(block);
  }

  private get differencing(): boolean {
    return this.layout.metadata.hasParent;
  }

  /**
   * Copy-on-write at sector granularity (§7.8, differencing): the write is widened to whole logical
   * sectors (edges read through the image, so from the parent where the child has nothing), written
   * into the block (allocated on first use, zeros elsewhere, PARTIALLY_PRESENT), and the sectors'
   * bits set in the chunk's sector bitmap (allocated on first use). Bitmap and BAT change in memory;
   * `flush` logs them after syncing the data, so a bit never becomes durable before its sector.
   */
  private async writeSectors(block: number, inBlock: number, data: Uint8Array): Promise<void> {
    const { blockSize, logicalSectorSize: sector } = this.layout.metadata;
    const { bat } = this.layout;
    const start = Math.floor(inBlock / sector) * sector;
    const end = Math.ceil((inBlock + data.length) / sector) * sector;
    let buffer = data;
    if (start !== inBlock || end !== inBlock + data.length) {
      if (!this.options.readVirtual) throw new VhdxError('UNSUPPORTED', 'unaligned copy-on-write needs reads through the image', { file: this.backend.name });
      buffer = new Uint8Array(end - start);
      const base = block * blockSize;
      if (start !== inBlock) await this.options.readVirtual(buffer.subarray(0, sector), base + start);
      if (end !== inBlock + data.length && (end - sector > start || start === inBlock)) await this.options.readVirtual(buffer.subarray(end - start - sector), base + end - sector);
      buffer.set(data, inBlock - start);
    }
    const chunk = Math.floor(block / this.layout.geometry.chunkRatio);
    const bitmap = await this.ensureSectorBitmap(chunk);
    const firstBit = (block % this.layout.geometry.chunkRatio) * (blockSize / sector);
    if (bat.blockState(block) === PAYLOAD_BLOCK_NOT_PRESENT) {
      const offset = this.allocator.allocate();
      try {
        await this.writeFreshBlock(offset, blockSize, start, buffer.subarray(0, end - start));
      } catch (error) {
        this.allocator.unallocate(offset);
        throw error;
      }
      // Bits a previous owner of this block left behind must not expose garbage.
      this.setBits(chunk, bitmap, firstBit, blockSize / sector, false);
      bat.setBlock(block, PAYLOAD_BLOCK_PARTIALLY_PRESENT, offset);
      this.markBatDirty(block);
    } else {
      await this.writeAt(buffer, bat.blockOffset(block) + start);
    }
    this.setBits(chunk, bitmap, firstBit + start / sector, (end - start) / sector, true);
  }

  /** The chunk's sector bitmap, allocating a zeroed 1 MiB block (data, then its SB entry) on first use. */
  private async ensureSectorBitmap(chunk: number): Promise<Uint8Array> {
    const existing = this.layout.sectorBitmaps.get(chunk);
    if (existing) return existing;
    const offset = this.allocator.allocate(MiB);
    try {
      await this.writeZerosAt(offset, MiB);
    } catch (error) {
      this.allocator.unallocate(offset, MiB);
      throw error;
    }
    const bitmap = new Uint8Array(MiB);
    this.layout.sectorBitmaps.set(chunk, bitmap);
    const index = sectorBitmapEntryIndex(chunk, this.layout.geometry.chunkRatio);
    encodeBatEntry(this.layout.bat.bytes, index, SB_BLOCK_PRESENT, offset);
    this.markEntryDirty(index);
    return bitmap;
  }

  private setBits(chunk: number, bitmap: Uint8Array, first: number, count: number, value: boolean): void {
    for (let bit = first; bit < first + count; ) {
      if ((bit & 7) === 0 && bit + 8 <= first + count) {
        bitmap[bit >> 3] = value ? 0xff : 0;
        bit += 8;
      } else {
        if (value) bitmap[bit >> 3]! |= 1 << (bit & 7);
        else bitmap[bit >> 3]! &= ~(1 << (bit & 7));
        bit++;
      }
    }
    const firstSector = Math.floor(first / 8 / LOG_SECTOR_SIZE);
    const lastSector = Math.floor((first + count - 1) / 8 / LOG_SECTOR_SIZE);
    for (let sector = firstSector; sector <= lastSector; sector++) this.dirtyBitmapSectors.set(`${chunk}:${sector}`, { chunk, sector });
  }

  /**
   * Fills block `block` from `read` in pieces of `piece.length` bytes (a copy whose pieces stay in the
   * CPU cache between being read and written), writing only when the block holds something:
   *  - a block that is not present is allocated at its first non-zero piece; the zero pieces before
   *    it are written as zeros, every later piece as read, and the rest of the block as zeros, all
   *    before its BAT entry changes (rule 2);
   *  - a fully present block gets every piece written in place, zeros included, unless
   *    `presentIsZero` says it already reads as zeros (a freshly created fixed image), when zero
   *    pieces are skipped.
   * Differencing disks and partially present blocks go through `write`, piece by piece.
   * Returns whether anything was written.
   */
  async copyBlockFrom(
    block: number,
    length: number,
    read: (target: Uint8Array, inBlock: number) => Promise<void>,
    piece: Uint8Array,
    isZero: (data: Uint8Array) => boolean,
    presentIsZero: boolean,
  ): Promise<boolean> {
    const { bat } = this.layout;
    const { blockSize } = this.layout.metadata;
    const state = bat.blockState(block);
    const base = block * blockSize;
    if (this.differencing || state === PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
      let wrote = false;
      for (let at = 0; at < length; at += piece.length) {
        const data = piece.subarray(0, Math.min(piece.length, length - at));
        await read(data, at);
        if (!isZero(data) || state !== PAYLOAD_BLOCK_NOT_PRESENT) {
          await this.write(base + at, data);
          wrote = true;
        }
      }
      return wrote;
    }
    let fileOffset = state === PAYLOAD_BLOCK_FULLY_PRESENT ? bat.blockOffset(block) : null;
    const fresh = fileOffset === null;
    let zerosBefore = 0;
    try {
      for (let at = 0; at < length; at += piece.length) {
        const data = piece.subarray(0, Math.min(piece.length, length - at));
        await read(data, at);
        const zero = isZero(data);
        if (fileOffset === null) {
          if (zero) {
            zerosBefore += data.length;
            continue;
          }
          await this.beginChange();
          fileOffset = this.allocator.allocate();
          await this.writeZerosAt(fileOffset, zerosBefore);
        } else if (zero && presentIsZero) {
          continue;
        }
        await this.beginChange();
        await this.writeAt(data, fileOffset + at);
      }
    } catch (error) {
      if (fresh && fileOffset !== null) this.allocator.unallocate(fileOffset);
      throw error;
    }
    if (!fresh || fileOffset === null) return !fresh;
    await this.writeZerosAt(fileOffset + length, blockSize - length);
    bat.setBlock(block, PAYLOAD_BLOCK_FULLY_PRESENT, fileOffset);
    this.markBatDirty(block);
    return true;
  }

  /** Splits [offset, offset + length) into per-block pieces. */
  private *pieces(offset: number, length: number): Generator<{ block: number; inBlock: number; start: number; length: number }> {
    const { blockSize } = this.layout.metadata;
    for (let position = offset; position < offset + length; ) {
      const block = Math.floor(position / blockSize);
      const inBlock = position - block * blockSize;
      const n = Math.min(blockSize - inBlock, offset + length - position);
      yield { block, inBlock, start: position - offset, length: n };
      position += n;
    }
  }

  async write(offset: number, data: Uint8Array): Promise<void> {
    if (data.length === 0) return;
    if (!this.sessionGuidsInstalled) await this.beginChange();
    const { bat } = this.layout;
    // Inside one fully present block (every small write of allocated data): in place, as the loop
    // below would do it, without splitting into pieces.
    const { blockSize } = this.layout.metadata;
    const block = Math.floor(offset / blockSize);
    const inBlock = offset - block * blockSize;
    if (inBlock + data.length <= blockSize && bat.blockState(block) === PAYLOAD_BLOCK_FULLY_PRESENT) {
      return this.writeAt(data, bat.blockOffset(block) + inBlock);
    }
    for (const p of this.pieces(offset, data.length)) {
      const piece = data.subarray(p.start, p.start + p.length);
      const state = bat.blockState(p.block);
      if (state === PAYLOAD_BLOCK_FULLY_PRESENT) {
        await this.writeAt(piece, bat.blockOffset(p.block) + p.inBlock);
      } else if (this.differencing && (state === PAYLOAD_BLOCK_PARTIALLY_PRESENT || state === PAYLOAD_BLOCK_NOT_PRESENT)) {
        await this.writeSectors(p.block, p.inBlock, piece);
      } else if (state === PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
        throw new VhdxError('BAD_BAT', `block ${p.block} is partially present in a disk without a parent`, { file: this.backend.name });
      } else {
        await this.allocateBlock(p.block, p.inBlock, piece);
      }
    }
  }

  /**
   * Whole blocks of a dynamic disk go to ZERO (`zeroState`) or UNMAPPED without allocating, their
   * space released; partial pieces of present blocks are zero-filled in place. A fixed disk keeps
   * every block present and gets zeros written in place.
   */
  async zeroRange(offset: number, length: number, wholeBlockState: typeof PAYLOAD_BLOCK_ZERO | typeof PAYLOAD_BLOCK_UNMAPPED): Promise<void> {
    if (length === 0) return;
    await this.beginChange();
    const { bat } = this.layout;
    const { blockSize, virtualDiskSize } = this.layout.metadata;
    if (this.differencing) return this.zeroRangeDifferencing(offset, length);
    for (const p of this.pieces(offset, length)) {
      const state = bat.blockState(p.block);
      const present = state === PAYLOAD_BLOCK_FULLY_PRESENT;
      // The last block may be partial: covering up to the virtual size covers the whole block.
      const whole = p.inBlock === 0 && (p.length === blockSize || p.block * blockSize + p.length === virtualDiskSize);
      if (present && (this.fixed || !whole)) {
        await this.writeZerosAt(bat.blockOffset(p.block) + p.inBlock, p.length);
      } else if (whole && !this.fixed && (present || state !== wholeBlockState)) {
        if (present) this.allocator.release(bat.blockOffset(p.block));
        bat.setBlock(p.block, wholeBlockState, 0);
        this.markBatDirty(p.block);
      }
      // Anything else already reads as zeros.
    }
  }

  /**
   * Differencing (§7.8): zeros must hide the parent. Parts of a fully present block are zeroed in
   * place; parts of a block that is not or partially present are written as zero sectors
   * (copy-on-write); ZERO/UNMAPPED/UNDEFINED blocks already read zeros. Whole blocks are zeroed the
   * same way rather than set to ZERO: the format says a ZERO block hides the parent, but libvhdi reads
   * a differencing disk's ZERO blocks from the parent, so an explicit zero block is the form every
   * reader agrees on (it costs the block's space).
   */
  private async zeroRangeDifferencing(offset: number, length: number): Promise<void> {
    const { bat } = this.layout;
    for (const p of this.pieces(offset, length)) {
      const state = bat.blockState(p.block);
      if (state === PAYLOAD_BLOCK_FULLY_PRESENT) {
        await this.writeZerosAt(bat.blockOffset(p.block) + p.inBlock, p.length);
      } else if (state === PAYLOAD_BLOCK_PARTIALLY_PRESENT || state === PAYLOAD_BLOCK_NOT_PRESENT) {
        await this.writeSectors(p.block, p.inBlock, new Uint8Array(p.length));
      }
    }
  }

  /** Rule 2 then rule 3: sync the data, then log and apply every dirty BAT sector. */
  async flush(): Promise<void> {
    if (!this.dataSinceSync && this.dirtyBatSectors.size === 0 && this.dirtyBitmapSectors.size === 0) return;
    await this.backend.flush();
    this.dataSinceSync = false;
    if (this.dirtyBatSectors.size > 0 || this.dirtyBitmapSectors.size > 0) {
      const { bat, batRegion, geometry } = this.layout;
      // Should the log need several entries, each applied before the next, they go in an order in
      // which every prefix is a valid image: bitmap bits, then BAT sectors holding sector bitmap entries,
      // then the rest (a payload entry never says PARTIALLY_PRESENT before its bitmap exists).
      const bitmapSectors = [...this.dirtyBitmapSectors.values()].map(({ chunk, sector }) => ({
        fileOffset: bat.sectorBitmapOffset(chunk) + sector * LOG_SECTOR_SIZE,
        data: this.layout.sectorBitmaps.get(chunk)!.slice(sector * LOG_SECTOR_SIZE, (sector + 1) * LOG_SECTOR_SIZE),
      }));
      const holdsSbEntry = (s: number): boolean => {
        for (let i = (s * LOG_SECTOR_SIZE) / BAT_ENTRY_SIZE; i < ((s + 1) * LOG_SECTOR_SIZE) / BAT_ENTRY_SIZE; i++) {
          if (isSectorBitmapEntryIndex(i, geometry.chunkRatio)) return true;
        }
        return false;
      };
      const batSectors = [...this.dirtyBatSectors]
        .sort((a, b) => Number(holdsSbEntry(b)) - Number(holdsSbEntry(a)) || a - b)
        .map((s) => ({
          fileOffset: batRegion.fileOffset + s * LOG_SECTOR_SIZE,
          data: bat.bytes.slice(s * LOG_SECTOR_SIZE, (s + 1) * LOG_SECTOR_SIZE),
        }));
      const required = Math.max(this.fileSize, this.allocator.allocatedEnd);
      await this.log.commit([...bitmapSectors, ...batSectors], this.fileSize, required);
      this.dirtyBatSectors.clear();
      this.dirtyBitmapSectors.clear();
    }
    this.allocator.commitReleases();
  }

  /**
   * Repair: the entry at `index` becomes NOT_PRESENT (through the log at the next flush). Whatever it
   * pointed at is not released: it was never a valid block of this image.
   */
  async clearEntry(index: number): Promise<void> {
    await this.beginChange();
    encodeBatEntry(this.layout.bat.bytes, index, 0, 0);
    this.markEntryDirty(index);
  }

  /**
   * Repair and compaction: moves `block` to a newly allocated place, copying what it holds now (bytes
   * past the end of the file read as zeros). Rule 2 holds as for any new block: the copy is written
   * before the entry changes, and `flush` syncs it before the entry is logged. The old space is
   * released (reusable after that flush) only when `releaseOld` says it belonged to this block alone.
   */
  async relocateBlock(block: number, releaseOld: boolean): Promise<{ from: number; to: number }> {
    await this.beginChange();
    const { bat } = this.layout;
    const { blockSize } = this.layout.metadata;
    const from = bat.blockOffset(block);
    const to = this.allocator.allocate();
    const chunk = new Uint8Array(Math.min(blockSize, ZERO_CHUNK.length));
    try {
      for (let done = 0; done < blockSize; done += chunk.length) {
        const got = await readFully(this.backend, chunk, from + done);
        chunk.fill(0, got);
        await this.writeAt(chunk, to + done);
      }
    } catch (error) {
      this.allocator.unallocate(to);
      throw error;
    }
    bat.setBlock(block, bat.blockState(block), to);
    this.markBatDirty(block);
    if (releaseOld) this.allocator.release(from);
    return { from, to };
  }

  /** For compaction: the lowest free place a block could move to, or null when only the end is left. */
  lowestFreeBlock(): number | null {
    return this.allocator.lowestFree();
  }

  /** Flush, then mark the log empty so the image closes clean. */
  async close(): Promise<void> {
    await this.flush();
    await this.log.close();
  }
}
