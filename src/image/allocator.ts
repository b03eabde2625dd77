/**
 * Where new payload blocks go (format reference §9 rules 8 and 9): 1 MiB-aligned whole blocks, first
 * from space inside the file that nothing references (a preallocated fixed image made elsewhere, space
 * freed earlier), else at the end of the file. Space freed by a BAT change becomes reusable only after
 * that change is durable: `release` parks it until `commitReleases` is called after the flush.
 */
import { MiB } from '../format/bytes.js';
import type { Range } from './bat-table.js';

interface Span {
  start: number;
  end: number;
}

export class BlockAllocator {
  private free: Span[];
  private pending: Span[] = [];
  /** First byte past every structure and block; new space starts here. */
  private end: number;

  constructor(
    private readonly blockSize: number,
    used: Range[],
  ) {
    const sorted = used.filter((r) => r.end > r.start).sort((a, b) => a.start - b.start);
    this.free = [];
    let cursor = 0;
    for (const r of sorted) {
      if (r.start > cursor) this.addFree(this.free, cursor, r.start);
      cursor = Math.max(cursor, r.end);
    }
    // Past the last referenced byte everything is free, including any unreferenced tail of the file
    // (a fixed image preallocated elsewhere, trailing garbage): blocks simply go there in order.
    this.end = alignUp(Math.max(cursor, MiB));
  }

  /** File offset for a new block (or `length` bytes, a MiB multiple): the first free gap that holds it, else the end of the allocated area. */
  allocate(length = this.blockSize): number {
    for (let i = 0; i < this.free.length; i++) {
      const span = this.free[i]!;
      if (span.end - span.start >= length) {
        const offset = span.start;
        span.start += length;
        if (span.start >= span.end) this.free.splice(i, 1);
        return offset;
      }
    }
    const offset = this.end;
    this.end += length;
    return offset;
  }

  /** The first free gap that holds a block, without taking it. */
  lowestFree(): number | null {
    const span = this.free.find((s) => s.end - s.start >= this.blockSize);
    return span ? span.start : null;
  }

  /** Gives back space whose allocation never became visible (its write failed). */
  unallocate(offset: number, length = this.blockSize): void {
    this.addFree(this.free, offset, offset + length);
  }

  /** Space of a block whose BAT entry no longer points at it; reusable after the next durable flush. */
  release(offset: number, length = this.blockSize): void {
    this.pending.push({ start: offset, end: offset + length });
  }

  /** The freeing BAT changes are durable now: released space may be reused. */
  commitReleases(): void {
    for (const s of this.pending) this.addFree(this.free, s.start, s.end);
    this.pending = [];
  }

  /** End of the allocated area: the file must be at least this long. */
  get allocatedEnd(): number {
    return this.end;
  }

  /** Free bytes inside the allocated area (for reports). */
  get freeBytes(): number {
    return this.free.reduce((n, s) => n + (s.end - s.start), 0);
  }

  private addFree(list: Span[], start: number, end: number): void {
    const s = alignUp(start);
    const e = Math.floor(end / MiB) * MiB;
    if (e <= s) return;
    list.push({ start: s, end: e });
    list.sort((a, b) => a.start - b.start);
    for (let i = 1; i < list.length; ) {
      const prev = list[i - 1]!;
      const cur = list[i]!;
      if (cur.start <= prev.end) {
        prev.end = Math.max(prev.end, cur.end);
        list.splice(i, 1);
      } else {
        i++;
      }
    }
  }
}

function alignUp(n: number): number {
  return Math.ceil(n / MiB) * MiB;
}
