/**
 * The BAT of an open image (§7): entry bytes in pages, plus the geometry that maps payload blocks to
 * entries.
 *
 * Two ways to hold it. A BAT that fits the cache (every image up to terabytes with the default 32 MiB)
 * is read whole at open and never evicted: every page is resident and the accessors never wait. A
 * larger one is read a page at a time, on demand, into a bounded LRU cache: callers `pin` the entries
 * they are about to use (waiting for their pages), use the synchronous accessors, and release the pin.
 * A page that a change made dirty stays resident until the log has carried it (`clean`), so BAT bytes
 * reach the file only through the log, as before. Each page is checked entry by entry as it is read
 * (`PageCheck`); what needs the whole table (blocks overlapping each other) is `inspect`, a streaming
 * scan over every page, done by writable opens and by check.
 */
import { MiB } from '../format/bytes.js';
import {
  BAT_ENTRY_SIZE,
  PAYLOAD_BLOCK_FULLY_PRESENT,
  PAYLOAD_BLOCK_PARTIALLY_PRESENT,
  SB_BLOCK_NOT_PRESENT,
  SB_BLOCK_PRESENT,
  encodeBatEntry,
  isSectorBitmapEntryIndex,
  payloadEntryIndex,
  sectorBitmapEntryIndex,
  type BatGeometry,
} from '../format/bat.js';
import { LOG_SECTOR_SIZE, SECTOR_BITMAP_BLOCK_SIZE } from '../format/constants.js';
import { VhdxError } from '../format/errors.js';
import { readFully, type Backend } from '../io/backend.js';

export interface Range {
  start: number;
  end: number;
  what: string;
  /** For payload blocks and sector bitmap blocks: which one, and its BAT entry index. */
  block?: number;
  chunk?: number;
  index?: number;
}

/** Bytes of BAT in one page of the cache: 131,072 entries (128 GiB of virtual disk at 1 MiB blocks). */
export const BAT_PAGE_BYTES = MiB;
/** The default cache: 32 pages. */
export const DEFAULT_BAT_CACHE_BYTES = 32 * MiB;
/**
 * A BAT up to this size (and up to the cache) is read whole at open: 512 GiB of disk at 1 MiB blocks,
 * 16 TiB at 32 MiB. Larger ones are read as used, so opening a chain of large disks reads little.
 */
export const WHOLE_BAT_LIMIT = 4 * MiB;

/** Where the entry bytes come from. */
export interface BatSource {
  backend: Backend;
  /** File offset of the BAT region. */
  fileOffset: number;
  /** Bytes of the region in use: whole 4 KiB sectors (the writer logs the BAT a sector at a time). */
  length: number;
  /** Patches what was read (a read-only open of a dirty log). */
  patch?: (bytes: Uint8Array, position: number) => void;
}

interface Page {
  bytes: Uint8Array;
  pins: number;
  dirty: boolean;
}

/** Throws the first problem of the entries [first, end) of a page just read. */
export type PageCheck = (bat: BatTable, first: number, end: number) => void;

export class BatTable {
  /** Entries per page, a power of two. */
  private readonly pageEntries: number;
  private readonly pageCount: number;
  /** Resident pages in least-recently-used order (a Map keeps insertion order; a use moves a page last). */
  private readonly pages = new Map<number, Page>();
  /** Every page resident, never evicted: the whole table in one buffer. */
  private whole: Uint8Array | null = null;
  private readonly loading = new Map<number, Promise<Page>>();
  /** Buffers of dropped pages, reused for the next reads (a walk of a large table makes no garbage). */
  private readonly spare: Uint8Array[] = [];
  /** Pages read since open (a measure for tests and benchmarks). */
  pagesRead = 0;

  private constructor(
    readonly geometry: BatGeometry,
    private readonly source: BatSource,
    /** Most clean pages kept; pinned and dirty pages may exceed it. */
    private readonly capacity: number,
    pageBytes: number,
    private readonly check: PageCheck | null,
  ) {
    this.pageEntries = pageBytes / BAT_ENTRY_SIZE;
    this.pageCount = Math.ceil(source.length / pageBytes);
  }

