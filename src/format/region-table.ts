/** Region table, 64 KiB at 192 KiB with a copy at 256 KiB (format reference §4). */
import { hasSignature, readU64, requireLength, view, writeSignature, writeU64 } from './bytes.js';
import { REGION_TABLE_SIZE } from './constants.js';
import { structureChecksum } from './crc32c.js';
import { VhdxError } from './errors.js';
import type { Guid } from './guid.js';

export const REGION_TABLE_SIGNATURE = 'regi';
const HEADER_BYTES = 16;
const ENTRY_BYTES = 32;
/** floor((65536 - 16) / 32) (§4.1). */
export const MAX_REGION_ENTRIES = 2047;

export interface RegionEntry {
  guid: Guid;
  fileOffset: number;
  length: number;
  required: boolean;
}

export interface RegionTable {
  entries: RegionEntry[];
}

/** Verifies signature, CRC and entry count on the raw 64 KiB, then decodes the entries. */
export function decodeRegionTable(bytes: Uint8Array): RegionTable {
  requireLength(bytes, REGION_TABLE_SIZE, 'region table');
  const b = bytes.subarray(0, REGION_TABLE_SIZE);
  if (!hasSignature(b, 0, REGION_TABLE_SIGNATURE)) {
    throw new VhdxError('BAD_REGION_TABLE', 'region table signature is not "regi"');
  }
  const dv = view(b);
  const stored = dv.getUint32(4, true);
  const computed = structureChecksum(b);
  if (stored !== computed) {
    throw new VhdxError('BAD_REGION_TABLE', 'region table checksum mismatch');
  }
  const count = dv.getUint32(8, true);
  if (count > MAX_REGION_ENTRIES) {
    throw new VhdxError('BAD_REGION_TABLE', `region table claims ${count} entries (at most ${MAX_REGION_ENTRIES})`);
  }
  const entries: RegionEntry[] = [];
  for (let i = 0; i < count; i++) entries.push(decodeRegionEntry(b.subarray(HEADER_BYTES + i * ENTRY_BYTES)));
  return { entries };
}

/** One 32-byte entry; Required tests bit 0 as QEMU and VirtualBox do (§4.2). */
export function decodeRegionEntry(bytes: Uint8Array): RegionEntry {
  requireLength(bytes, ENTRY_BYTES, 'region table entry');
  const dv = view(bytes);
  return {
    guid: bytes.slice(0, 16),
    fileOffset: readU64(dv, 16, 'BAD_REGION_TABLE', 'region FileOffset'),
    length: dv.getUint32(24, true),
    required: (dv.getUint32(28, true) & 1) === 1,
  };
}

export function encodeRegionTable(table: RegionTable): Uint8Array {
  if (table.entries.length > MAX_REGION_ENTRIES) {
    throw new VhdxError('INVALID_ARGUMENT', `too many regions (${table.entries.length})`);
  }
  const out = new Uint8Array(REGION_TABLE_SIZE);
  const dv = view(out);
  writeSignature(out, 0, REGION_TABLE_SIGNATURE);
  dv.setUint32(8, table.entries.length, true);
  table.entries.forEach((entry, i) => {
    const at = HEADER_BYTES + i * ENTRY_BYTES;
    out.set(entry.guid, at);
    writeU64(dv, at + 16, entry.fileOffset);
    dv.setUint32(at + 24, entry.length, true);
    dv.setUint32(at + 28, entry.required ? 1 : 0, true);
  });
  dv.setUint32(4, structureChecksum(out), true);
  return out;
}
