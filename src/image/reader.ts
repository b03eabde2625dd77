/**
 * The read side of an open VHDX image: what it is (info), where its data lives (extents, the read
 * plan), and reads at any offset. Reads are served from the in-memory BAT; metadata was read once at
 * open, through the log overlay when a read-only open found a dirty log. `VhdxImage` (image.ts) is
 * this plus opening and the write path.
 */
import {
  PAYLOAD_BLOCK_FULLY_PRESENT,
  PAYLOAD_BLOCK_NOT_PRESENT,
  PAYLOAD_BLOCK_PARTIALLY_PRESENT,
  PAYLOAD_BLOCK_ZERO,
  PAYLOAD_STATE_NAMES,
} from '../format/bat.js';
import { VhdxError } from '../format/errors.js';
import { guidToString } from '../format/guid.js';
import { READ_PIECE, readFully, type Backend } from '../io/backend.js';
import { payloadEntryIndex } from '../format/bat.js';
import type { LogState, OpenedLayout } from './open.js';
import type { VhdxImage } from './image.js';

export type ImageType = 'fixed' | 'dynamic' | 'differencing';

export interface ImageInfo {
  type: ImageType;
  virtualSize: number;
  blockSize: number;
  logicalSectorSize: number;
  physicalSectorSize: number;
  virtualDiskId: string;
  fileWriteGuid: string;
  dataWriteGuid: string;
  logGuid: string;
  logState: LogState;
  logOffset: number;
  logLength: number;
  headerSequence: string;
  creator: string;
  fileSize: number;
  /**
   * Bytes of payload blocks that hold data in this file (fully or partially present). Null when the
   * BAT is larger than its cache (counting would read all of it: `extents` walks it).
   */
  allocatedBytes: number | null;
  chunkRatio: number;
  parentLocator: Record<string, string> | null;
  warnings: string[];
}

/** Where a run of virtual bytes comes from. */
export type ExtentKind =
  | 'data' // stored in this file at `fileOffset`
  | 'zero' // the block is in the ZERO state: reads as zeros
  | 'unallocated' // not present, unmapped or undefined in a disk without a parent: reads as zeros
  | 'parent'; // not present in a differencing disk: comes from the parent

export interface Extent {
  offset: number;
  length: number;
  kind: ExtentKind;
  /** The BAT state name of the blocks in this extent. */
  state: string;
  /** File offset of the first byte, for `data` extents. */
  fileOffset?: number;
  /** From `resolvedExtents`: which image of the chain serves the run (0 this one, 1 its parent...). */
  layer?: number;
}

/**
 * One run of a read plan (`VhdxImage.readPlan`): where the bytes of a virtual range come from, the
 * differencing chain already followed (`layer` 0 is this image, 1 its parent, ...).
 * - `file`: the bytes at `fileOffset` of `backend`, as they are (past the end of the file: zeros);
 * - `zero`: zeros;
 * - `image`: stored, but only `readInto` gives the right bytes (a log applied in memory changes some of
 *   them, or the parent a differencing run needs is not attached: `readInto` then says so).
 */
export type PlannedRange = { offset: number; length: number; layer: number } & (
  | { kind: 'file'; backend: Backend; fileOffset: number }
  | { kind: 'zero' }
  | { kind: 'image' }
);


/** Abstract: every image is a `VhdxImage`, which is why `this` may stand for one below. */
export abstract class ImageReader {
  readonly readOnly: boolean;
  protected closed = false;
  protected ownsParent = false;

  protected constructor(
    readonly backend: Backend,
    protected readonly layout: OpenedLayout,
    readOnly: boolean,
    private attached: VhdxImage | null,
  ) {
    this.readOnly = readOnly;
  }

  /** The parent of a differencing disk, when attached (its own parent is `parent.parent`). */
  get parent(): VhdxImage | null {
    return this.attached;
  }