  /** The whole table read at once (it fits the cache): every accessor works at any time. */
  static async resident(geometry: BatGeometry, source: BatSource): Promise<BatTable> {
    const bytes = new Uint8Array(source.length);
    await readFully(source.backend, bytes, source.fileOffset);
    source.patch?.(bytes, source.fileOffset);
    return BatTable.fromBytes(geometry, bytes, source);
  }

  /** A table over bytes already in memory (tests, and `resident`). */
  static fromBytes(geometry: BatGeometry, bytes: Uint8Array, source?: BatSource): BatTable {
    const pageBytes = Math.max(bytes.length, BAT_ENTRY_SIZE);
    const table = new BatTable(geometry, source ?? { backend: null as unknown as Backend, fileOffset: 0, length: bytes.length }, 1, 2 ** Math.ceil(Math.log2(pageBytes)), null);
    table.whole = bytes;
    return table;
  }

  /**
   * A table read on demand: pages of `pageBytes` (a power of two from 4 KiB), at most `cacheBytes` of
   * clean ones kept; `check` judges each page as it is read.
   */
  static lazy(geometry: BatGeometry, source: BatSource, options: { cacheBytes: number; pageBytes?: number; check?: PageCheck }): BatTable {
    const pageBytes = options.pageBytes ?? Math.min(BAT_PAGE_BYTES, Math.max(LOG_SECTOR_SIZE, 2 ** Math.floor(Math.log2(options.cacheBytes))));
    const capacity = Math.max(1, Math.floor(options.cacheBytes / pageBytes));
    return new BatTable(geometry, source, capacity, pageBytes, options.check ?? null);
  }

  /** Payload blocks whose entries one `pinBlocks` should cover at a time in a walk (two pages at most). */
  get blocksPerPin(): number {
    return this.whole ? Infinity : Math.max(1, this.pageEntries >> 1);
  }

  /** Whether the whole table is in memory (then `pin` never waits and nothing is evicted). */
  get isResident(): boolean {
    return this.whole !== null;
  }

  /** Entries in the table's bytes (at least `geometry.requiredEntries`). */
  get entryCount(): number {
    return Math.floor(this.source.length / BAT_ENTRY_SIZE);
  }

  /** Pages resident now (clean, dirty and pinned). */
  get residentPages(): number {
    return this.whole ? this.pageCount : this.pages.size;
  }

  // ------------------------------------------------------------------------------------ pinning

  /**
   * Makes the entries [first, last] resident and keeps them so until the returned release is called.
   * Resolves at once (no page read) when they already are.
   */
  async pin(first: number, last: number): Promise<() => void> {
    if (this.whole) return noop;
    const firstPage = Math.floor(first / this.pageEntries);
    const lastPage = Math.min(Math.floor(last / this.pageEntries), this.pageCount - 1);
    const held: Page[] = [];
    try {
      for (let p = firstPage; p <= lastPage; p++) {
        const page = this.pages.get(p) ?? (await this.load(p));
        page.pins++;
        held.push(page);
        this.touch(p, page);
      }
    } catch (error) {
      for (const page of held) page.pins--;
      throw error;
    }
    this.evict();
    let released = false;
    return () => {
      if (released) return;
      released = true;
      for (const page of held) page.pins--;
      this.evict();
    };
  }

  /** `pin` for the entries of payload blocks [firstBlock, lastBlock], and their chunks' sector bitmap entries when `withBitmaps`. */
  pinBlocks(firstBlock: number, lastBlock: number, withBitmaps = false): Promise<() => void> {
    const { chunkRatio } = this.geometry;
    const last = withBitmaps ? sectorBitmapEntryIndex(Math.floor(lastBlock / chunkRatio), chunkRatio) : payloadEntryIndex(lastBlock, chunkRatio);
    return this.pin(payloadEntryIndex(firstBlock, chunkRatio), last);
  }

  /** Whether entries [first, last] are resident now (a synchronous caller's test before using them). */
  resident(first: number, last: number): boolean {
    if (this.whole) return true;
    for (let p = Math.floor(first / this.pageEntries); p <= Math.floor(last / this.pageEntries); p++) if (!this.pages.has(p)) return false;
    return true;
  }

  private load(p: number): Promise<Page> {
    let pending = this.loading.get(p);
    if (!pending) {
      pending = this.read(p).finally(() => this.loading.delete(p));
      this.loading.set(p, pending);
    }
    return pending;
  }

