/** Node.js stream adapters (kept out of the core so it also runs in a browser). */
import { Readable } from 'node:stream';
import type { VhdxImage } from '../image/image.js';

/** A Readable over the whole virtual disk (or a range), in chunks of `chunkSize` bytes. */
export function createReadStream(image: VhdxImage, options: { offset?: number; length?: number; chunkSize?: number } = {}): Readable {
  return Readable.from(image.chunks(options), { objectMode: false });
}