  /**
   * Attaches the parent of a differencing disk after opening (what `openImage` does once it has found
   * it through the locator). Checks it as `OpenOptions.parent` does. With `owned`, closing this image
   * closes the parent too.
   */
  attachParent(parent: VhdxImage, options: { ignoreParentLinkage?: boolean; owned?: boolean } = {}): void {
    if (this.attached) throw new VhdxError('INVALID_ARGUMENT', 'a parent is already attached', { file: this.backend.name });
    checkParent(this.backend.name, this.layout, parent, options.ignoreParentLinkage ?? false);
    this.attached = parent;
    this.ownsParent = options.owned ?? false;
  }


  /** The parent locator's entries (differencing disks), or null. */
  get parentLocator(): Record<string, string> | null {
    const locator = this.layout.metadata.parentLocator;
    return locator ? Object.fromEntries(locator.entries.map((e) => [e.key, e.value])) : null;
  }

  /** This image, its parent, its parent's parent... as far as they are attached. */
  chain(): VhdxImage[] {
    const out: VhdxImage[] = [];
    for (let image: VhdxImage | null = this as unknown as VhdxImage; image; image = image.parent) out.push(image);
    return out;
  }

  get virtualSize(): number {
    return this.layout.metadata.virtualDiskSize;
  }

  get blockSize(): number {
    return this.layout.metadata.blockSize;
  }

  get logicalSectorSize(): number {
    return this.layout.metadata.logicalSectorSize;
  }

  get physicalSectorSize(): number {
    return this.layout.metadata.physicalSectorSize;
  }

  get type(): ImageType {
    const m = this.layout.metadata;
    return m.hasParent ? 'differencing' : m.leaveBlockAllocated ? 'fixed' : 'dynamic';
  }

  /**
   * Every byte range of the file in use: header section, log, regions, present blocks (sorted). Known
   * when the whole BAT was judged at open (it fits the cache, or the image is writable); otherwise
   * UNSUPPORTED (`check` scans a table of any size).
   */
  usedRanges(): { start: number; end: number; what: string }[] {
    const used = this.layout.used;
    if (!used) throw new VhdxError('UNSUPPORTED', 'the BAT is larger than its cache and was not scanned at open: used ranges are unknown (see batCacheBytes)', { file: this.backend.name });
    return [...used].sort((a, b) => a.start - b.start);
  }

  get warnings(): readonly string[] {
    return this.layout.warnings;
  }

  /** What the image is. Never reads the file: `allocatedBytes` is null when the BAT is not all in memory. */
  info(): ImageInfo {
    const { header, metadata, geometry } = this.layout;
    let allocatedBlocks: number | null = null;
    if (this.layout.bat.isResident) {
      allocatedBlocks = 0;
      for (let b = 0; b < geometry.payloadBlocks; b++) {
        const s = this.layout.bat.blockState(b);
        if (s === PAYLOAD_BLOCK_FULLY_PRESENT || s === PAYLOAD_BLOCK_PARTIALLY_PRESENT) allocatedBlocks++;
      }
    }
    return {
      type: this.type,
      virtualSize: metadata.virtualDiskSize,
      blockSize: metadata.blockSize,
      logicalSectorSize: metadata.logicalSectorSize,
      physicalSectorSize: metadata.physicalSectorSize,
      virtualDiskId: guidToString(metadata.virtualDiskId),
      // The header as it is now (a session's first change installs new write GUIDs).
      fileWriteGuid: guidToString(this.layout.headerWriter.header.fileWriteGuid),
      dataWriteGuid: guidToString(this.layout.headerWriter.header.dataWriteGuid),
      logGuid: guidToString(this.layout.headerWriter.header.logGuid),
      logState: this.layout.logState,
      logOffset: header.logOffset,
      logLength: header.logLength,
      headerSequence: this.layout.headerWriter.header.sequenceNumber.toString(),
      creator: this.layout.creator,
      fileSize: this.fileSize,
      allocatedBytes: allocatedBlocks === null ? null : allocatedBlocks * metadata.blockSize,
      chunkRatio: geometry.chunkRatio,
      parentLocator: metadata.parentLocator ? Object.fromEntries(metadata.parentLocator.entries.map((e) => [e.key, e.value])) : null,
      warnings: [...this.layout.warnings],
    };
  }

