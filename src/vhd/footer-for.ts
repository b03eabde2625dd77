/**
 * The footer of a fixed VHD made from a source disk: one rule for every writer of VHD files (convert,
 * and uploads that must produce the same bytes), so the same source and options always give the same
 * footer.
 */
import { VhdxError } from '../format/errors.js';
import type { Guid } from '../format/guid.js';
import { azureSize, newVhdFooter, type VhdFooter } from './footer.js';

/** Where a disk came from, when that gives it an identity worth keeping. */
export interface DiskIdentity {
  /** `vhdx`: the Virtual Disk ID metadata item; `vhd`: the footer's Unique Id. */
  format: 'vhdx' | 'vhd';
  id: Guid;
}

/** What the footer rules need to know of a source: its size and, for VHDX and VHD, its identity. */
export interface VhdFooterSource {
  readonly size: number;
  readonly identity?: DiskIdentity | undefined;
}

export interface VhdFooterOptions {
  /** Round the virtual size up to a whole MiB, as Azure requires (the padding reads as zeros). */
  azure?: boolean;
  /** `fixed` (default) or `dynamic` (its dynamic header right after the footer copy, at 512). Azure takes fixed only. */
  type?: 'fixed' | 'dynamic';
  /** The footer's timestamp (default: now). Give a fixed time for reproducible output. */
  time?: Date;
}

/**
 * The footer of a fixed (or dynamic) VHD holding `source`: the size rounded up to a whole sector (to a
 * whole MiB with `azure`), the Unique Id kept from a VHDX (its Virtual Disk ID) or VHD source and
 * random for anything else, creator `vhdx`, timestamp `time`.
 */
export function vhdFooterFor(source: VhdFooterSource, options: VhdFooterOptions = {}): VhdFooter {
  const type = options.type ?? 'fixed';
  if (options.azure && type !== 'fixed') throw new VhdxError('INVALID_ARGUMENT', 'Azure takes fixed VHDs only');
  const sectors = Math.ceil(source.size / 512) * 512;
  const size = options.azure ? azureSize(sectors) : sectors;
  return newVhdFooter(type, size, {
    ...(source.identity ? { uniqueId: new Uint8Array(source.identity.id) } : {}),
    ...(options.time ? { time: options.time } : {}),
  });
}
