/** Opening an image by path with the Node backend: the common case for programs and the CLI. */
import { NodeFileBackend } from './io/node-file.js';
import { VhdxImage } from './image/image.js';
import type { OpenOptions } from './image/open.js';

/** Opens `path` read-only unless `readOnly: false` is given (then it takes the write lock). */
export async function openImage(path: string, options: OpenOptions = {}): Promise<VhdxImage> {
  const readOnly = options.readOnly ?? true;
  const backend = await NodeFileBackend.open(path, { readOnly });
  try {
    return await VhdxImage.open(backend, { ...options, readOnly });
  } catch (error) {
    await backend.close();
    throw error;
  }
}