  private classify(block: number): { kind: ExtentKind; state: number; fileOffset: number } {
    const state = this.layout.bat.blockState(block);
    switch (state) {
      case PAYLOAD_BLOCK_FULLY_PRESENT:
        return { kind: 'data', state, fileOffset: this.layout.bat.blockOffset(block) };
      case PAYLOAD_BLOCK_PARTIALLY_PRESENT: // per sector, from the bitmap (see extents)
        return { kind: 'parent', state, fileOffset: this.layout.bat.blockOffset(block) };
      case PAYLOAD_BLOCK_ZERO:
        return { kind: 'zero', state, fileOffset: 0 };
      case PAYLOAD_BLOCK_NOT_PRESENT:
        return { kind: this.layout.metadata.hasParent ? 'parent' : 'unallocated', state, fileOffset: 0 };
      default: // UNDEFINED, UNMAPPED (3 and the v0.95 value 5): zeros in every disk type (§7.2)
        return { kind: 'unallocated', state, fileOffset: 0 };
    }
  }

  /**
   * The allocation map of [offset, offset + length): runs of equal kind and state, `data` runs merged
   * only where their file offsets are contiguous. A BAT read lazily is walked a page at a time.
   */
  async extents(offset = 0, length = this.virtualSize - offset): Promise<Extent[]> {
    const out: Extent[] = [];
    for await (const e of this.walk(offset, length)) out.push(e);
    return out;
  }

  /**
   * `extents` as a stream, in order: the BAT is visited a page at a time (pinned while it is read) and
   * each extent is yielded once the next one cannot extend it, so memory does not grow with the disk.
   * With `resolved`, runs served by the parent are replaced by the parent's own (see `resolvedExtents`).
   */
  async *walk(offset = 0, length = this.virtualSize - offset, options: { resolved?: boolean } = {}): AsyncGenerator<Extent> {
    this.checkRange(offset, length);
    const { bat } = this.layout;
    const blockSize = this.blockSize;
    const end = offset + length;
    let pending: Extent[] = [];
    for (let position = offset; position < end; ) {
      const firstBlock = Math.floor(position / blockSize);
      const stop = Math.min(end, (firstBlock + bat.blocksPerPin) * blockSize);
      const lastBlock = Math.ceil(stop / blockSize) - 1;
      const release = await bat.pinBlocks(firstBlock, lastBlock);
      try {
        const bitmaps = await this.bitmapsOf(firstBlock, lastBlock);
        this.extentsNow(position, stop - position, pending, (chunk) => bitmaps.get(chunk));
      } finally {
        release();
      }
      position = stop;
      // All but the last are final (the last may continue into the next group).
      const last = position < end ? pending.pop() : undefined;
      for (const e of pending) yield* this.resolve(e, options.resolved ?? false);
      pending = last ? [last] : [];
    }
    for (const e of pending) yield* this.resolve(e, options.resolved ?? false);
  }

  private async *resolve(e: Extent, resolved: boolean): AsyncGenerator<Extent> {
    if (!resolved) {
      yield e;
    } else if (e.kind === 'parent' && this.attached) {
      for await (const p of this.attached.walk(e.offset, e.length, { resolved: true })) yield { ...p, layer: (p.layer ?? 0) + 1 };
    } else {
      yield { ...e, layer: 0 };
    }
  }

  /** Differencing disks: the sector bitmaps the partially present blocks among [first, last] need (their BAT entries resident). */
  private async bitmapsOf(first: number, last: number): Promise<Map<number, Uint8Array>> {
    const bitmaps = new Map<number, Uint8Array>();
    if (!this.layout.metadata.hasParent) return bitmaps;
    const { bat, geometry } = this.layout;
    for (let block = first; block <= last; block++) {
      const chunk = Math.floor(block / geometry.chunkRatio);
      if (bat.blockState(block) !== PAYLOAD_BLOCK_PARTIALLY_PRESENT || bitmaps.has(chunk)) continue;
      const bitmap = await this.layout.sectorBitmaps.get(chunk);
      if (bitmap) bitmaps.set(chunk, bitmap);
    }
    return bitmaps;
  }

