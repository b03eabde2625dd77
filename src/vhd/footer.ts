/**
 * The VHD (v1) hard disk footer: 512 bytes, big-endian, at the end of every VHD file (and, for
 * dynamic and differencing disks, copied at offset 0). Virtual Hard Disk Image Format Specification
 * (Microsoft, 2006), "Hard Disk Footer Format"; CHS geometry from its appendix.
 */
import { VhdxError } from '../format/errors.js';
import { hasSignature, MiB, roundUp, writeSignature } from '../format/bytes.js';
import { randomGuid, type Guid } from '../format/guid.js';

export const VHD_FOOTER_SIZE = 512;
export const VHD_FOOTER_COOKIE = 'conectix';
/** Features: bit 1 ("reserved") must always be set; bit 0 marks a temporary disk. */
export const VHD_FEATURES_RESERVED = 0x2;
export const VHD_FILE_FORMAT_VERSION = 0x0001_0000;
/** Data Offset of a fixed disk: no dynamic header. */
export const VHD_NO_DATA_OFFSET = 0xffff_ffff_ffff_ffffn;
/** Seconds from the Unix epoch to the VHD epoch, 2000-01-01T00:00:00Z. */
export const VHD_EPOCH_SECONDS = 946_684_800;
/** The largest size CHS geometry can describe: 65535 cylinders x 16 heads x 255 sectors x 512 bytes. */
export const VHD_MAX_CHS_SECTORS = 65535 * 16 * 255;
/** Azure accepts a fixed VHD whose virtual size is a whole number of MiB. */
export const AZURE_SIZE_UNIT = MiB;

export type VhdDiskType = 'fixed' | 'dynamic' | 'differencing';

const DISK_TYPE_CODES: Record<VhdDiskType, number> = { fixed: 2, dynamic: 3, differencing: 4 };

export interface ChsGeometry {
  cylinders: number;
  heads: number;
  sectorsPerTrack: number;
}

export interface VhdFooter {
  features: number;
  version: number;
  /** Offset of the dynamic disk header; null for a fixed disk (all ones on disk). */
  dataOffset: number | null;
  /** Seconds since 2000-01-01T00:00:00Z. */
  timestamp: number;
  /** Four ASCII characters, e.g. `vhdx`, `qemu`, `win `. */
  creatorApplication: string;
  creatorVersion: number;
  /** Four ASCII characters: `Wi2k` or `Mac `. */
  creatorHostOs: string;
  originalSize: number;
  /** The virtual size in bytes. */
  currentSize: number;
  geometry: ChsGeometry;
  diskType: VhdDiskType;
  uniqueId: Guid;
  savedState: boolean;
}

/** The CHS geometry the specification's appendix derives from a size (capped at its largest value). */
export function chsGeometry(size: number): ChsGeometry {
  const total = Math.min(Math.floor(size / 512), VHD_MAX_CHS_SECTORS);
  let sectorsPerTrack: number;
  let heads: number;
  let cylinderTimesHeads: number;
  if (total >= 65535 * 16 * 63) {
    sectorsPerTrack = 255;
    heads = 16;
    cylinderTimesHeads = Math.floor(total / sectorsPerTrack);
  } else {
    sectorsPerTrack = 17;
    cylinderTimesHeads = Math.floor(total / sectorsPerTrack);
    heads = Math.max(4, Math.floor((cylinderTimesHeads + 1023) / 1024));
    if (cylinderTimesHeads >= heads * 1024 || heads > 16) {
      sectorsPerTrack = 31;
      heads = 16;
      cylinderTimesHeads = Math.floor(total / sectorsPerTrack);
    }
    if (cylinderTimesHeads >= heads * 1024) {
      sectorsPerTrack = 63;
      heads = 16;
      cylinderTimesHeads = Math.floor(total / sectorsPerTrack);
    }
  }
  return { cylinders: Math.floor(cylinderTimesHeads / heads), heads, sectorsPerTrack };
}

