/**
 * The sector bitmap blocks of a differencing disk (§7.3, §7.7): 1 MiB each, one per chunk whose SB
 * entry is present, read when first needed into a small LRU cache. A bitmap the writer is changing is
 * held (`hold`) from before its first change until the log has carried it (`clean`), so a change can
 * never land in a copy that was dropped.
 */
import { SB_BLOCK_PRESENT, sectorBitmapEntryIndex } from '../format/bat.js';
import { SECTOR_BITMAP_BLOCK_SIZE } from '../format/constants.js';
import type { BatTable } from './bat-table.js';

export class SectorBitmaps {
  /** Least recently used first. */
  private readonly cache = new Map<number, { bytes: Uint8Array; held: boolean }>();

  constructor(
    private readonly bat: BatTable,
    /** False for a chunk whose SB entry check or repair found bad: it is treated as absent. */
    private readonly usable: (chunk: number) => boolean,
    private readonly read: (position: number, length: number) => Promise<Uint8Array>,
    /** Most bitmaps kept that nobody holds. */
    private readonly capacity: number,
  ) {}

  /** The chunk's bitmap, or null when its SB entry is not present. */
  async get(chunk: number): Promise<Uint8Array | null> {
    const hit = this.touch(chunk);
    if (hit) return hit;
    const index = sectorBitmapEntryIndex(chunk, this.bat.geometry.chunkRatio);
    const release = await this.bat.pin(index, index);
    let offset: number;
    try {
      if (!this.usable(chunk) || this.bat.sectorBitmapState(chunk) !== SB_BLOCK_PRESENT) return null;
      offset = this.bat.sectorBitmapOffset(chunk);
    } finally {
      release();
    }
    const bytes = await this.read(offset, SECTOR_BITMAP_BLOCK_SIZE);
    const raced = this.touch(chunk);
    if (raced) return raced;
    this.cache.set(chunk, { bytes, held: false });
    this.evict();
    return bytes;
  }

  /** The chunk's bitmap if it is in memory now (synchronous paths), else undefined. */
  peek(chunk: number): Uint8Array | undefined {
    return this.touch(chunk);
  }

  /** A bitmap block the writer just allocated (all zeros): held until `clean`. */
  add(chunk: number, bytes: Uint8Array): void {
    this.cache.delete(chunk);
    this.cache.set(chunk, { bytes, held: true });
  }

  /** Keeps the chunk's bitmap (in memory now: `get` it first) until `clean`: the writer is about to change it. */
  hold(chunk: number): void {
    const entry = this.cache.get(chunk);
    if (!entry) throw new Error(`sector bitmap ${chunk} held without being read`);
    entry.held = true;
  }

  /** The log has carried every change. */
  clean(): void {
    for (const entry of this.cache.values()) entry.held = false;
    this.evict();
  }

  private touch(chunk: number): Uint8Array | undefined {
    const entry = this.cache.get(chunk);
    if (!entry) return undefined;
    this.cache.delete(chunk);
    this.cache.set(chunk, entry);
    return entry.bytes;
  }

  private evict(): void {
    for (const [chunk, entry] of this.cache) {
      if (this.cache.size <= this.capacity) break;
      if (!entry.held) this.cache.delete(chunk);
    }
  }
}