  private async read(p: number): Promise<Page> {
    const pageBytes = this.pageEntries * BAT_ENTRY_SIZE;
    const start = p * pageBytes;
    const length = Math.min(pageBytes, this.source.length - start);
    const reused = this.spare.pop();
    const bytes = reused?.length === length ? reused : new Uint8Array(length);
    await readFully(this.source.backend, bytes, this.source.fileOffset + start);
    this.source.patch?.(bytes, this.source.fileOffset + start);
    this.pagesRead++;
    const existing = this.pages.get(p);
    if (existing) {
      this.drop(bytes);
      return existing; // read twice by callers that raced: the first copy stays (it may be dirty)
    }
    const page: Page = { bytes, pins: 0, dirty: false };
    this.pages.set(p, page);
    // Judged after it is in place (the check reads entries through the accessors); a bad page leaves again.
    try {
      this.check?.(this, p * this.pageEntries, p * this.pageEntries + bytes.length / BAT_ENTRY_SIZE);
    } catch (error) {
      this.pages.delete(p);
      throw error;
    }
    return page;
  }

  private drop(bytes: Uint8Array): void {
    if (this.spare.length < 2) this.spare.push(bytes);
  }

  private touch(p: number, page: Page): void {
    this.pages.delete(p);
    this.pages.set(p, page);
  }

  /** Drops least recently used clean, unpinned pages while more than `capacity` pages are resident. */
  private evict(): void {
    if (this.pages.size <= this.capacity) return;
    for (const [p, page] of this.pages) {
      if (this.pages.size <= this.capacity) break;
      if (page.pins === 0 && !page.dirty) {
        this.pages.delete(p);
        this.drop(page.bytes);
      }
    }
  }

  // ----------------------------------------------------------------------------------- accessors

  /** The bytes holding entry `index` and where in them it starts. Throws when its page is not resident (a caller that did not pin). */
  private locate(index: number): Uint8Array {
    if (this.whole) return this.whole;
    const page = this.pages.get(Math.floor(index / this.pageEntries));
    if (!page) throw new Error(`BAT entry ${index} used without its page resident`);
    return page.bytes;
  }

  private offsetIn(index: number): number {
    return this.whole ? index * BAT_ENTRY_SIZE : (index % this.pageEntries) * BAT_ENTRY_SIZE;
  }

  private lo(index: number): number {
    const b = this.locate(index);
    const at = this.offsetIn(index);
    return (b[at]! | (b[at + 1]! << 8) | (b[at + 2]! << 16) | (b[at + 3]! << 24)) >>> 0;
  }

