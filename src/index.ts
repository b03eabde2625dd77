/** Public API of the vhdx library. */
export { VhdxError, isVhdxError, type VhdxErrorCode } from './format/errors.js';
export type { Backend } from './io/backend.js';
export { MemoryBackend } from './io/memory.js';
export { NodeFileBackend } from './io/node-file.js';
export { createReadStream } from './io/node-stream.js';
export { VhdxImage, type ImageInfo, type Extent, type ExtentKind, type ImageType } from './image/image.js';
export type { OpenOptions, LogState } from './image/open.js';
export { convertToRaw, type RawOutput, type ConvertOptions } from './ops/convert.js';
export { buildImage, type BuildSpec } from './ops/build-image.js';
export { openImage } from './node.js';
