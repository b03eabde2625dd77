/** Opening an image by path with the Node backend: the common case for programs and the CLI. */
import { NodeFileBackend } from './io/node-file.js';
import { VhdxImage } from './image/image.js';

export async function openImage(path: string, options: { readOnly?: boolean } = {}): Promise<VhdxImage> {
  const readOnly = options.readOnly ?? true;
  const backend = await NodeFileBackend.open(path, { readOnly });
  try {
    return await VhdxImage.open(backend, { readOnly });
  } catch (error) {
    await backend.close();
    throw error;
  }
}
