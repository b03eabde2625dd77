/** Public API of the vhdx library. */
export { VhdxError, isVhdxError, type VhdxErrorCode } from './format/errors.js';
export type { Backend } from './io/backend.js';
export { MemoryBackend } from './io/memory.js';
export { NodeFileBackend, type NodeFileOptions } from './io/node-file.js';
export { PowerLossBackend, PowerCut, type CrashModel } from './io/power-loss.js';
export { createReadStream } from './io/node-stream.js';
export { VhdxImage, type ImageInfo, type Extent, type ExtentKind, type ImageType } from './image/image.js';
export type { OpenOptions, LogState } from './image/open.js';
export { guidFromString, guidToString, type Guid } from './format/guid.js';
export { create, type CreateOptions } from './ops/create.js';
export type { Layout } from './ops/layout.js';
export { convertToRaw, type RawOutput, type ConvertOptions } from './ops/convert.js';
export { convertToVhdx, type ConvertToVhdxOptions } from './ops/convert-to-vhdx.js';
export { compareDisks, type CompareOptions, type CompareResult } from './ops/compare.js';
export { rawSource, vhdxSource, streamSource, type DiskSource } from './ops/source.js';
export { check, type CheckReport, type CheckOptions, type Finding, type FindingCode, type Repair, type Severity } from './ops/check.js';
export { buildImage, type BuildSpec } from './ops/build-image.js';
export { openImage, attachParents, createChild, locateParent, MAX_CHAIN_DEPTH, type OpenImageOptions } from './node.js';
