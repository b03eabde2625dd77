/**
 * A least-recently-used cache of aligned pieces over a read-only source whose every read costs a round
 * trip (a Blob slice, an HTTP Range request). The library issues many small reads (headers, region
 * tables, BAT sectors, sector bitmaps), so each is widened to the aligned pieces around it and those
 * are kept; pieces missing side by side are fetched with one call, and a piece already being fetched
 * is shared by every read that needs it. A read spanning more than a few pieces (a bulk copy) goes
 * straight to the source for exactly its bytes: it neither fetches bytes nobody asked for nor evicts
 * the small structures the cache is for. No Node module: this runs in a browser.
 */
import { VhdxError } from '../format/errors.js';
import type { Backend } from './backend.js';

/** Fills all of `target` with the source's bytes from `start` (the range is always inside the source). */
export type FetchInto = (target: Uint8Array, start: number) => Promise<void>;

export interface PieceCacheOptions {
  /** Size of a cached piece, a power of two of at least 512. */
  pieceSize: number;
  /** Most bytes kept in the cache (0 disables it: every read goes to the source). */
  cacheBytes: number;
  /** A read spanning more pieces than this goes straight to the source (default 4). */
  maxCachedSpan?: number;
}

export class PieceCache {
  readonly pieceSize: number;
  private readonly maxPieces: number;
  private readonly maxCachedSpan: number;
  /** Piece index -> its bytes (or the fetch in flight); Map order is least recently used first. */
  private readonly pieces = new Map<number, Promise<Uint8Array>>();
  /** Reads answered from the cache (or a fetch in flight) without a call of their own. */
  readonly stats = { hits: 0 };

  constructor(
    private readonly fetchInto: FetchInto,
    /** The source's size in bytes; reads stop there. */
    readonly size: number,
    options: PieceCacheOptions,
  ) {
    const { pieceSize, cacheBytes } = options;
    if (!Number.isSafeInteger(pieceSize) || pieceSize < 512 || (pieceSize & (pieceSize - 1)) !== 0) {
      throw new VhdxError('INVALID_ARGUMENT', `piece size ${pieceSize} is not a power of two of at least 512`);
    }
    if (!Number.isSafeInteger(cacheBytes) || cacheBytes < 0) throw new VhdxError('INVALID_ARGUMENT', `cache size ${cacheBytes} is not a byte count`);
    this.pieceSize = pieceSize;
    this.maxPieces = Math.floor(cacheBytes / pieceSize);
    this.maxCachedSpan = Math.min(options.maxCachedSpan ?? 4, this.maxPieces);
  }

  /** Reads up to `target.length` bytes at `position` (fewer only at the end of the source); returns the count. */
  async read(target: Uint8Array, position: number): Promise<number> {
    const end = Math.min(position + target.length, this.size);
    if (end <= position) return 0;
    const first = Math.floor(position / this.pieceSize);
    const last = Math.floor((end - 1) / this.pieceSize);
    if (last - first + 1 > this.maxCachedSpan) {
      await this.fetchInto(target.subarray(0, end - position), position);
      return end - position;
    }
    const pieces = this.piecesFor(first, last);
    let done = 0;
    for (const [i, promise] of pieces.entries()) {
      const bytes = await promise;
      const pieceStart = (first + i) * this.pieceSize;
      const from = Math.max(position, pieceStart) - pieceStart;
      const to = Math.min(end, pieceStart + bytes.length) - pieceStart;
      target.set(bytes.subarray(from, to), done);
      done += to - from;
    }
    return done;
  }

  /** Puts bytes already fetched (a whole piece, or the source's short last one) into the cache. */
  prime(index: number, bytes: Uint8Array): void {
    this.remember(index, Promise.resolve(bytes));
  }

  clear(): void {
    this.pieces.clear();
  }

  /** Pieces first..last: cached ones touched, each run of missing ones fetched with one call. */
  private piecesFor(first: number, last: number): Promise<Uint8Array>[] {
    const out: Promise<Uint8Array>[] = [];
    let runStart = -1;
    const fetchRun = (from: number, to: number): void => {
      const start = from * this.pieceSize;
      const bytes = new Uint8Array(Math.min((to + 1) * this.pieceSize, this.size) - start);
      const run = this.fetchInto(bytes, start).then(() => bytes);
      for (let p = from; p <= to; p++) {
        const offset = (p - from) * this.pieceSize;
        const piece = run.then((b) => b.subarray(offset, Math.min(offset + this.pieceSize, b.length)));
        out[p - first] = piece;
        this.remember(p, piece);
      }
    };
    for (let p = first; p <= last; p++) {
      const cached = this.pieces.get(p);
      if (cached) {
        this.stats.hits++;
        this.pieces.delete(p);
        this.pieces.set(p, cached);
        out[p - first] = cached;
        if (runStart >= 0) fetchRun(runStart, p - 1);
        runStart = -1;
      } else if (runStart < 0) {
        runStart = p;
      }
    }
    if (runStart >= 0) fetchRun(runStart, last);
    return out;
  }

  private remember(index: number, piece: Promise<Uint8Array>): void {
    this.pieces.delete(index);
    this.pieces.set(index, piece);
    // A failed fetch is not kept: the next read tries again.
    piece.catch(() => {
      if (this.pieces.get(index) === piece) this.pieces.delete(index);
    });
    while (this.pieces.size > this.maxPieces) this.pieces.delete(this.pieces.keys().next().value!);
  }
}

/**
 * What a read-only backend over a `PieceCache` does the same whatever its source (a Blob, an HTTP
 * object): reads through the cache, refusals of every change, no flush, and a close that drops the
 * cache. A subclass gives its name, its size, the cache (once it knows the source's size) and what to
 * call itself in the refusal (`described`: "a Blob is read-only").
 */
export abstract class CachedReadOnlyBackend implements Backend {
  abstract readonly name: string;
  readonly readOnly = true;
  abstract readonly stats: { hits: number };
  protected cache: PieceCache | null = null;
  protected closed = false;

  constructor(private readonly described: string) {}

  abstract size(): Promise<number>;

  async read(target: Uint8Array, position: number): Promise<number> {
    if (this.closed) throw new VhdxError('INVALID_ARGUMENT', 'backend is closed', { file: this.name });
    if (!Number.isSafeInteger(position) || position < 0) {
      throw new VhdxError('INVALID_ARGUMENT', `bad read position ${position}`, { file: this.name });
    }
    const n = await this.cache!.read(target, position);
    this.stats.hits = this.cache!.stats.hits;
    return n;
  }

  async write(_data: Uint8Array, _position: number): Promise<void> {
    throw new VhdxError('READ_ONLY', `${this.described} is read-only`, { file: this.name });
  }

  async truncate(_size: number): Promise<void> {
    throw new VhdxError('READ_ONLY', `${this.described} is read-only`, { file: this.name });
  }

  async flush(): Promise<void> {}

  async close(): Promise<void> {
    this.closed = true;
    this.cache?.clear();
  }
}
