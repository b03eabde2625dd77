/**
 * A read-only backend over a `Blob` (a browser `File` is one; Node 20 has `Blob` too). Bytes are read
 * lazily with `blob.slice(...).arrayBuffer()`, so an image of any size is never loaded whole: only the
 * pieces a read touches are. The library issues many small reads (headers, region tables, BAT sectors,
 * a sector at a time), so aligned pieces are kept in a small least-recently-used cache (`PieceCache`,
 * shared with the HTTP backend); reads spanning many pieces bypass it. No Node module and no Node
 * global: this runs in a browser.
 */
import { VhdxError } from '../format/errors.js';
import { CachedReadOnlyBackend, PieceCache } from './piece-cache.js';

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

export class BlobBackend extends CachedReadOnlyBackend {
  readonly name: string;
  /** Reads of the blob itself, for tests and diagnostics (`hits`: reads the cache answered). */
  readonly stats = { hits: 0, blobReads: 0, blobBytes: 0 };

  constructor(
    private readonly blob: BlobLike,
    options: BlobBackendOptions = {},
  ) {
    super('a Blob');
    const fileName: unknown = blob.name;
    this.name = options.name ?? (typeof fileName === 'string' && fileName !== '' ? fileName : 'blob');
    this.cache = new PieceCache((target, start) => this.slice(target, start), blob.size, {
      pieceSize: options.pieceSize ?? 1024 * 1024,
      cacheBytes: options.cacheBytes ?? 16 * 1024 * 1024,
    });
  }

  async size(): Promise<number> {
    return this.blob.size;
  }

  private async slice(target: Uint8Array, start: number): Promise<void> {
    const end = start + target.length;
    this.stats.blobReads++;
    this.stats.blobBytes += target.length;
    let bytes: ArrayBuffer;
    try {
      bytes = await this.blob.slice(start, end).arrayBuffer();
    } catch (error) {
      // A File changed or removed since it was chosen cannot be read any more (NotReadableError).
      const reason = error instanceof Error ? error.message : String(error);
      throw new VhdxError('IO', `cannot read bytes ${start}-${end} of the file: ${reason}`, { file: this.name, offset: start, cause: error });
    }
    if (bytes.byteLength !== target.length) {
      throw new VhdxError('IO', `reading bytes ${start}-${end} of the file gave ${bytes.byteLength} bytes`, { file: this.name, offset: start });
    }
    target.set(new Uint8Array(bytes));
  }
}
