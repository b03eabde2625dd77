/**
 * The core of the vhdx library (`vhdx`): codecs, the backend contract and the backends that need no
 * operating system (memory, Blob, HTTP Range requests through `fetch`, the power-loss simulator),
 * images, and whole-image operations. No
 * module reachable from here imports `node:*` or uses a Node-only global (`test/layering.test.ts`), so
 * it bundles for a browser or a worker. Files, streams, parent chains found by path and the NBD server
 * are in the Node entry, `vhdx/node` (`src/node/index.ts`), which also re-exports all of this.
 */
export { VhdxError, isVhdxError, type VhdxErrorCode } from './format/errors.js';
export { writeZeros, withoutFlush, CACHE_MODES, type Backend, type CacheMode } from './io/backend.js';
export { MemoryBackend } from './io/memory.js';
export { BlobBackend } from './io/blob.js';
export { HttpBackend, redactUrl, isHttpUrl, type HttpBackendOptions, type HttpStats } from './io/http.js';
export { PowerLossBackend, PowerCut, type CrashModel } from './io/power-loss.js';
export { VhdxImage, type ImageInfo, type Extent, type ExtentKind, type ImageType, type PlannedRange } from './image/image.js';
export type { OpenOptions, LogState } from './image/open.js';
export { guidFromString, guidToString, type Guid } from './format/guid.js';
export { create, type CreateOptions } from './ops/create.js';
export type { Layout } from './ops/layout.js';
export { convertToRaw, type RawOutput, type ConvertOptions } from './ops/convert.js';
export { convertToVhdx, type ConvertToVhdxOptions } from './ops/convert-to-vhdx.js';
export { compareDisks, type CompareOptions, type CompareResult } from './ops/compare.js';
export { rawSource, vhdxSource, vhdSource, streamSource, type DiskSource } from './ops/source.js';
export { convertSourceToRaw, type CopySourceOptions } from './ops/convert-source.js';
export { convertToVhd, type ConvertToVhdOptions } from './ops/convert-to-vhd.js';
export { VhdImage, type VhdExtent, type VhdExtentKind, type VhdInfo, type VhdParentPath } from './vhd/image.js';
export { vhdFooterFor, type DiskIdentity, type VhdFooterSource, type VhdFooterOptions } from './vhd/footer-for.js';
export {
  decodeVhdFooter,
  encodeVhdFooter,
  newVhdFooter,
  chsGeometry,
  footerGeometry,
  VHD_MAX_GEOMETRY,
  azureSize,
  VHD_FOOTER_SIZE,
  type VhdFooter,
  type VhdDiskType,
  type ChsGeometry,
} from './vhd/footer.js';
export type { VhdDynamicHeader, VhdParentLocatorEntry } from './vhd/dynamic-header.js';
export { check, type CheckReport, type CheckOptions, type Finding, type FindingCode, type Repair, type Severity } from './ops/check.js';
export { checkVhd } from './ops/check-vhd.js';
export { mergeIntoParent, type MergeOptions, type MergeResult } from './ops/merge.js';
export { compact, type CompactOptions, type CompactReport, type CompactMode } from './ops/compact.js';
export { resize, type ResizeOptions, type ResizeReport } from './ops/resize.js';