  private hi(index: number): number {
    const b = this.locate(index);
    const at = this.offsetIn(index) + 4;
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

  /** Runs `fn` with the entries of blocks [first, last] pinned (see `pinBlocks`). */
  async withBlocks<T>(first: number, last: number, fn: () => T | Promise<T>): Promise<T> {
    const release = await this.pinBlocks(first, last);
    try {
      return await fn();
    } finally {
      release();
    }
  }

  /** `blockOffset` for a caller that has not pinned the block's entry. */
  blockOffsetOf(block: number): Promise<number> {
    return this.withBlocks(block, block, () => this.blockOffset(block));
  }

  sectorBitmapState(chunk: number): number {
    return this.entryState(sectorBitmapEntryIndex(chunk, this.geometry.chunkRatio));
  }

  sectorBitmapOffset(chunk: number): number {
    return this.entryOffset(sectorBitmapEntryIndex(chunk, this.geometry.chunkRatio));
  }

  /** Changes entry `index` in memory; its page stays resident until `clean` (after the log carried it). */
  setEntry(index: number, state: number, fileOffset: number): void {
    if (this.whole) {
      encodeBatEntry(this.whole, index, state, fileOffset);
      return;
    }
    const p = Math.floor(index / this.pageEntries);
    const page = this.pages.get(p);
    if (!page) throw new Error(`BAT entry ${index} changed without its page resident`);
    encodeBatEntry(page.bytes, index % this.pageEntries, state, fileOffset);
    page.dirty = true;
  }

  setBlock(block: number, state: number, fileOffset: number): number {
    const index = payloadEntryIndex(block, this.geometry.chunkRatio);
    this.setEntry(index, state, fileOffset);
    return index;
  }

  /** A copy of entry `index`'s 8 bytes as they are in memory. */
  entryBytes(index: number): Uint8Array {
    const at = this.offsetIn(index);
    return this.locate(index).slice(at, at + BAT_ENTRY_SIZE);
  }

  /** A copy of the BAT's 4 KiB sector `sector` as it is in memory (what the log carries). */
  sectorBytes(sector: number): Uint8Array {
    const index = (sector * LOG_SECTOR_SIZE) / BAT_ENTRY_SIZE;
    const bytes = this.locate(index);
    const at = this.offsetIn(index);
    return bytes.slice(at, at + LOG_SECTOR_SIZE);
  }

  /** The log has carried every change: dirty pages become ordinary (evictable) ones. */
  clean(): void {
    for (const page of this.pages.values()) page.dirty = false;
    this.evict();
  }

  /**
   * Every entry in order, a page at a time (pinned while it is visited), for scans that must see the
   * whole table in bounded memory: `visit(first, end)` gets each page's entry range.
   */
  async forEachPage(visit: (first: number, end: number, words: Uint32Array | null) => void | Promise<void>): Promise<void> {
    const count = this.entryCount;
    const step = this.whole ? count : this.pageEntries;
    for (let first = 0; first < count; first += step) {
      const end = Math.min(count, first + step);
      const p = Math.floor(first / this.pageEntries);
      const wasResident = this.whole !== null || this.pages.has(p);
      const release = await this.pin(first, end - 1);
      try {
        await visit(first, end, this.words(first));
      } finally {
        release();
        // A page read only for this walk leaves at once (the walk will not come back to it): a scan
        // keeps one page in memory, not the cache's worth.
        const page = this.pages.get(p);
        if (!wasResident && page && page.pins === 0 && !page.dirty) {
          this.pages.delete(p);
          this.drop(page.bytes);
        }
      }
    }
  }

  /**
   * The entry words (two per entry, little-endian u32: low then high) of the page holding `index`, from
   * that page's first entry, for scans that skip runs of equal entries; null where no aligned view
   * exists. The page must be pinned.
   */
  words(index: number): Uint32Array | null {
    const bytes = this.locate(index);
    if (bytes.byteOffset % 4 !== 0 || !littleEndian) return null;
    return new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length >>> 2);
  }

  /** Index of entry `index` in its page's `words` (times two: the low word). */
  wordIndex(index: number): number {
    return this.whole ? index * 2 : (index % this.pageEntries) * 2;
  }

  /**
   * How many payload blocks from `block` (at most `max`) have exactly the entry `block` has, their
   * entries resident: a walk passes a run of equal unallocated blocks in one step.
   */
  uniformRun(block: number, max: number): number {
    const { chunkRatio } = this.geometry;
    let index = payloadEntryIndex(block, chunkRatio);
    const words = this.words(index);
    if (!words) return 1;
    let at = this.wordIndex(index);
    const lo = words[at]!;
    const hi = words[at + 1]!;
    if (lo === 0 && hi === 0) {
      // All-zero entries (sector bitmap entries in between are zero too in such a run): count the
      // payload blocks up to the first entry that is not, in this page, then go on in the next.
      const pageFirst = index - at / 2;
      const endEntry = pageFirst + words.length / 2;
      const stop = firstNonZeroEntry(words, at / 2, words.length / 2) + pageFirst;
      const blocks = stop - Math.floor(stop / (chunkRatio + 1)) - block;
      if (blocks >= max) return max;
      if (stop < endEntry || !this.resident(endEntry, endEntry)) return Math.max(1, blocks);
      const nextBlock = block + blocks;
      return blocks + (this.lo(payloadEntryIndex(nextBlock, chunkRatio)) === 0 && this.hi(payloadEntryIndex(nextBlock, chunkRatio)) === 0 ? this.uniformRun(nextBlock, max - blocks) : 0);
    }
    let n = 1;
    let inChunk = block % chunkRatio;
    while (n < max) {
      // The next payload entry: skip the sector bitmap entry that ends each chunk.
      inChunk++;
      index++;
      at += 2;
      if (inChunk === chunkRatio) {
        inChunk = 0;
        index++;
        at += 2;
      }
      if (at >= words.length) {
        // The next page: still resident (pinned by the walk) or the run ends here.
        if (!this.resident(index, index)) break;
        return n + (this.lo(index) === lo && this.hi(index) === hi ? this.uniformRun(index - Math.floor(index / (chunkRatio + 1)), max - n) : 0);
      }
      if (words[at] !== lo || words[at + 1] !== hi) break;
      n++;
    }
    return n;
  }


