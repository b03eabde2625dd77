/**
 * A file served over HTTP, read lazily with Range requests (as `vhdx web FILE` serves it at /image):
 * it behaves as a Blob for `BlobBackend`, whose cache sits on top. A server that ignores Range (it
 * would send the whole file) is refused rather than downloaded.
 */
import type { BlobLike } from '../src/io/blob.js';
import { VhdxError } from '../src/format/errors.js';

export class HttpRangeFile implements BlobLike {
  private constructor(
    private readonly url: string,
    readonly name: string,
    readonly size: number,
  ) {}

  /** Learns the size from a one-byte Range request (its Content-Range), checking ranges are supported. */
  static async open(url: string, name: string): Promise<HttpRangeFile> {
    const controller = new AbortController();
    const response = await fetch(url, { headers: { Range: 'bytes=0-0' }, cache: 'no-store', signal: controller.signal });
    if (response.status !== 206) {
      controller.abort();
      throw new VhdxError('IO', `${url}: the server answered ${response.status} ${response.statusText} to a range request (it must support HTTP Range)`, { file: name });
    }
    const total = /\/(\d+)\s*$/.exec(response.headers.get('Content-Range') ?? '')?.[1];
    await response.arrayBuffer();
    if (total === undefined) throw new VhdxError('IO', `${url}: no file size in the Content-Range header`, { file: name });
    return new HttpRangeFile(url, name, Number(total));
  }

  slice(start: number, end: number): { arrayBuffer(): Promise<ArrayBuffer> } {
    return { arrayBuffer: () => this.fetchRange(start, Math.min(end, this.size)) };
  }

  private async fetchRange(start: number, end: number): Promise<ArrayBuffer> {
    if (end <= start) return new ArrayBuffer(0);
    const response = await fetch(this.url, { headers: { Range: `bytes=${start}-${end - 1}` }, cache: 'no-store' });
    const range = /^bytes (\d+)-(\d+)\//.exec(response.headers.get('Content-Range') ?? '');
    if (response.status !== 206 || !range || Number(range[1]) !== start || Number(range[2]) !== end - 1) {
      throw new Error(`range request for bytes ${start}-${end - 1} answered ${response.status} ${response.headers.get('Content-Range') ?? ''}`);
    }
    const body = await response.arrayBuffer();
    if (body.byteLength !== end - start) throw new Error(`range request for ${end - start} bytes returned ${body.byteLength}`);
    return body;
  }
}