  /**
   * The extents of [offset, offset + length) appended to `out`, synchronously: the BAT entries of the
   * range must be resident, and `bitmap` must give the sector bitmap of every partially present block's
   * chunk (undefined: it is not present, which is BAD_BAT).
   */
  private extentsNow(offset: number, length: number, out: Extent[], bitmap: (chunk: number) => Uint8Array | undefined): void {
    const blockSize = this.blockSize;
    let position = offset;
    const end = offset + length;
    while (position < end) {
      const block = Math.floor(position / blockSize);
      const inBlock = position - block * blockSize;
      const run = Math.min(blockSize - inBlock, end - position);
      const c = this.classify(block);
      if (inBlock === 0 && c.kind !== 'data' && c.state !== PAYLOAD_BLOCK_PARTIALLY_PRESENT && end - position > blockSize) {
        // A run of blocks with the very same entry (an empty disk is one): one step, however long.
        const n = this.layout.bat.uniformRun(block, Math.floor((end - position) / blockSize));
        if (n > 1) {
          push(out, c.kind, c.state, position, n * blockSize, undefined);
          position += n * blockSize;
          continue;
        }
      }
      if (c.state === PAYLOAD_BLOCK_PARTIALLY_PRESENT) {
        // Runs of sectors: bit set -> this file, clear -> the parent (§7.6 step 4).
        for (const r of this.bitmapRuns(bitmap(Math.floor(block / this.layout.geometry.chunkRatio)), block, inBlock, run)) {
          push(out, r.present ? 'data' : 'parent', c.state, position + r.start - inBlock, r.length, r.present ? c.fileOffset + r.start : undefined);
        }
      } else {
        push(out, c.kind, c.state, position, run, c.kind === 'data' ? c.fileOffset + inBlock : undefined);
      }
      position += run;
    }
  }

  /**
   * `extents` done synchronously when everything it needs (BAT pages, sector bitmaps) is in memory now,
   * else null: for callers that answer at once when they can (the NBD server's small reads).
   */
  extentsIfResident(offset: number, length: number): Extent[] | null {
    this.checkRange(offset, length);
    const { bat, geometry } = this.layout;
    const firstBlock = Math.floor(offset / this.blockSize);
    const lastBlock = Math.max(firstBlock, Math.ceil((offset + length) / this.blockSize) - 1);
    if (!bat.resident(payloadEntryIndex(firstBlock, geometry.chunkRatio), payloadEntryIndex(lastBlock, geometry.chunkRatio))) return null;
    let missing = false;
    const out: Extent[] = [];
    this.extentsNow(offset, length, out, (chunk) => {
      const bitmap = this.layout.sectorBitmaps.peek(chunk);
      if (!bitmap) missing = true;
      return bitmap ?? new Uint8Array(0);
    });
    return missing ? null : out;
  }

  /**
   * Runs of equal presence in the sector bitmap for [inBlock, inBlock + length) of a partially present
   * block: `start` is relative to the block. Offsets inside a sector belong to that sector.
   */
  private *bitmapRuns(bitmap: Uint8Array | undefined, block: number, inBlock: number, length: number): Generator<{ start: number; length: number; present: boolean }> {
    const { chunkRatio } = this.layout.geometry;
    const sector = this.logicalSectorSize;
    if (!bitmap) throw new VhdxError('BAD_BAT', `block ${block} is partially present but its sector bitmap is not`, { file: this.backend.name });
    if (bitmap.length === 0) return; // extentsIfResident's placeholder: the caller gives up
    const firstBit = (block % chunkRatio) * (this.blockSize / sector);
    const end = inBlock + length;
    let start = inBlock;
    let present = bitSet(bitmap, firstBit + Math.floor(inBlock / sector));
    let s = Math.floor(inBlock / sector) + 1;
    while (s * sector < end) {
      const bit = firstBit + s;
      // Whole bytes of equal bits at once.
      if ((bit & 7) === 0 && (s + 8) * sector <= end && bitmap[bit >> 3] === (present ? 0xff : 0)) {
        s += 8;
        continue;
      }
      const here = bitSet(bitmap, bit);
      if (here !== present) {
        yield { start, length: s * sector - start, present };
        start = s * sector;
        present = here;
      }
      s++;
    }
    yield { start, length: end - start, present };
  }