  // ----------------------------------------------------------------------------------- checking

  /**
   * Checks every entry (§7.2, §7.3, §9 rule 12): legal state for the disk type, zero reserved bits,
   * present blocks after the header section, inside the file and overlapping neither each other nor
   * `structures`. Returns warnings for tolerated oddities and every byte range in use (structures and
   * blocks); throws BAD_BAT or OVERLAP at the first problem.
   */
  async validate(options: BatCheckOptions): Promise<{ warnings: string[]; used: Range[]; allocatedBlocks: number }> {
    const inspected = await this.inspect(options);
    const first = inspected.problems[0];
    if (first) throw new VhdxError(first.code, first.message, { file: options.file, offset: first.entryOffset });
    return inspected;
  }

  /**
   * Like `validate`, but every problem is collected instead of thrown (check and repair need them all).
   * An entry with a problem is left out of `used`; where two blocks share space, the one listed first
   * in the sweep (lower file offset, then lower block number) keeps it and the other is the problem.
   * One pass over the pages in order: memory grows with the blocks present, not with the table.
   */
  async inspect(options: BatCheckOptions): Promise<{ warnings: string[]; used: Range[]; problems: BatProblem[]; allocatedBlocks: number }> {
    const { chunkRatio, payloadBlocks, sectorBitmapBlocks } = this.geometry;
    const blockWarnings: string[] = [];
    const bitmapWarnings: string[] = [];
    const blockProblems: BatProblem[] = [];
    const bitmapProblems: BatProblem[] = [];
    const blocks: Range[] = [];
    const take = (verdict: Verdict, problems: BatProblem[], warnings: string[]): void => {
      if (verdict.problem) problems.push(verdict.problem);
      if (verdict.warning) warnings.push(verdict.warning);
      if (verdict.range) blocks.push(verdict.range);
    };
    // Partially present blocks of the current chunk, judged when its sector bitmap entry (after them) is seen.
    let waiting: { block: number; index: number; verdict: Verdict }[] = [];
    const settle = (sbPresent: boolean): void => {
      for (const w of waiting) {
        if (sbPresent) take(w.verdict, blockProblems, blockWarnings);
        else blockProblems.push(problemOf(options, 'illegal-state', `BAT entry ${w.index} (block ${w.block}) is partially present but its chunk's sector bitmap is not`, w.index, { block: w.block }));
      }
      waiting = [];
    };
    await this.forEachPage((first, end, words) => {
      const shift = words ? this.wordIndex(first) / 2 - first : 0;
      for (let index = first; index < end; index++) {
        // Runs of all-zero entries (not present, offset 0) need no judgement, unless partially present
        // blocks wait for their chunk's sector bitmap entry.
        if (words && waiting.length === 0) index = firstNonZeroEntry(words, index + shift, end + shift) - shift;
        if (index >= end) break;
        if (isSectorBitmapEntryIndex(index, chunkRatio)) {
          const chunk = (index + 1) / (chunkRatio + 1) - 1;
          if (chunk >= sectorBitmapBlocks) continue;
          const state = this.entryState(index);
          take(judgeBitmapEntry(this, options, index, chunk, state), bitmapProblems, bitmapWarnings);
          settle(state === SB_BLOCK_PRESENT);
          continue;
        }
        const block = index - Math.floor(index / (chunkRatio + 1));
        if (block >= payloadBlocks) continue;
        const state = this.entryState(index);
        if (state !== PAYLOAD_BLOCK_FULLY_PRESENT && state !== PAYLOAD_BLOCK_PARTIALLY_PRESENT && state !== 4) continue;
        const verdict = judgeBlockEntry(this, options, index, block, state);
        // As before the scan was streamed: a partially present block whose bitmap is absent is reported
        // as that, whatever else is wrong with it.
        if (state === PAYLOAD_BLOCK_PARTIALLY_PRESENT && options.hasParent) waiting.push({ block, index, verdict });
        else take(verdict, blockProblems, blockWarnings);
      }
      options.onProgress?.(end / this.entryCount);
    });
    settle(false); // a BAT that ends before the chunk's sector bitmap entry
    blockProblems.sort((a, b) => a.block! - b.block!);
    // One sweep over the blocks in file order: a block that overlaps a structure (there are few), or
    // that starts before the end of the furthest-reaching block kept so far.
    blocks.sort((a, b) => a.start - b.start || (a.block ?? a.chunk ?? 0) - (b.block ?? b.chunk ?? 0));
    const used: Range[] = [...options.structures];
    const overlapProblems: BatProblem[] = [];
    let widest: Range | undefined;
    let allocatedBlocks = 0;
    for (const r of blocks) {
      const structure = options.structures.find((s) => s.start < r.end && r.start < s.end);
      if (structure) {
        overlapProblems.push(problemOf(options, 'overlaps-structure', `${r.what} [${r.start}, ${r.end}) overlaps the ${structure.what} [${structure.start}, ${structure.end})`, r.index!, pick(r)));
      } else if (widest && r.start < widest.end) {
        overlapProblems.push(problemOf(options, 'overlaps-block', `${r.what} [${r.start}, ${r.end}) overlaps ${widest.what} [${widest.start}, ${widest.end})`, r.index!, { ...pick(r), sharedWith: widest.block ?? widest.chunk! }));
      } else {
        used.push(r);
        widest = r;
        if (r.block !== undefined) allocatedBlocks++;
      }
    }
    return { warnings: [...blockWarnings, ...bitmapWarnings], used, problems: [...blockProblems, ...bitmapProblems, ...overlapProblems], allocatedBlocks };
  }
}

