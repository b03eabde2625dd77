/**
 * The VHD (v1) dynamic disk header: 1024 bytes, big-endian, at the footer's Data Offset in dynamic and
 * differencing disks. It says where the BAT is, how many entries it has and how large a block is, and
 * for a differencing disk who the parent is and where to look for it (eight parent locator entries).
 * Virtual Hard Disk Image Format Specification (Microsoft, 2006), "Dynamic Disk Header Format".
 */
import { VhdxError } from '../format/errors.js';
import { hasSignature, writeSignature } from '../format/bytes.js';
import type { Guid } from '../format/guid.js';
import { vhdChecksum } from './footer.js';

export const VHD_DYNAMIC_HEADER_SIZE = 1024;
export const VHD_DYNAMIC_HEADER_COOKIE = 'cxsparse';
export const VHD_DYNAMIC_HEADER_VERSION = 0x0001_0000;
/** The default block size of the specification (and of qemu-img and Windows). */
export const VHD_DEFAULT_BLOCK_SIZE = 2 * 1024 * 1024;
/** Blocks from one sector to 256 MiB; the specification uses 2 MiB, others are seen in the wild. */
export const VHD_MIN_BLOCK_SIZE = 512;
export const VHD_MAX_BLOCK_SIZE = 256 * 1024 * 1024;
export const VHD_PARENT_LOCATOR_COUNT = 8;
/** The parent's name: 256 UTF-16 big-endian code units. */
export const VHD_PARENT_NAME_BYTES = 512;

// Field offsets (specification table order).
const COOKIE = 0;
const DATA_OFFSET = 8;
const TABLE_OFFSET = 16;
const HEADER_VERSION = 24;
const MAX_TABLE_ENTRIES = 28;
const BLOCK_SIZE = 32;
const CHECKSUM = 36;
const PARENT_UNIQUE_ID = 40;
const PARENT_TIMESTAMP = 56;
const PARENT_UNICODE_NAME = 64;
const PARENT_LOCATORS = 576;
const LOCATOR_ENTRY_SIZE = 24;
// Within a parent locator entry.
const LOCATOR_PLATFORM_CODE = 0;
const LOCATOR_DATA_SPACE = 4;
const LOCATOR_DATA_LENGTH = 8;
const LOCATOR_DATA_OFFSET = 16;

/** Data Offset in the dynamic header is unused: all ones. */
const UNUSED_DATA_OFFSET = 0xffff_ffff_ffff_ffffn;

/**
 * One parent locator entry. Platform codes: `W2ku` (absolute Windows path, UTF-16LE), `W2ru` (relative
 * Windows path, UTF-16LE), `Wi2r`/`Wi2k` (deprecated ANSI paths), `Mac `/`MacX` (Mac aliases and URLs).
 * An unused entry has platform code `\0\0\0\0`.
 */
export interface VhdParentLocatorEntry {
  platformCode: string;
  /** Sectors reserved for the locator data (some writers store bytes here; readers use `dataLength`). */
  dataSpace: number;
  dataLength: number;
  dataOffset: number;
}

export interface VhdDynamicHeader {
  /** Offset of the BAT in the file. */
  tableOffset: number;
  maxTableEntries: number;
  blockSize: number;
  version: number;
  /** Differencing disks: the parent's footer Unique Id. */
  parentUniqueId: Guid;
  /** Differencing disks: the parent's modification time, seconds since 2000-01-01T00:00:00Z. */
  parentTimestamp: number;
  /** Differencing disks: the parent's file name. */
  parentName: string;
  /** Always eight entries; unused ones have an empty platform code. */
  parentLocators: VhdParentLocatorEntry[];
}

function u64(dv: DataView, offset: number, what: string, file: string | undefined): number {
  const value = dv.getBigUint64(offset);
  if (value > BigInt(Number.MAX_SAFE_INTEGER)) throw new VhdxError('BAD_VHD', `VHD dynamic header ${what} ${value} is out of range`, { file });
  return Number(value);
}

function isPowerOfTwo(value: number): boolean {
  return value > 0 && (value & (value - 1)) === 0;
}

/** A platform code as text; all zero bytes (an unused entry) is the empty string. */
function platformCode(bytes: Uint8Array): string {
  if (bytes.every((b) => b === 0)) return '';
  return String.fromCharCode(...bytes);
}

function decodeUtf16be(bytes: Uint8Array): string {
  let out = '';
  for (let i = 0; i + 1 < bytes.length; i += 2) {
    const unit = (bytes[i]! << 8) | bytes[i + 1]!;
    if (unit === 0) break;
    out += String.fromCharCode(unit);
  }
  return out;
}

/**
 * Decodes the header: cookie and checksum on the raw bytes first, then the fields. Only what the bytes
 * alone can judge is checked here (block size a power of two in range, a version 1.x); where the
 * table lies relative to the file is the opener's business.
 */