  /**
   * Like `extents`, but runs served by the parent are replaced by the parent's own (resolved) extents,
   * each tagged with the `layer` that serves it; a `parent` run remains only where no parent is attached.
   */
  async resolvedExtents(offset = 0, length = this.virtualSize - offset): Promise<Extent[]> {
    const out: Extent[] = [];
    for await (const e of this.walk(offset, length, { resolved: true })) out.push(e);
    return out;
  }

  /** `resolvedExtents` done synchronously when every layer has what it needs in memory, else null. */
  private resolvedExtentsIfResident(offset: number, length: number, layer = 0): Extent[] | null {
    const own = this.extentsIfResident(offset, length);
    if (!own) return null;
    const out: Extent[] = [];
    for (const e of own) {
      if (e.kind === 'parent' && this.attached) {
        const theirs = this.attached.resolvedExtentsIfResident(e.offset, e.length, layer + 1);
        if (!theirs) return null;
        out.push(...theirs);
      } else {
        out.push({ ...e, layer });
      }
    }
    return out;
  }

  /**
   * Where virtual [offset, offset + length) of this image is stored, when all of it lies in one `data`
   * extent and the file's bytes there are what a read returns: its backend and file offset, for copies
   * that bypass memory (`Backend.copyFrom`). Null otherwise: the range is not stored here, spans
   * extents, or a log applied in memory (read-only open of a dirty image) changes some of its bytes.
   * The file may still end inside the range (a block cut short reads as zeros past it).
   */
  async storedAt(offset: number, length: number): Promise<{ backend: Backend; fileOffset: number } | null> {
    this.checkRange(offset, length);
    const plan = await this.readPlan(offset, length);
    const only = plan.length === 1 ? plan[0]! : null;
    return only?.kind === 'file' && only.layer === 0 ? { backend: only.backend, fileOffset: only.fileOffset } : null;
  }

  /**
   * The read plan of [offset, offset + length): for every run, the file and offset its bytes come from,
   * or zeros, through the whole chain. What `readInto` does, laid out for consumers that move the bytes
   * themselves: kernel copies (`convertToRaw`), synchronous small reads (`readIntoSync`, the NBD server).
   */
  async readPlan(offset = 0, length = this.virtualSize - offset): Promise<PlannedRange[]> {
    this.assertOpen();
    return this.planOf(await this.resolvedExtents(offset, length));
  }

  /** Resolved extents turned into a read plan. */
  private planOf(extents: Extent[]): PlannedRange[] {
    const chain = this.chain();
    const plan: PlannedRange[] = [];
    for (const e of extents) {
      const at = { offset: e.offset, length: e.length, layer: e.layer! };
      const layer = chain[e.layer!]!;
      const range: PlannedRange =
        e.kind === 'zero' || e.kind === 'unallocated'
          ? { ...at, kind: 'zero' }
          : e.kind === 'data' && !layer.layout.overlay?.touches(e.fileOffset!, e.length)
            ? { ...at, kind: 'file', backend: layer.backend, fileOffset: e.fileOffset! }
            : { ...at, kind: 'image' };
      // Runs that read the same way merge: zeros with zeros (whatever their block states), file bytes
      // that continue in the same file.
      const last = plan[plan.length - 1];
      const joins =
        last !== undefined &&
        ((last.kind === 'zero' && range.kind === 'zero') ||
          (last.kind === 'file' && range.kind === 'file' && last.backend === range.backend && last.fileOffset + last.length === range.fileOffset));
      if (joins) last.length += range.length;
      else plan.push(range);
    }
    return plan;
  }