/** The largest geometry (65535 cylinders, 16 heads, 255 sectors): "use Current Size", to readers that go by CHS. */
export const VHD_MAX_GEOMETRY: ChsGeometry = { cylinders: 65535, heads: 16, sectorsPerTrack: 255 };

/**
 * The geometry this library writes for `size`: the appendix's when it describes exactly `size`, else
 * the largest. A reader that takes the size from the geometry (QEMU, for creators it does not know)
 * would otherwise see a disk a little smaller than Current Size, and lose its last sectors (where a
 * GPT keeps its backup header); the largest geometry makes it use Current Size, as QEMU's own
 * `force_size` images and Azure's documented workflow do. Hyper-V, Azure and libvhdi read Current
 * Size whatever the geometry.
 */
export function footerGeometry(size: number): ChsGeometry {
  const chs = chsGeometry(size);
  return chs.cylinders * chs.heads * chs.sectorsPerTrack * 512 === size ? chs : { ...VHD_MAX_GEOMETRY };
}

/** The footer checksum: the one's complement of the sum of all bytes except the checksum field. */
export function vhdChecksum(bytes: Uint8Array, checksumOffset: number): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i++) if (i < checksumOffset || i >= checksumOffset + 4) sum += bytes[i]!;
  return ~sum >>> 0;
}

function ascii4(bytes: Uint8Array, offset: number): string {
  return String.fromCharCode(...bytes.subarray(offset, offset + 4));
}

