/**
 * An open VHDX image: `ImageReader` (reader.ts) for what it is and reads, plus opening and the write
 * path (format reference §7.8, §8.8, §9). Every change (write, zero, discard, flush, close, repair
 * steps) is queued, one at a time: allocation and logging are not reentrant (only a small write into a
 * present block may pass queued writes to other bytes: see `write`). The ordering rules, each
 * enforced here and nowhere else:
 * 1. Before the first change of a session, one header update installs a fresh FileWriteGuid and
 *    DataWriteGuid (§3.4); nothing is written to the file before it.
 * 2. A new block's payload (data plus explicit zeros for the rest of the block) is written before its
 *    BAT entry changes in memory, and `flush` syncs the file before logging that entry: a BAT entry is
 *    never durable before the data it points to.
 * 3. BAT entries change only in memory; `flush` carries every dirty BAT sector through the log in one
 *    entry (`LogWriter`). Writes into present blocks go in place and need no log.
 * 4. Space a BAT change frees is reused only after that change is durable (`BlockAllocator.release`).
 */
import { isAllZero, MiB } from '../format/bytes.js';
import {
  BAT_ENTRY_SIZE,
  PAYLOAD_BLOCK_FULLY_PRESENT,
  PAYLOAD_BLOCK_PARTIALLY_PRESENT,
  PAYLOAD_BLOCK_UNMAPPED,
  PAYLOAD_BLOCK_ZERO,
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
import { openLayout, type OpenedLayout, type OpenOptions } from './open.js';
import { ImageReader, checkParent } from './reader.js';
import { encodeParentLocator } from '../format/parent-locator.js';
import { encodeMetadataRegion } from '../format/metadata-region.js';

export type { ImageType, ImageInfo, ExtentKind, Extent, PlannedRange } from './reader.js';

const ZERO_CHUNK = new Uint8Array(4 * MiB);
/** Writes up to this size into a fully present block may skip the queue (see `write`). */
const SMALL_WRITE = 128 * 1024;
const DONE: Promise<void> = Promise.resolve();
/** With more plain writes than this queued, a small write queues too (the overlap test stays cheap). */
const OVERLAP_SCAN = 64;
const notWritable = (file: string): VhdxError => new VhdxError('READ_ONLY', 'image is open read-only', { file });

export class VhdxImage extends ImageReader {
  /** Serializes every change: see the module comment. */
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * Changes in the queue, running or waiting, other than plain writes (flush, close, zeroes, discards,
   * copies, moves, repairs): while there is one, every write queues (see `write`).
   */
  private queuedBarriers = 0;
  private readonly barrierDone = (): void => {
    this.queuedBarriers--;
  };
  /** The virtual ranges of the plain writes in the queue, running or waiting. */
  private readonly queuedWrites = new Set<{ start: number; end: number }>();
  // The write path's state; a read-only image never creates it (every change is refused first).
  private readonly allocator!: BlockAllocator;
  private readonly log!: LogWriter;
  /** Where the file ends, as this session's writes left it. */
  private fileEnd: number;
  /** False only under repair, which goes on with the file after closing the image. */
  private ownsBackend = true;

  private constructor(backend: Backend, layout: OpenedLayout, readOnly: boolean, private readonly sparse: boolean, parent: VhdxImage | null) {
    super(backend, layout, readOnly, parent);
    this.fileEnd = layout.fileSize;
    if (readOnly) return;
    // A writable open judged the whole BAT (open.ts): every block's place is known.
    if (!layout.used) throw new Error('a writable image needs the used ranges of its whole BAT');
    this.allocator = new BlockAllocator(layout.metadata.blockSize, layout.used);
    this.log = new LogWriter(backend, layout.headerWriter, layout.header.logOffset, layout.header.logLength);
  }

  static async open(backend: Backend, options: OpenOptions = {}): Promise<VhdxImage> {
    const readOnly = options.readOnly ?? backend.readOnly;
    const layout = await openLayout(backend, { ...options, readOnly });
    const parent = options.parent ?? null;
    if (parent) checkParent(backend.name, layout, parent, options.ignoreParentLinkage ?? false);
    return new VhdxImage(backend, layout, readOnly, options.sparse ?? false, parent);
  }

  /**
   * @internal Repair's way in: a writable image over a layout opened with `collectBatProblems`, whose BAT may
   * still hold the bad entries repair is about to clear (only `clearBatEntry`, `relocateBlock`,
   * `lowestFreeBlock` and `close` are meant for it). Compaction comes in the same way, over a plain
   * writable layout, because it too goes on with the file (it cuts the tail) after closing the image.
   */
  static overLayout(backend: Backend, layout: OpenedLayout): VhdxImage {
    const image = new VhdxImage(backend, layout, false, false, null);
    image.ownsBackend = false; // repair goes on with the file after closing the image
    return image;
  }

  protected override get fileSize(): number {
    return this.fileEnd;
  }

  /** Log entries this session has written (each is one flush's worth of BAT sectors, or a part of it). */
  get logEntriesWritten(): number {
    return this.readOnly ? 0 : this.log.entriesWritten;
  }

  /**
   * Writes `data` at virtual `offset` (any alignment). Durable after the next `flush` or `close`.
   *
   * A small write inside one fully present block needs no allocation and no log. Once the session has
   * begun (rule 1), with no other kind of change queued (a flush must not race a write: it could miss
   * it; a move or reclaim of the block could lose it) and no queued write overlapping it (writes to the
   * same bytes land in the order they were issued), it is written at once through the backend's
   * `writeSync` (the page cache takes it in microseconds) instead of waiting behind queued writes to
   * other places.
   */
  write(offset: number, data: Uint8Array): Promise<void> {
    const end = offset + data.length;
    if (this.queuedBarriers === 0 && this.sessionGuidsInstalled && data.length <= SMALL_WRITE && this.backend.writeSync && !this.closed) {
      try {
        const fileOffset = Number.isSafeInteger(offset) && offset >= 0 && end <= this.virtualSize && !this.overlapsQueuedWrite(offset, end) ? this.inPresentBlock(offset, data.length) : null;
        if (fileOffset !== null) {
          this.backend.writeSync(data, fileOffset);
          this.wrote(fileOffset, data.length);
          return DONE;
        }
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const range = { start: offset, end };
    this.queuedWrites.add(range);
    const done = (): void => {
      this.queuedWrites.delete(range);
    };
    const run = this.change(offset, data.length, () => this.writeNow(offset, data), false);
    run.then(done, done);
    return run;
  }

  /** Whether [start, end) overlaps a queued write; true (queue it) when too many are queued to look. */
  private overlapsQueuedWrite(start: number, end: number): boolean {
    if (this.queuedWrites.size === 0) return false;
    if (this.queuedWrites.size > OVERLAP_SCAN) return true;
    for (const w of this.queuedWrites) if (w.start < end && start < w.end) return true;
    return false;
  }

  /**
   * For copies into this image: fills payload block `block` (its first `length` bytes; the rest reads
   * as zeros) from `read`, `piece` bytes at a time, allocating only if some piece is not all zeros
   * (see `copyBlockNow`). Resolves to whether anything was written.
   */
  copyBlockFrom(
    block: number,
    length: number,
    read: (target: Uint8Array, inBlock: number) => Promise<void>,
    options: { piece: Uint8Array; isZero: (data: Uint8Array) => boolean; presentIsZero?: boolean },
  ): Promise<boolean> {
    const offset = block * this.blockSize;
    if (!Number.isSafeInteger(block) || block < 0 || length <= 0 || length > this.blockSize) {
      throw new VhdxError('OUT_OF_RANGE', `block ${block} with length ${length} is not a block of this image`, { file: this.backend.name });
    }
    let result = false;
    return this.change(offset, length, async () => {
      result = await this.copyBlockNow(block, length, read, options.piece, options.isZero, options.presentIsZero ?? false);
    }).then(() => result);
  }

  /**
   * Makes [offset, offset + length) read as zeros. Dynamic disks turn whole blocks into ZERO blocks
   * without allocating; fixed disks get zeros written in place.
   */
  writeZeroes(offset: number, length: number): Promise<void> {
    return this.change(offset, length, () => this.zeroNow(offset, length, PAYLOAD_BLOCK_ZERO));
  }

  /** Like `writeZeroes`, but whole blocks of a dynamic disk become UNMAPPED and their space is reused. */
  discard(offset: number, length: number): Promise<void> {
    return this.change(offset, length, () => this.zeroNow(offset, length, PAYLOAD_BLOCK_UNMAPPED));
  }

  /** Everything written before the call is durable when it resolves (data sync, one log entry, apply). */
  flush(): Promise<void> {
    if (this.readOnly) return Promise.resolve();
    return this.change(0, 0, () => this.commitChanges());
  }

  /** Flushes, leaves the log empty and the headers clean, and closes the file. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (!this.readOnly) {
        await this.exclusive(async () => {
          await this.commitChanges();
          await this.log.close(); // the log left empty: the image closes clean
        });
      }
    } finally {
      this.closed = true;
      if (this.ownsBackend) await this.backend.close();
      if (this.ownsParent) await this.parent?.close();
    }
  }

  /**
   * Differencing disks: replaces the parent locator's key/value pairs (through the log, durable when
   * this resolves). Used by merge (parent_linkage2) and rebase (paths and linkage).
   */
  async setParentLocator(entries: { key: string; value: string }[]): Promise<void> {
    const m = this.layout.metadata;
    if (!m.hasParent || !m.parentLocator) throw new VhdxError('INVALID_ARGUMENT', 'not a differencing disk', { file: this.backend.name });
    const locator = { locatorType: m.parentLocator.locatorType, entries };
    const region = encodeMetadataRegion(
      { virtualSize: m.virtualDiskSize, blockSize: m.blockSize, logicalSectorSize: m.logicalSectorSize, physicalSectorSize: m.physicalSectorSize, fixed: false, hasParent: true },
      m.virtualDiskId,
      this.layout.metadataRegion.length,
      encodeParentLocator(locator),
    );
    const current = new Uint8Array(region.length);
    await readFully(this.backend, current, this.layout.metadataRegion.fileOffset);
    await this.change(0, 0, () => this.rewriteMetadata(region, current));
    m.parentLocator = locator;
  }

  /** @internal Repair: the BAT entry at `index` becomes NOT_PRESENT, through the log at the next flush (see `clearEntryNow`). */
  clearBatEntry(index: number): Promise<void> {
    return this.change(0, 0, () => this.clearEntryNow(index));
  }

  /** @internal Repair and compaction: moves `block` to newly allocated space (see `relocateBlockNow`). */
  relocateBlock(block: number, releaseOld: boolean): Promise<{ from: number; to: number }> {
    let moved = { from: 0, to: 0 };
    return this.change(0, 0, async () => {
      moved = await this.relocateBlockNow(block, releaseOld);
    }).then(() => moved);
  }

  private readonly dirtyBatSectors = new Set<number>();
  /** Differencing disks: dirty 4 KiB sectors of sector bitmap blocks, as `chunk:sector` keys. */
  private readonly dirtyBitmapSectors = new Map<string, { chunk: number; sector: number }>();
  private sessionGuidsInstalled = false;
  private dataSinceSync = false;

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
    if (this.readOnly) throw notWritable(this.backend.name);
    if (this.sessionGuidsInstalled) throw new VhdxError('INVALID_ARGUMENT', 'this session already changed the image: its DataWriteGuid is set', { file: this.backend.name });
    this.nextDataWriteGuid = guid;
  }

  /**
   * Replaces the metadata region's bytes (e.g. a new parent locator): the 4 KiB sectors that differ
   * are committed through the log, after any pending data and BAT changes.
   */
  private async rewriteMetadata(region: Uint8Array, current: Uint8Array): Promise<void> {
    await this.beginChange();
    await this.commitChanges();
    const { metadataRegion } = this.layout;
    const sectors: { fileOffset: number; data: Uint8Array }[] = [];
    for (let at = 0; at < region.length; at += LOG_SECTOR_SIZE) {
      const next = region.subarray(at, at + LOG_SECTOR_SIZE);
      const old = current.subarray(at, at + LOG_SECTOR_SIZE);
      if (next.some((b, i) => b !== old[i])) sectors.push({ fileOffset: metadataRegion.fileOffset + at, data: next.slice() });
    }
    await this.log.commit(sectors, this.fileEnd, Math.max(this.fileEnd, this.allocator.allocatedEnd));
  }

  private markBatDirty(block: number): void {
    this.markEntryDirty(payloadEntryIndex(block, this.layout.geometry.chunkRatio));
  }

  private markEntryDirty(index: number): void {
    this.dirtyBatSectors.add(Math.floor((index * BAT_ENTRY_SIZE) / LOG_SECTOR_SIZE));
  }

  private async writeAt(data: Uint8Array, fileOffset: number): Promise<void> {
    await this.backend.write(data, fileOffset);
    this.wrote(fileOffset, data.length);
  }

  private wrote(fileOffset: number, length: number): void {
    this.fileEnd = Math.max(this.fileEnd, fileOffset + length);
    this.dataSinceSync = true;
  }

  /** Zeros with their space allocated: the backend's fast path (fallocate) where it has one. */
  private async writeZerosAt(fileOffset: number, length: number): Promise<void> {
    if (length <= 0) return;
    await writeZeros(this.backend, fileOffset, length);
    this.fileEnd = Math.max(this.fileEnd, fileOffset + length);
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
      if (this.sparse && offset >= this.fileEnd) {
        // Past the end of the file: extending it makes the rest of the block read as zeros (a hole).
        await this.writeAt(data, offset + inBlock);
        if (this.fileEnd < offset + blockSize) {
          await this.backend.truncate(offset + blockSize);
          this.fileEnd = offset + blockSize;
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
      buffer = new Uint8Array(end - start);
      const base = block * blockSize;
      if (start !== inBlock) await this.readInto(buffer.subarray(0, sector), base + start);
      if (end !== inBlock + data.length && (end - sector > start || start === inBlock)) await this.readInto(buffer.subarray(end - start - sector), base + end - sector);
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
    const bitmaps = this.layout.sectorBitmaps;
    const existing = await bitmaps.get(chunk);
    if (existing) {
      bitmaps.hold(chunk); // changed from now on: kept in memory until the log carries it
      return existing;
    }
    const offset = this.allocator.allocate(MiB);
    try {
      await this.writeZerosAt(offset, MiB);
    } catch (error) {
      this.allocator.unallocate(offset, MiB);
      throw error;
    }
    const bitmap = new Uint8Array(MiB);
    bitmaps.add(chunk, bitmap);
    const index = sectorBitmapEntryIndex(chunk, this.layout.geometry.chunkRatio);
    this.layout.bat.setEntry(index, SB_BLOCK_PRESENT, offset);
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
  private async copyBlockNow(
    block: number,
    length: number,
    read: (target: Uint8Array, inBlock: number) => Promise<void>,
    piece: Uint8Array,
    isZero: (data: Uint8Array) => boolean,
    presentIsZero: boolean,
  ): Promise<boolean> {
    // writeNow (differencing, partially present blocks) pins again inside: pins nest.
    return this.layout.bat.withBlocks(block, block, () => this.copyBlockPinned(block, length, read, piece, isZero, presentIsZero));
  }

  private async copyBlockPinned(
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
          await this.writeNow(base + at, data);
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
  private async *pieces(offset: number, length: number): AsyncGenerator<{ block: number; inBlock: number; start: number; length: number }> {
    const { blockSize } = this.layout.metadata;
    for (let position = offset; position < offset + length; ) {
      const block = Math.floor(position / blockSize);
      const inBlock = position - block * blockSize;
      const n = Math.min(blockSize - inBlock, offset + length - position);
      // The block's BAT entry (and its chunk's sector bitmap entry) stays in memory while the piece is handled.
      const release = await this.layout.bat.pinBlocks(block, block, this.differencing);
      try {
        yield { block, inBlock, start: position - offset, length: n };
      } finally {
        release();
      }
      position += n;
    }
  }

  private async writeNow(offset: number, data: Uint8Array): Promise<void> {
    if (data.length === 0) return;
    if (!this.sessionGuidsInstalled) await this.beginChange();
    const { bat } = this.layout;
    // Inside one fully present block (every small write of allocated data): in place, as the loop
    // below would do it, without splitting into pieces.
    const { blockSize } = this.layout.metadata;
    const inPlace = this.inPresentBlock(offset, data.length);
    if (inPlace !== null) return this.writeAt(data, inPlace);
    for await (const p of this.pieces(offset, data.length)) {
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
  private async zeroNow(offset: number, length: number, wholeBlockState: typeof PAYLOAD_BLOCK_ZERO | typeof PAYLOAD_BLOCK_UNMAPPED): Promise<void> {
    if (length === 0) return;
    await this.beginChange();
    const { bat } = this.layout;
    const { blockSize, virtualDiskSize } = this.layout.metadata;
    if (this.differencing) return this.zeroRangeDifferencing(offset, length);
    for await (const p of this.pieces(offset, length)) {
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
    for await (const p of this.pieces(offset, length)) {
      const state = bat.blockState(p.block);
      if (state === PAYLOAD_BLOCK_FULLY_PRESENT) {
        await this.writeZerosAt(bat.blockOffset(p.block) + p.inBlock, p.length);
      } else if (state === PAYLOAD_BLOCK_PARTIALLY_PRESENT || state === PAYLOAD_BLOCK_NOT_PRESENT) {
        await this.writeSectors(p.block, p.inBlock, new Uint8Array(p.length));
      }
    }
  }

  /** Rule 2 then rule 3: sync the data, then log and apply every dirty BAT sector. */
  private async commitChanges(): Promise<void> {
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
        data: this.layout.sectorBitmaps.peek(chunk)!.slice(sector * LOG_SECTOR_SIZE, (sector + 1) * LOG_SECTOR_SIZE),
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
          data: bat.sectorBytes(s),
        }));
      const required = Math.max(this.fileEnd, this.allocator.allocatedEnd);
      await this.log.commit([...bitmapSectors, ...batSectors], this.fileEnd, required);
      this.dirtyBatSectors.clear();
      this.dirtyBitmapSectors.clear();
      // Carried by the log and applied in place: the pages and bitmaps may leave memory again.
      bat.clean();
      this.layout.sectorBitmaps.clean();
    }
    this.allocator.commitReleases();
  }

  /**
   * Repair: the entry at `index` becomes NOT_PRESENT (through the log at the next flush). Whatever it
   * pointed at is not released: it was never a valid block of this image.
   */
  private async clearEntryNow(index: number): Promise<void> {
    await this.beginChange();
    const release = await this.layout.bat.pin(index, index); // an entry by index: it may be a sector bitmap's
    this.layout.bat.setEntry(index, 0, 0);
    release();
    this.markEntryDirty(index);
  }

  /**
   * Repair and compaction: moves `block` to a newly allocated place, copying what it holds now (bytes
   * past the end of the file read as zeros). Rule 2 holds as for any new block: the copy is written
   * before the entry changes, and `flush` syncs it before the entry is logged. The old space is
   * released (reusable after that flush) only when `releaseOld` says it belonged to this block alone.
   */
  private async relocateBlockNow(block: number, releaseOld: boolean): Promise<{ from: number; to: number }> {
    await this.beginChange();
    return this.layout.bat.withBlocks(block, block, () => this.relocatePinned(block, releaseOld));
  }

  private async relocatePinned(block: number, releaseOld: boolean): Promise<{ from: number; to: number }> {
    const { bat } = this.layout;
    const { blockSize } = this.layout.metadata;
    const from = bat.blockOffset(block);
    const to = this.allocator.allocate();
    const chunk = new Uint8Array(Math.min(blockSize, ZERO_CHUNK.length));
    try {
      // Inside the kernel where the backend can (copy_file_range): no pass through user memory.
      let copied = 0;
      while (this.backend.copyFrom && copied < blockSize) {
        const n = await this.backend.copyFrom(this.backend, from + copied, to + copied, blockSize - copied);
        if (n <= 0) break;
        copied += n;
        this.fileEnd = Math.max(this.fileEnd, to + copied);
        this.dataSinceSync = true;
      }
      if (copied > 0 && copied < blockSize) {
        // The source ended early (a block cut short by the end of the file): the rest reads as zeros.
        await this.writeZerosAt(to + copied, blockSize - copied);
        copied = blockSize;
      }
      for (let done = copied; done < blockSize; done += chunk.length) {
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

  /**
   * @internal Compaction: every payload block that has space in the file (fully or partially present),
   * with its file offset, from the BAT as this session holds it (visited a page at a time).
   */
  presentBlocks(): Promise<{ block: number; offset: number; state: number }[]> {
    if (this.readOnly) return Promise.reject(notWritable(this.backend.name));
    const out: { block: number; offset: number; state: number }[] = [];
    return this.exclusive(async () => {
      const { bat, geometry } = this.layout;
      await bat.forEachPage((first, end) => {
        for (let index = first; index < end; index++) {
          if (isSectorBitmapEntryIndex(index, geometry.chunkRatio)) continue;
          const block = index - Math.floor(index / (geometry.chunkRatio + 1));
          if (block >= geometry.payloadBlocks) break;
          const state = bat.entryState(index);
          if (state === PAYLOAD_BLOCK_FULLY_PRESENT || state === PAYLOAD_BLOCK_PARTIALLY_PRESENT) out.push({ block, offset: bat.entryOffset(index), state });
        }
      });
      return out;
    });
  }

  /**
   * @internal Compaction: when `block` lies wholly in this file (fully present, or a differencing
   * child's partially present block whose bitmap says every sector is here) and reads as zeros, its entry becomes `state` (ZERO or
   * UNMAPPED, both read as zeros in every image type, a differencing child's included: its parent stays
   * hidden) in memory, logged at the next flush, and its space is released (reusable only after that
   * flush). The block is read inside the change queue, so no write can slip in between the test and
   * the change. Resolves to whether the block was reclaimed. Fixed images keep every block.
   */
  reclaimZeroBlock(block: number, state: typeof PAYLOAD_BLOCK_ZERO | typeof PAYLOAD_BLOCK_UNMAPPED, buffer: Uint8Array): Promise<boolean> {
    if (this.fixed) return Promise.reject(new VhdxError('INVALID_ARGUMENT', 'a fixed image keeps every block allocated', { file: this.backend.name }));
    let reclaimed = false;
    return this.change(block * this.blockSize, 0, async () => {
      const { bat } = this.layout;
      const release = await bat.pinBlocks(block, block, this.differencing);
      try {
        if (!(await this.wholeBlockInFile(block))) return;
        const offset = bat.blockOffset(block);
        if (!(await fileRangeIsZero(this.backend, offset, this.blockSize, buffer))) return;
        await this.beginChange();
        bat.setBlock(block, state, 0);
        this.markBatDirty(block);
        this.allocator.release(offset);
        reclaimed = true;
      } finally {
        release();
      }
    }).then(() => reclaimed);
  }

  /**
   * Whether every sector of `block` is served by this file: fully present, or (differencing) partially
   * present with every bit of its sector bitmap set. Its entries must be pinned, bitmaps included.
   */
  private async wholeBlockInFile(block: number): Promise<boolean> {
    const state = this.layout.bat.blockState(block);
    if (state === PAYLOAD_BLOCK_FULLY_PRESENT) return true;
    if (state !== PAYLOAD_BLOCK_PARTIALLY_PRESENT || !this.differencing) return false;
    const { chunkRatio } = this.layout.geometry;
    const bitmap = await this.layout.sectorBitmaps.get(Math.floor(block / chunkRatio));
    if (!bitmap) return false;
    const bytesPerBlock = this.blockSize / this.layout.metadata.logicalSectorSize / 8;
    const first = (block % chunkRatio) * bytesPerBlock;
    for (let i = first; i < first + bytesPerBlock; i++) if (bitmap[i] !== 0xff) return false;
    return true;
  }

  /** @internal For compaction: the lowest free place a block could move to, or null when only the end is left. */
  lowestFreeBlock(): number | null {
    if (this.readOnly) throw notWritable(this.backend.name);
    return this.allocator.lowestFree();
  }

  /** Not an async function (one promise less per write); a refused change still rejects, never throws. */
  private change(offset: number, length: number, fn: () => Promise<void>, barrier = true): Promise<void> {
    try {
      this.assertOpen();
      if (this.readOnly) throw notWritable(this.backend.name);
      this.checkRange(offset, length);
    } catch (error) {
      return Promise.reject(error);
    }
    return this.exclusive(fn, barrier);
  }

  /** Queues `fn` after every change before it. A `barrier` (anything but a plain write) also holds back small writes (see `write`). */
  private exclusive<T>(fn: () => Promise<T>, barrier = true): Promise<T> {
    const run = this.queue.then(fn);
    if (barrier) {
      this.queuedBarriers++;
      this.queue = run.then(this.barrierDone, this.barrierDone);
    } else {
      this.queue = run.catch(() => undefined);
    }
    return run;
  }
}

/**
 * Whether the file bytes [offset, offset + length) are all zeros, read `buffer.length` bytes at a time
 * (stopping at the first piece that is not); bytes past the end of the file count as zeros.
 */
export async function fileRangeIsZero(backend: Backend, offset: number, length: number, buffer: Uint8Array): Promise<boolean> {
  for (let done = 0; done < length; done += buffer.length) {
    const piece = buffer.subarray(0, Math.min(buffer.length, length - done));
    const got = await readFully(backend, piece, offset + done);
    if (!isAllZero(piece.subarray(0, got))) return false;
    if (got < piece.length) return true;
  }
  return true;
}
