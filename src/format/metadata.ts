/** Metadata region: a 64 KiB table then items (format reference §5). No checksum anywhere here. */
import { MiB, hasSignature, readU64, requireLength, view, writeSignature, writeU64, KiB } from './bytes.js';
import { VhdxError } from './errors.js';
import type { Guid } from './guid.js';

export const METADATA_SIGNATURE = 'metadata';
export const METADATA_TABLE_SIZE = 64 * KiB;
const HEADER_BYTES = 32;
const ENTRY_BYTES = 32;
/** (64 KiB - 32) / 32 = 2047 (§5.1). */
export const MAX_METADATA_ENTRIES = 2047;
export const MAX_USER_METADATA_ENTRIES = 1024;
/** An item is at most 1 MiB (§5.2). */
export const MAX_METADATA_ITEM_LENGTH = 1 * MiB;

export const FLAG_IS_USER = 1;
export const FLAG_IS_VIRTUAL_DISK = 2;
export const FLAG_IS_REQUIRED = 4;

export interface MetadataEntry {
  itemId: Guid;
  /** From the start of the metadata region; >= 64 KiB, or 0 when length is 0. */
  offset: number;
  length: number;
  isUser: boolean;
  isVirtualDisk: boolean;
  isRequired: boolean;
}

export interface MetadataTable {
  entries: MetadataEntry[];
}

/** Decodes the table header and entries from the first 64 KiB of the region. */
export function decodeMetadataTable(bytes: Uint8Array): MetadataTable {
  requireLength(bytes, HEADER_BYTES, 'metadata table header');
  if (!hasSignature(bytes, 0, METADATA_SIGNATURE)) {
    throw new VhdxError('BAD_METADATA', 'metadata table signature is not "metadata"');
  }
  const count = view(bytes).getUint16(10, true);
  if (count > MAX_METADATA_ENTRIES) {
    throw new VhdxError('BAD_METADATA', `metadata table claims ${count} entries (at most ${MAX_METADATA_ENTRIES})`);
  }
  requireLength(bytes, HEADER_BYTES + count * ENTRY_BYTES, 'metadata table');
  const entries: MetadataEntry[] = [];
  for (let i = 0; i < count; i++) entries.push(decodeMetadataEntry(bytes.subarray(HEADER_BYTES + i * ENTRY_BYTES)));
  return { entries };
}

export function decodeMetadataTableEntryCount(bytes: Uint8Array): number {
  requireLength(bytes, HEADER_BYTES, 'metadata table header');
  return view(bytes).getUint16(10, true);
}

export function decodeMetadataEntry(bytes: Uint8Array): MetadataEntry {
  requireLength(bytes, ENTRY_BYTES, 'metadata table entry');
  const dv = view(bytes);
  const flags = dv.getUint32(24, true);
  return {
    itemId: bytes.slice(0, 16),
    offset: dv.getUint32(16, true),
    length: dv.getUint32(20, true),
    isUser: (flags & FLAG_IS_USER) !== 0,
    isVirtualDisk: (flags & FLAG_IS_VIRTUAL_DISK) !== 0,
    isRequired: (flags & FLAG_IS_REQUIRED) !== 0,
  };
}

/** The 64 KiB table (header + entries, the rest zero). Items are placed by the caller. */
export function encodeMetadataTable(table: MetadataTable): Uint8Array {
  if (table.entries.length > MAX_METADATA_ENTRIES) {
    throw new VhdxError('INVALID_ARGUMENT', `too many metadata items (${table.entries.length})`);
  }
  const out = new Uint8Array(METADATA_TABLE_SIZE);
  const dv = view(out);
  writeSignature(out, 0, METADATA_SIGNATURE);
  dv.setUint16(10, table.entries.length, true);
  table.entries.forEach((e, i) => {
    const at = HEADER_BYTES + i * ENTRY_BYTES;
    out.set(e.itemId, at);
    dv.setUint32(at + 16, e.offset, true);
    dv.setUint32(at + 20, e.length, true);
    const flags = (e.isUser ? FLAG_IS_USER : 0) | (e.isVirtualDisk ? FLAG_IS_VIRTUAL_DISK : 0) | (e.isRequired ? FLAG_IS_REQUIRED : 0);
    dv.setUint32(at + 24, flags, true);
  });
  return out;
}

// ---- Known system items (§5.3). Each decoder insists on the exact length, as 7-Zip and VirtualBox do.

export interface FileParameters {
  blockSize: number;
  /** Fully provisioned ("fixed") disk (§5.4). */
  leaveBlockAllocated: boolean;
  /** Differencing disk. */
  hasParent: boolean;
}

function exactLength(bytes: Uint8Array, length: number, what: string): DataView {
  if (bytes.length !== length) {
    throw new VhdxError('BAD_METADATA', `${what} item is ${bytes.length} bytes, expected ${length}`);
  }
  return view(bytes);
}

export function decodeFileParameters(bytes: Uint8Array): FileParameters {
  const dv = exactLength(bytes, 8, 'File Parameters');
  const flags = dv.getUint32(4, true);
  return { blockSize: dv.getUint32(0, true), leaveBlockAllocated: (flags & 1) !== 0, hasParent: (flags & 2) !== 0 };
}

export function encodeFileParameters(p: FileParameters): Uint8Array {
  const out = new Uint8Array(8);
  const dv = view(out);
  dv.setUint32(0, p.blockSize, true);
  dv.setUint32(4, (p.leaveBlockAllocated ? 1 : 0) | (p.hasParent ? 2 : 0), true);
  return out;
}

export function decodeVirtualDiskSize(bytes: Uint8Array): number {
  return readU64(exactLength(bytes, 8, 'Virtual Disk Size'), 0, 'BAD_METADATA', 'Virtual Disk Size');
}

export function encodeVirtualDiskSize(size: number): Uint8Array {
  const out = new Uint8Array(8);
  writeU64(view(out), 0, size);
  return out;
}

export function decodeVirtualDiskId(bytes: Uint8Array): Guid {
  exactLength(bytes, 16, 'Virtual Disk ID');
  return bytes.slice(0, 16);
}

export function decodeSectorSize(bytes: Uint8Array, what: string): number {
  return exactLength(bytes, 4, what).getUint32(0, true);
}

export function encodeU32(value: number): Uint8Array {
  const out = new Uint8Array(4);
  view(out).setUint32(0, value, true);
  return out;
}