  /**
   * `readInto` done synchronously, when the read plan allows it: every run is zeros or file bytes from
   * a backend with `readSync`. False, with `target` in an unspecified state, when it does not (the
   * caller then uses `readInto`). For small reads answered at once (the NBD server's).
   */
  readIntoSync(target: Uint8Array, offset: number): boolean {
    this.assertOpen();
    this.checkRange(offset, target.length);
    if (!this.backend.readSync) return this.readPlanSync(target, offset);
    // Inside one fully present block (every small read of allocated data): the one-run plan, without
    // building it (as `readInto` does).
    const fileOffset = this.inPresentBlock(offset, target.length);
    if (fileOffset === null) return this.readPlanSync(target, offset);
    if (this.layout.overlay?.touches(fileOffset, target.length)) return false;
    let got = 0;
    while (got < target.length) {
      const n = this.backend.readSync(target.subarray(got), fileOffset + got);
      if (n <= 0) break;
      got += n;
    }
    target.fill(0, got); // a block cut short by the end of the file
    return true;
  }

  private readPlanSync(target: Uint8Array, offset: number): boolean {
    const extents = this.resolvedExtentsIfResident(offset, target.length);
    if (!extents) return false; // a BAT page or sector bitmap is not in memory: readInto reads it
    const plan = this.planOf(extents);
    if (plan.some((r) => r.kind === 'image' || (r.kind === 'file' && !r.backend.readSync))) return false;
    for (const r of plan) {
      const piece = target.subarray(r.offset - offset, r.offset - offset + r.length);
      let got = 0;
      if (r.kind === 'file') {
        while (got < piece.length) {
          const n = r.backend.readSync!(piece.subarray(got), r.fileOffset + got);
          if (n <= 0) break;
          got += n;
        }
      }
      piece.fill(0, got); // zeros, or a block cut short by the end of the file
    }
    return true;
  }

  /** Reads `length` bytes at virtual `offset` (any alignment). */
  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readInto(out, offset);
    return out;
  }

  /** Fills `target` from virtual `offset`. Contiguous present blocks become one file read. */
  async readInto(target: Uint8Array, offset: number): Promise<void> {
    this.assertOpen();
    this.checkRange(offset, target.length);
    // Inside one fully present block (every small read of allocated data): the one `data` extent the
    // loop below would make, read without building the extent list.
    const fileOffset = this.inPresentBlock(offset, target.length);
    if (fileOffset !== null) {
      let got: number;
      if (target.length <= READ_PIECE) {
        // readFully's first read made here: one promise less for the reads it serves at once.
        const n = await this.backend.read(target, fileOffset);
        got = n > 0 && n < target.length ? n + (await readFully(this.backend, target.subarray(n), fileOffset + n)) : Math.max(n, 0);
      } else {
        got = await readFully(this.backend, target, fileOffset);
      }
      target.fill(0, got);
      this.layout.overlay?.patch(target, fileOffset);
      return;
    }
    let done = 0;
    for (const extent of await this.extents(offset, target.length)) {
      const piece = target.subarray(done, done + extent.length);
      if (extent.kind === 'data') {
        const got = await readFully(this.backend, piece, extent.fileOffset!);
        // A block cut short by the end of the file (validated at open) reads as zeros past it.
        piece.fill(0, got);
        this.layout.overlay?.patch(piece, extent.fileOffset!);
      } else if (extent.kind === 'parent') {
        if (!this.parent) throw new VhdxError('PARENT_REQUIRED', `reading virtual offset ${extent.offset} needs the parent disk, which is not attached`, { file: this.backend.name });
        await this.parent.readInto(piece, extent.offset);
      } else {
        piece.fill(0);
      }
      done += extent.length;
    }
  }

  /**
   * The whole virtual disk (or a range) as consecutive chunks of at most `chunkSize` bytes. Each chunk
   * is a fresh buffer, so consumers may keep it.
   */
  async *chunks(options: { offset?: number; length?: number; chunkSize?: number } = {}): AsyncGenerator<Uint8Array> {
    const offset = options.offset ?? 0;
    const length = options.length ?? this.virtualSize - offset;
    const chunkSize = options.chunkSize ?? 4 * 1024 * 1024;
    this.checkRange(offset, length);
    for (let position = offset; position < offset + length; position += chunkSize) {
      yield await this.read(position, Math.min(chunkSize, offset + length - position));
    }
  }

  /** The size of the file as this session left it (the write path keeps it current). */
  protected get fileSize(): number {
    return this.layout.fileSize;
  }

  /** The file offset of virtual [offset, offset + length) when it lies inside one fully present block, else null. */
  protected inPresentBlock(offset: number, length: number): number | null {
    const blockSize = this.layout.metadata.blockSize;
    const block = Math.floor(offset / blockSize);
    const inBlock = offset - block * blockSize;
    if (length === 0 || inBlock + length > blockSize) return null;
    const { bat } = this.layout;
    if (!bat.isResident) {
      const index = payloadEntryIndex(block, this.layout.geometry.chunkRatio);
      if (!bat.resident(index, index)) return null;
    }
    if (bat.blockState(block) !== PAYLOAD_BLOCK_FULLY_PRESENT) return null;
    return this.layout.bat.blockOffset(block) + inBlock;
  }


  protected assertOpen(): void {
    if (this.closed) throw new VhdxError('INVALID_ARGUMENT', 'image is closed', { file: this.backend.name });
  }

  protected checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new VhdxError('OUT_OF_RANGE', `range [${offset}, ${offset + length}) is outside the ${this.virtualSize}-byte virtual disk`, { file: this.backend.name });
    }
  }
}