function u64(dv: DataView, offset: number, what: string, file: string | undefined): number {
  const value = dv.getBigUint64(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new VhdxError('BAD_VHD', `VHD footer ${what} ${value} is out of range`, { file });
  return Number(value);
}

/**
 * Decodes a footer: the cookie and checksum are checked on the raw bytes, then every field. `file`
 * names the image in errors.
 */
export function decodeVhdFooter(bytes: Uint8Array, file?: string): VhdFooter {
  if (bytes.length < VHD_FOOTER_SIZE) throw new VhdxError('BAD_VHD', `VHD footer needs ${VHD_FOOTER_SIZE} bytes, got ${bytes.length}`, { file });
  const raw = bytes.subarray(0, VHD_FOOTER_SIZE);
  if (!hasSignature(raw, 0, VHD_FOOTER_COOKIE)) throw new VhdxError('BAD_VHD', `no VHD footer (cookie "${VHD_FOOTER_COOKIE}" missing)`, { file });
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const stored = dv.getUint32(64);
  const computed = vhdChecksum(raw, 64);
  if (stored !== computed) {
    throw new VhdxError('BAD_VHD', `VHD footer checksum 0x${stored.toString(16)} does not match its contents (0x${computed.toString(16)})`, { file });
  }
  const typeCode = dv.getUint32(60);
  const diskType = (Object.keys(DISK_TYPE_CODES) as VhdDiskType[]).find((t) => DISK_TYPE_CODES[t] === typeCode);
  if (!diskType) throw new VhdxError(typeCode === 0 || typeCode === 1 || typeCode === 5 || typeCode === 6 ? 'UNSUPPORTED' : 'BAD_VHD', `VHD disk type ${typeCode} is not fixed (2), dynamic (3) or differencing (4)`, { file });
  const rawDataOffset = dv.getBigUint64(16);
  const dataOffset = rawDataOffset === VHD_NO_DATA_OFFSET ? null : u64(dv, 16, 'data offset', file);
  if (diskType === 'fixed' && dataOffset !== null) throw new VhdxError('BAD_VHD', `fixed VHD footer has a data offset (${dataOffset})`, { file });
  if (diskType !== 'fixed' && dataOffset === null) throw new VhdxError('BAD_VHD', `${diskType} VHD footer has no data offset`, { file });
  const version = dv.getUint32(12);
  if (version >>> 16 !== 1) throw new VhdxError('UNSUPPORTED', `VHD file format version ${version >>> 16}.${version & 0xffff} is not supported (expected 1.x)`, { file });
  return {
    features: dv.getUint32(8),
    version,
    dataOffset,
    timestamp: dv.getUint32(24),
    creatorApplication: ascii4(raw, 28),
    creatorVersion: dv.getUint32(32),
    creatorHostOs: ascii4(raw, 36),
    originalSize: u64(dv, 40, 'original size', file),
    currentSize: u64(dv, 48, 'current size', file),
    geometry: { cylinders: dv.getUint16(56), heads: raw[58]!, sectorsPerTrack: raw[59]! },
    diskType,
    uniqueId: new Uint8Array(raw.subarray(68, 84)), // a copy, and a plain Uint8Array even from a Buffer
    savedState: raw[84] !== 0,
  };
}

/** Encodes a footer into 512 bytes, checksum computed. */
export function encodeVhdFooter(footer: VhdFooter): Uint8Array {
  const out = new Uint8Array(VHD_FOOTER_SIZE);
  const dv = new DataView(out.buffer);
  writeSignature(out, 0, VHD_FOOTER_COOKIE);
  dv.setUint32(8, footer.features);
  dv.setUint32(12, footer.version);
  dv.setBigUint64(16, footer.dataOffset === null ? VHD_NO_DATA_OFFSET : BigInt(footer.dataOffset));
  dv.setUint32(24, footer.timestamp);
  for (let i = 0; i < 4; i++) out[28 + i] = footer.creatorApplication.charCodeAt(i) & 0x7f;
  dv.setUint32(32, footer.creatorVersion);
  for (let i = 0; i < 4; i++) out[36 + i] = footer.creatorHostOs.charCodeAt(i) & 0x7f;
  dv.setBigUint64(40, BigInt(footer.originalSize));
  dv.setBigUint64(48, BigInt(footer.currentSize));
  dv.setUint16(56, footer.geometry.cylinders);
  out[58] = footer.geometry.heads;
  out[59] = footer.geometry.sectorsPerTrack;
  dv.setUint32(60, DISK_TYPE_CODES[footer.diskType]);
  out.set(footer.uniqueId.subarray(0, 16), 68);
  out[84] = footer.savedState ? 1 : 0;
  dv.setUint32(64, vhdChecksum(out, 64));
  return out;
}

export interface NewFooterOptions {
  /** Default: 512, where the dynamic header follows the footer copy; ignored for fixed disks. */
  dataOffset?: number;
  uniqueId?: Guid;
  /** Default: now. */
  time?: Date;
}

/**
 * A new footer as this library writes it: creator `vhdx` on `Wi2k`, original and current size both
 * `virtualSize` (a multiple of 512), geometry `footerGeometry(virtualSize)`.
 */
export function newVhdFooter(diskType: VhdDiskType, virtualSize: number, options: NewFooterOptions = {}): VhdFooter {
  if (!Number.isSafeInteger(virtualSize) || virtualSize <= 0 || virtualSize % 512 !== 0) {
    throw new VhdxError('INVALID_ARGUMENT', `VHD size ${virtualSize} must be a positive multiple of 512`);
  }
  const seconds = Math.floor((options.time ?? new Date()).getTime() / 1000) - VHD_EPOCH_SECONDS;
  return {
    features: VHD_FEATURES_RESERVED,
    version: VHD_FILE_FORMAT_VERSION,
    dataOffset: diskType === 'fixed' ? null : (options.dataOffset ?? VHD_FOOTER_SIZE),
    timestamp: Math.max(0, Math.min(0xffff_ffff, seconds)),
    creatorApplication: 'vhdx',
    creatorVersion: 0x0001_0000,
    creatorHostOs: 'Wi2k',
    originalSize: virtualSize,
    currentSize: virtualSize,
    geometry: footerGeometry(virtualSize),
    diskType,
    uniqueId: options.uniqueId ?? randomGuid(),
    savedState: false,
  };
}

/** The size Azure needs: `size` rounded up to a whole number of MiB. */
export function azureSize(size: number): number {
  return roundUp(size, AZURE_SIZE_UNIT);
}