export function decodeVhdDynamicHeader(bytes: Uint8Array, file?: string): VhdDynamicHeader {
  if (bytes.length < VHD_DYNAMIC_HEADER_SIZE) {
    throw new VhdxError('BAD_VHD', `VHD dynamic header needs ${VHD_DYNAMIC_HEADER_SIZE} bytes, got ${bytes.length}`, { file });
  }
  const raw = bytes.subarray(0, VHD_DYNAMIC_HEADER_SIZE);
  if (!hasSignature(raw, COOKIE, VHD_DYNAMIC_HEADER_COOKIE)) {
    throw new VhdxError('BAD_VHD', `no VHD dynamic header (cookie "${VHD_DYNAMIC_HEADER_COOKIE}" missing)`, { file });
  }
  const dv = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  const stored = dv.getUint32(CHECKSUM);
  const computed = vhdChecksum(raw, CHECKSUM);
  if (stored !== computed) {
    throw new VhdxError('BAD_VHD', `VHD dynamic header checksum 0x${stored.toString(16)} does not match its contents (0x${computed.toString(16)})`, { file });
  }
  const version = dv.getUint32(HEADER_VERSION);
  if (version >>> 16 !== 1) throw new VhdxError('UNSUPPORTED', `VHD dynamic header version ${version >>> 16}.${version & 0xffff} is not supported (expected 1.x)`, { file });
  const blockSize = dv.getUint32(BLOCK_SIZE);
  if (!isPowerOfTwo(blockSize) || blockSize < VHD_MIN_BLOCK_SIZE || blockSize > VHD_MAX_BLOCK_SIZE) {
    throw new VhdxError('BAD_VHD', `VHD block size ${blockSize} is not a power of two from ${VHD_MIN_BLOCK_SIZE} bytes to ${VHD_MAX_BLOCK_SIZE / 1024 / 1024} MiB`, { file });
  }
  const parentLocators: VhdParentLocatorEntry[] = [];
  for (let i = 0; i < VHD_PARENT_LOCATOR_COUNT; i++) {
    const at = PARENT_LOCATORS + i * LOCATOR_ENTRY_SIZE;
    parentLocators.push({
      platformCode: platformCode(raw.subarray(at + LOCATOR_PLATFORM_CODE, at + LOCATOR_PLATFORM_CODE + 4)),
      dataSpace: dv.getUint32(at + LOCATOR_DATA_SPACE),
      dataLength: dv.getUint32(at + LOCATOR_DATA_LENGTH),
      dataOffset: u64(dv, at + LOCATOR_DATA_OFFSET, `parent locator ${i} data offset`, file),
    });
  }
  return {
    tableOffset: u64(dv, TABLE_OFFSET, 'table offset', file),
    maxTableEntries: dv.getUint32(MAX_TABLE_ENTRIES),
    blockSize,
    version,
    parentUniqueId: new Uint8Array(raw.subarray(PARENT_UNIQUE_ID, PARENT_UNIQUE_ID + 16)),
    parentTimestamp: dv.getUint32(PARENT_TIMESTAMP),
    parentName: decodeUtf16be(raw.subarray(PARENT_UNICODE_NAME, PARENT_UNICODE_NAME + VHD_PARENT_NAME_BYTES)),
    parentLocators,
  };
}

/** Encodes the header into 1024 bytes, checksum computed (missing locator entries are left unused). */
export function encodeVhdDynamicHeader(header: VhdDynamicHeader): Uint8Array {
  const out = new Uint8Array(VHD_DYNAMIC_HEADER_SIZE);
  const dv = new DataView(out.buffer);
  writeSignature(out, COOKIE, VHD_DYNAMIC_HEADER_COOKIE);
  dv.setBigUint64(DATA_OFFSET, UNUSED_DATA_OFFSET);
  dv.setBigUint64(TABLE_OFFSET, BigInt(header.tableOffset));
  dv.setUint32(HEADER_VERSION, header.version);
  dv.setUint32(MAX_TABLE_ENTRIES, header.maxTableEntries);
  dv.setUint32(BLOCK_SIZE, header.blockSize);
  out.set(header.parentUniqueId.subarray(0, 16), PARENT_UNIQUE_ID);
  dv.setUint32(PARENT_TIMESTAMP, header.parentTimestamp);
  const name = header.parentName.slice(0, VHD_PARENT_NAME_BYTES / 2);
  for (let i = 0; i < name.length; i++) dv.setUint16(PARENT_UNICODE_NAME + 2 * i, name.charCodeAt(i));
  header.parentLocators.slice(0, VHD_PARENT_LOCATOR_COUNT).forEach((entry, i) => {
    const at = PARENT_LOCATORS + i * LOCATOR_ENTRY_SIZE;
    for (let k = 0; k < 4; k++) out[at + LOCATOR_PLATFORM_CODE + k] = entry.platformCode.charCodeAt(k) & 0xff; // NaN past the end: 0
    dv.setUint32(at + LOCATOR_DATA_SPACE, entry.dataSpace);
    dv.setUint32(at + LOCATOR_DATA_LENGTH, entry.dataLength);
    dv.setBigUint64(at + LOCATOR_DATA_OFFSET, BigInt(entry.dataOffset));
  });
  dv.setUint32(CHECKSUM, vhdChecksum(out, CHECKSUM));
  return out;
}