const noop = (): void => undefined;

/**
 * The first entry at or after `from` (entry positions in `words`, two words each) that is not all
 * zeros, or `to`: eight words at a time while they are zero (a mostly empty table is mostly that).
 */
export function firstNonZeroEntry(words: Uint32Array, from: number, to: number): number {
  let e = from;
  while (e < to && (e & 3) !== 0) {
    if ((words[2 * e]! | words[2 * e + 1]!) !== 0) return e;
    e++;
  }
  for (; e + 4 <= to; e += 4) {
    const w = 2 * e;
    if ((words[w]! | words[w + 1]! | words[w + 2]! | words[w + 3]! | words[w + 4]! | words[w + 5]! | words[w + 6]! | words[w + 7]!) !== 0) break;
  }
  for (; e < to; e++) if ((words[2 * e]! | words[2 * e + 1]!) !== 0) return e;
  return to;
}
const littleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

export interface BatCheckOptions {
  hasParent: boolean;
  fileSize: number;
  structures: Range[];
  file: string;
  batOffset: number;
  /** Told the fraction of the table scanned so far (0 to 1) after each page of a whole-table scan. */
  onProgress?: (fraction: number) => void;
}

/**
 * The check a lazily read table makes of each page as it arrives: every entry judged on its own (state,
 * offset inside the file, not in a structure), the first problem thrown as the open would have thrown
 * it, and tolerated oddities added to `warnings`. Blocks overlapping each other need the whole table:
 * writable opens and check scan for them.
 */
export function pageCheck(options: BatCheckOptions, warnings: string[]): PageCheck {
  return (bat, first, end) => {
    const { chunkRatio, payloadBlocks, sectorBitmapBlocks } = bat.geometry;
    const words = bat.words(first);
    const shift = words ? bat.wordIndex(first) / 2 - first : 0; // entry position in `words` of entry index i: i + shift
    for (let index = first; index < end; index++) {
      // Runs of all-zero entries (not present, nothing to judge) are passed over at once.
      if (words) index = firstNonZeroEntry(words, index + shift, end + shift) - shift;
      if (index >= end) break;
      let verdict: Verdict;
      if (isSectorBitmapEntryIndex(index, chunkRatio)) {
        const chunk = (index + 1) / (chunkRatio + 1) - 1;
        if (chunk >= sectorBitmapBlocks) continue;
        verdict = judgeBitmapEntry(bat, options, index, chunk, bat.entryState(index));
      } else {
        const block = index - Math.floor(index / (chunkRatio + 1));
        const state = bat.entryState(index);
        if (block >= payloadBlocks || (state !== PAYLOAD_BLOCK_FULLY_PRESENT && state !== PAYLOAD_BLOCK_PARTIALLY_PRESENT && state !== 4)) continue;
        verdict = judgeBlockEntry(bat, options, index, block, state);
      }
      if (verdict.problem) throw new VhdxError(verdict.problem.code, verdict.problem.message, { file: options.file, offset: verdict.problem.entryOffset });
      if (verdict.range) {
        const structure = options.structures.find((s) => s.start < verdict.range!.end && verdict.range!.start < s.end);
        if (structure) {
          const r = verdict.range;
          throw new VhdxError('OVERLAP', `${r.what} [${r.start}, ${r.end}) overlaps the ${structure.what} [${structure.start}, ${structure.end})`, { file: options.file, offset: options.batOffset + index * BAT_ENTRY_SIZE });
        }
      }
      if (verdict.warning) warnings.push(verdict.warning);
    }
  };
}

