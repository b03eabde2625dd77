/**
 * A read-only backend over a `Blob` (a browser `File` is one; Node 20 has `Blob` too). Bytes are read
 * lazily with `blob.slice(...).arrayBuffer()`, so an image of any size is never loaded whole: only the
 * pieces a read touches are. The library issues many small reads (headers, region tables, BAT sectors,
 * a sector at a time), so aligned pieces are kept in a small least-recently-used cache; reads spanning
 * many pieces bypass it. No Node module and no Node global: this runs in a browser.
 */
import { VhdxError } from '../format/errors.js';
import type { Backend } from './backend.js';

/**
 * What the backend needs of a Blob: its size and lazy slices. A `Blob` or `File` is one; so is any
 * object that fetches byte ranges on demand (an HTTP Range reader, for instance).
 */
export interface BlobLike {
  readonly size: number;
  readonly name?: string;
  slice(start: number, end: number): { arrayBuffer(): Promise<ArrayBuffer> };
}

export interface BlobBackendOptions {
  /** A name for messages (default: the File's name, else `blob`). */
  name?: string;
  /** Size of a cached piece, a power of two (default 1 MiB). */
  pieceSize?: number;
  /** Most bytes kept in the cache (default 16 MiB; 0 disables it). */
  cacheBytes?: number;
}

/** A read spanning more pieces than this is served straight from the blob, not through the cache. */
const MAX_CACHED_SPAN = 4;

export class BlobBackend implements Backend {
  readonly name: string;
  readonly readOnly = true;
  private readonly pieceSize: number;
  private readonly maxPieces: number;
  /** Piece index -> its bytes (or the read in flight); Map order is least recently used first. */
  private readonly pieces = new Map<number, Promise<Uint8Array>>();
  private closed = false;
  /** Reads served from the cache and reads of the blob itself, for tests and diagnostics. */
  readonly stats = { hits: 0, blobReads: 0, blobBytes: 0 };

  constructor(
    private readonly blob: BlobLike,
    options: BlobBackendOptions = {},
  ) {
    const fileName: unknown = blob.name;
    this.name = options.name ?? (typeof fileName === 'string' && fileName !== '' ? fileName : 'blob');
    const pieceSize = options.pieceSize ?? 1024 * 1024;
    if (!Number.isSafeInteger(pieceSize) || pieceSize < 512 || (pieceSize & (pieceSize - 1)) !== 0) {
      throw new VhdxError('INVALID_ARGUMENT', `piece size ${pieceSize} is not a power of two of at least 512`);
    }
    this.pieceSize = pieceSize;
    this.maxPieces = Math.floor((options.cacheBytes ?? 16 * 1024 * 1024) / pieceSize);
  }

  async read(target: Uint8Array, position: number): Promise<number> {
    this.assertOpen();
    if (!Number.isSafeInteger(position) || position < 0) {
      throw new VhdxError('INVALID_ARGUMENT', `bad read position ${position}`, { file: this.name });
    }
    const end = Math.min(position + target.length, this.blob.size);
    if (end <= position) return 0;
    const first = Math.floor(position / this.pieceSize);
    const last = Math.floor((end - 1) / this.pieceSize);
    if (this.maxPieces === 0 || last - first + 1 > MAX_CACHED_SPAN) {
      target.set(await this.slice(position, end), 0);
      return end - position;
    }
    // Ask for every piece at once (a read across a boundary waits for both reads together).
    const pieces = [];
    for (let p = first; p <= last; p++) pieces.push(this.piece(p));
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

  async write(_data: Uint8Array, _position: number): Promise<void> {
    throw new VhdxError('READ_ONLY', 'a Blob is read-only', { file: this.name });
  }

  async truncate(_size: number): Promise<void> {
    throw new VhdxError('READ_ONLY', 'a Blob is read-only', { file: this.name });
  }

  async flush(): Promise<void> {}

  async size(): Promise<number> {
    return this.blob.size;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.pieces.clear();
  }

  /** Piece `index`, from the cache (moved to most recently used) or read and cached. */
  private piece(index: number): Promise<Uint8Array> {
    const cached = this.pieces.get(index);
    if (cached) {
      this.stats.hits++;
      this.pieces.delete(index);
      this.pieces.set(index, cached);
      return cached;
    }
    const start = index * this.pieceSize;
    const promise = this.slice(start, Math.min(start + this.pieceSize, this.blob.size));
    this.pieces.set(index, promise);
    // A failed read is not kept: the next read tries again.
    promise.catch(() => {
      if (this.pieces.get(index) === promise) this.pieces.delete(index);
    });
    while (this.pieces.size > this.maxPieces) this.pieces.delete(this.pieces.keys().next().value!);
    return promise;
  }

  private async slice(start: number, end: number): Promise<Uint8Array> {
    this.stats.blobReads++;
    this.stats.blobBytes += end - start;
    try {
      return new Uint8Array(await this.blob.slice(start, end).arrayBuffer());
    } catch (error) {
      // A File changed or removed since it was chosen cannot be read any more (NotReadableError).
      const reason = error instanceof Error ? error.message : String(error);
      throw new VhdxError('IO', `cannot read bytes ${start}-${end} of the file: ${reason}`, { file: this.name, offset: start, cause: error });
    }
  }

  private assertOpen(): void {
    if (this.closed) throw new VhdxError('INVALID_ARGUMENT', 'backend is closed', { file: this.name });
  }
}