function bitSet(bitmap: Uint8Array, bit: number): boolean {
  return (bitmap[bit >> 3]! & (1 << (bit & 7))) !== 0;
}

/** Appends a run to `out`, merging with the last one when kind, state and (for data) file position continue it. */
function push(out: Extent[], kind: ExtentKind, state: number, offset: number, length: number, fileOffset: number | undefined): void {
  const last = out[out.length - 1];
  const name = PAYLOAD_STATE_NAMES[state]!;
  if (last && last.kind === kind && last.state === name && (kind !== 'data' || last.fileOffset! + last.length === fileOffset)) {
    last.length += length;
    return;
  }
  const extent: Extent = { offset, length, kind, state: name };
  if (fileOffset !== undefined) extent.fileOffset = fileOffset;
  out.push(extent);
}

/** §6.3 steps 5-6: the parent must be the one the child was made from. */
export function checkParent(file: string, layout: OpenedLayout, parent: VhdxImage, ignoreLinkage: boolean): void {
  const m = layout.metadata;
  const mismatch = (message: string): VhdxError => new VhdxError('PARENT_MISMATCH', message, { file });
  if (!m.hasParent || !m.parentLocator) throw new VhdxError('INVALID_ARGUMENT', 'a parent was given but the image is not a differencing disk', { file });
  if (parent.logicalSectorSize !== m.logicalSectorSize) {
    throw mismatch(`parent ${parent.backend.name} has ${parent.logicalSectorSize}-byte logical sectors, the child ${m.logicalSectorSize}`);
  }
  if (parent.virtualSize !== m.virtualDiskSize) throw mismatch(`parent ${parent.backend.name} is ${parent.virtualSize} bytes, the child ${m.virtualDiskSize}`);
  if (ignoreLinkage) return;
  const entries = new Map(m.parentLocator.entries.map((e) => [e.key, e.value]));
  const actual = parent.info().dataWriteGuid.toLowerCase();
  const accepted = ['parent_linkage', 'parent_linkage2'].map((k) => entries.get(k)?.replace(/[{}]/g, '').toLowerCase()).filter((v) => v !== undefined);
  if (!accepted.includes(actual)) {
    throw mismatch(`parent ${parent.backend.name} has changed since this disk was made from it (its DataWriteGuid is {${actual}}, the child expects ${entries.get('parent_linkage') ?? 'none'})`);
  }
}
