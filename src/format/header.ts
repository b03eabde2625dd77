/** The 4 KiB header, two copies at 64 KiB and 128 KiB (format reference §3). */
import { hasSignature, readU64, requireLength, view, writeSignature, writeU64 } from './bytes.js';
import { HEADER_SIZE } from './constants.js';
import { structureChecksum } from './crc32c.js';
import { VhdxError } from './errors.js';
import type { Guid } from './guid.js';

export const HEADER_SIGNATURE = 'head';

export interface Header {
  /** u64; the valid copy with the larger value is current (§3.2). */
  sequenceNumber: bigint;
  fileWriteGuid: Guid;
  dataWriteGuid: Guid;
  /** All-zero: no log to replay. */
  logGuid: Guid;
  logVersion: number;
  version: number;
  logLength: number;
  logOffset: number;
}

const F = {
  signature: 0,
  checksum: 4,
  sequenceNumber: 8,
  fileWriteGuid: 16,
  dataWriteGuid: 32,
  logGuid: 48,
  logVersion: 64,
  version: 66,
  logLength: 68,
  logOffset: 72,
} as const;

/**
 * Decodes one header copy. Signature and checksum are verified on the raw bytes first; field values are
 * not judged here (the open path validates the chosen header, §3.2 step 4).
 */
export function decodeHeader(bytes: Uint8Array): Header {
  requireLength(bytes, HEADER_SIZE, 'header');
  const b = bytes.subarray(0, HEADER_SIZE);
  if (!hasSignature(b, F.signature, HEADER_SIGNATURE)) {
    throw new VhdxError('BAD_HEADER', 'header signature is not "head"');
  }
  const dv = view(b);
  const stored = dv.getUint32(F.checksum, true);
  const computed = structureChecksum(b);
  if (stored !== computed) {
    throw new VhdxError('BAD_HEADER', `header checksum mismatch (stored 0x${hex8(stored)}, computed 0x${hex8(computed)})`);
  }
  return {
    sequenceNumber: dv.getBigUint64(F.sequenceNumber, true),
    fileWriteGuid: b.slice(F.fileWriteGuid, F.fileWriteGuid + 16),
    dataWriteGuid: b.slice(F.dataWriteGuid, F.dataWriteGuid + 16),
    logGuid: b.slice(F.logGuid, F.logGuid + 16),
    logVersion: dv.getUint16(F.logVersion, true),
    version: dv.getUint16(F.version, true),
    logLength: dv.getUint32(F.logLength, true),
    logOffset: readU64(dv, F.logOffset, 'BAD_HEADER', 'header LogOffset'),
  };
}

/** The full 4 KiB with reserved bytes zero and the CRC over exactly these bytes (§3.1, §9 rule 11). */
export function encodeHeader(header: Header): Uint8Array {
  const out = new Uint8Array(HEADER_SIZE);
  const dv = view(out);
  writeSignature(out, F.signature, HEADER_SIGNATURE);
  dv.setBigUint64(F.sequenceNumber, header.sequenceNumber, true);
  out.set(header.fileWriteGuid, F.fileWriteGuid);
  out.set(header.dataWriteGuid, F.dataWriteGuid);
  out.set(header.logGuid, F.logGuid);
  dv.setUint16(F.logVersion, header.logVersion, true);
  dv.setUint16(F.version, header.version, true);
  dv.setUint32(F.logLength, header.logLength, true);
  writeU64(dv, F.logOffset, header.logOffset);
  dv.setUint32(F.checksum, structureChecksum(out), true);
  return out;
}

/** True when two header copies agree on every defined field except the checksum (for equal sequence numbers, §3.2). */
export function sameHeaderFields(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 80; i++) {
    if (i >= F.checksum && i < F.checksum + 4) continue;
    if (a[i] !== b[i]) return false;
  }
  return true;
}

function hex8(n: number): string {
  return n.toString(16).padStart(8, '0');
}