interface Verdict {
  problem?: BatProblem;
  warning?: string;
  range: Range | null;
}

/** A payload entry whose state is present (6 or 7) or reserved (4), on its own. */
function judgeBlockEntry(bat: BatTable, options: BatCheckOptions, index: number, block: number, state: number): Verdict {
  const { blockSize, virtualDiskSize } = bat.geometry;
  const fail = (kind: BatProblemKind, message: string): Verdict => ({ problem: problemOf(options, kind, message, index, { block }), range: null });
  if (state === 4) return fail('illegal-state', `BAT entry ${index} (block ${block}) has reserved state 4`);
  if (state === PAYLOAD_BLOCK_PARTIALLY_PRESENT && !options.hasParent) {
    return fail('illegal-state', `BAT entry ${index} (block ${block}) is partially present in a disk without a parent`);
  }
  const offset = bat.entryOffset(index);
  if (offset < MiB) return fail('in-header-section', `BAT entry ${index} (block ${block}) points into the header section (offset ${offset})`);
  // QEMU's fixed images may end inside the last block: only the part that holds virtual data must exist (§11 pitfall 3).
  const needed = Math.min(blockSize, virtualDiskSize - block * blockSize);
  if (offset + needed > options.fileSize) {
    return fail(offset < options.fileSize ? 'cut-short' : 'past-eof', `BAT entry ${index} (block ${block}) points past the end of the file (offset ${offset}, file size ${options.fileSize})`);
  }
  const verdict: Verdict = { range: { start: offset, end: offset + blockSize, what: `block ${block}`, block, index } };
  if (offset + blockSize > options.fileSize) verdict.warning = `block ${block} at file offset ${offset} is cut short by the end of the file; its missing tail reads as zeros`;
  return verdict;
}

/** A sector bitmap entry, on its own. */
function judgeBitmapEntry(bat: BatTable, options: BatCheckOptions, index: number, chunk: number, state: number): Verdict {
  if (state === SB_BLOCK_NOT_PRESENT) return { range: null };
  if (state !== SB_BLOCK_PRESENT) return { problem: problemOf(options, 'bad-sector-bitmap', `sector bitmap entry ${index} has illegal state ${state}`, index, { chunk }), range: null };
  // Seen in the wild by VirtualBox; harmless because nothing reads it in a disk without a parent.
  if (!options.hasParent) return { warning: `sector bitmap entry ${index} is marked present in a disk without a parent; ignored`, range: null };
  const offset = bat.entryOffset(index);
  if (offset < MiB || offset + SECTOR_BITMAP_BLOCK_SIZE > options.fileSize) {
    return { problem: problemOf(options, 'bad-sector-bitmap', `sector bitmap entry ${index} points outside the file (offset ${offset})`, index, { chunk }), range: null };
  }
  return { range: { start: offset, end: offset + SECTOR_BITMAP_BLOCK_SIZE, what: `sector bitmap ${chunk}`, chunk, index } };
}

function problemOf(options: BatCheckOptions, kind: BatProblemKind, message: string, index: number, extra: { block?: number; chunk?: number; sharedWith?: number }): BatProblem {
  const code = kind === 'overlaps-block' || kind === 'overlaps-structure' ? 'OVERLAP' : 'BAD_BAT';
  return { kind, code, message, entryIndex: index, entryOffset: options.batOffset + index * BAT_ENTRY_SIZE, ...extra };
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
