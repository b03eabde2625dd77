/**
 * Log entries (format reference §8): descriptor sectors (64-byte header + 32-byte descriptors) then one
 * 4 KiB data sector per data descriptor. Everything is in 4 KiB "log sectors".
 */
import { hasSignature, readU64, view, writeSignature, writeU64 } from './bytes.js';
import { LOG_SECTOR_SIZE } from './constants.js';
import { structureChecksum } from './crc32c.js';
import { VhdxError } from './errors.js';
import { guidEquals, type Guid } from './guid.js';

const ENTRY_HEADER_BYTES = 64;
const DESCRIPTOR_BYTES = 32;
const DESCRIPTORS_PER_SECTOR = LOG_SECTOR_SIZE / DESCRIPTOR_BYTES; // 128

export interface LogEntryHeader {
  entryLength: number;
  /** Log offset of the oldest entry of the sequence this entry ends. */
  tail: number;
  sequenceNumber: bigint;
  descriptorCount: number;
  logGuid: Guid;
  flushedFileOffset: number;
  lastFileOffset: number;
}

/** A 4 KiB sector of the file as the log wants it written. */
export interface LogDataWrite {
  fileOffset: number;
  data: Uint8Array;
}
/** ZeroLength bytes of zeros at FileOffset. */
export interface LogZeroWrite {
  fileOffset: number;
  zeroLength: number;
}
export type LogDescriptor = LogDataWrite | LogZeroWrite;

export interface LogEntry {
  header: LogEntryHeader;
  descriptors: LogDescriptor[];
}

export function isZeroDescriptor(d: LogDescriptor): d is LogZeroWrite {
  return (d as LogZeroWrite).zeroLength !== undefined;
}

/** ceil((DescriptorCount + 2) / 128), never 0: the header takes the room of two descriptors (§8.1). */
export function descriptorSectorCount(descriptorCount: number): number {
  return Math.ceil((descriptorCount + 2) / DESCRIPTORS_PER_SECTOR);
}

function invalid(message: string): VhdxError {
  return new VhdxError('BAD_LOG', message);
}

/**
 * Decodes and checks the entry header in the first log sector of an entry, without the CRC (which needs
 * the whole entry). Throws BAD_LOG when this cannot be the start of a valid entry (§8.5).
 */
export function decodeLogEntryHeader(sector: Uint8Array, logLength: number): LogEntryHeader {
  if (sector.length < LOG_SECTOR_SIZE) throw invalid('log entry header sector truncated');
  if (!hasSignature(sector, 0, 'loge')) throw invalid('no "loge" signature');
  const dv = view(sector);
  const entryLength = dv.getUint32(8, true);
  if (entryLength === 0 || entryLength % LOG_SECTOR_SIZE !== 0 || entryLength > logLength) {
    throw invalid(`entry length ${entryLength} is not a non-zero multiple of 4096 within the ${logLength}-byte log`);
  }
  const tail = dv.getUint32(12, true);
  if (tail % LOG_SECTOR_SIZE !== 0 || tail >= logLength) throw invalid(`tail ${tail} is not a sector offset inside the log`);
  const sequenceNumber = dv.getBigUint64(16, true);
  if (sequenceNumber === 0n) throw invalid('sequence number 0');
  const descriptorCount = dv.getUint32(24, true);
  // Compare in sectors first so an absurd count cannot overflow anything.
  if (descriptorCount > entryLength / DESCRIPTOR_BYTES || descriptorSectorCount(descriptorCount) * LOG_SECTOR_SIZE > entryLength) {
    throw invalid(`${descriptorCount} descriptors do not fit in a ${entryLength}-byte entry`);
  }
  const flushedFileOffset = readU64(dv, 48, 'BAD_LOG', 'log FlushedFileOffset');
  const lastFileOffset = readU64(dv, 56, 'BAD_LOG', 'log LastFileOffset');
  return {
    entryLength,
    tail,
    sequenceNumber,
    descriptorCount,
    logGuid: sector.slice(32, 48),
    flushedFileOffset,
    lastFileOffset,
  };
}

/**
 * Validates a whole entry (exactly EntryLength bytes, already unwrapped from the ring) against the header's
 * LogGuid and decodes its descriptors, reconstructing each data sector (§8.4, §8.5).
 */
export function decodeLogEntry(bytes: Uint8Array, logGuid: Guid, logLength: number): LogEntry {
  const header = decodeLogEntryHeader(bytes, logLength);
  if (bytes.length !== header.entryLength) throw invalid(`entry needs ${header.entryLength} bytes, got ${bytes.length}`);
  if (!guidEquals(header.logGuid, logGuid)) throw invalid('entry LogGuid does not match the header');
  const dv = view(bytes);
  if (dv.getUint32(4, true) !== structureChecksum(bytes)) throw invalid('entry checksum mismatch');
  const seqLow = Number(header.sequenceNumber & 0xffffffffn);
  const seqHigh = Number(header.sequenceNumber >> 32n);
  let dataSector = descriptorSectorCount(header.descriptorCount);
  const sectorsInEntry = header.entryLength / LOG_SECTOR_SIZE;
  const descriptors: LogDescriptor[] = [];
  for (let i = 0; i < header.descriptorCount; i++) {
    const at = ENTRY_HEADER_BYTES + i * DESCRIPTOR_BYTES;
    const fileOffset = readU64(dv, at + 16, 'BAD_LOG', 'log descriptor FileOffset');
    if (fileOffset % LOG_SECTOR_SIZE !== 0) throw invalid(`descriptor ${i} FileOffset ${fileOffset} is not 4 KiB aligned`);
    if (dv.getBigUint64(at + 24, true) !== header.sequenceNumber) throw invalid(`descriptor ${i} sequence number differs from the entry's`);
    if (hasSignature(bytes, at, 'zero')) {
      const zeroLength = readU64(dv, at + 8, 'BAD_LOG', 'log zero descriptor length');
      if (zeroLength % LOG_SECTOR_SIZE !== 0) throw invalid(`zero descriptor ${i} length ${zeroLength} is not a multiple of 4 KiB`);
      descriptors.push({ fileOffset, zeroLength });
    } else if (hasSignature(bytes, at, 'desc')) {
      if (dataSector >= sectorsInEntry) throw invalid(`data descriptor ${i} has no data sector`);
      const sectorAt = dataSector * LOG_SECTOR_SIZE;
      const sector = bytes.subarray(sectorAt, sectorAt + LOG_SECTOR_SIZE);
      const sdv = view(sector);
      if (!hasSignature(sector, 0, 'data')) throw invalid(`data sector ${dataSector} has no "data" signature`);
      if (sdv.getUint32(4, true) !== seqHigh || sdv.getUint32(4092, true) !== seqLow) {
        throw invalid(`data sector ${dataSector} sequence number differs from the entry's`);
      }
      const data = new Uint8Array(LOG_SECTOR_SIZE);
      data.set(bytes.subarray(at + 8, at + 16), 0); // LeadingBytes
      data.set(sector.subarray(8, 4092), 8);
      data.set(bytes.subarray(at + 4, at + 8), 4092); // TrailingBytes
      descriptors.push({ fileOffset, data });
      dataSector++;
    } else {
      throw invalid(`descriptor ${i} has neither a "zero" nor a "desc" signature`);
    }
  }
  return { header, descriptors };
}

export interface LogEntryInput {
  sequenceNumber: bigint;
  tail: number;
  logGuid: Guid;
  flushedFileOffset: number;
  lastFileOffset: number;
  descriptors: LogDescriptor[];
}

/** Builds a complete entry: descriptor sectors, data sectors, CRC over all of it. */
export function encodeLogEntry(input: LogEntryInput): Uint8Array {
  const count = input.descriptors.length;
  const dataCount = input.descriptors.filter((d) => !isZeroDescriptor(d)).length;
  const descSectors = descriptorSectorCount(count);
  const out = new Uint8Array((descSectors + dataCount) * LOG_SECTOR_SIZE);
  const dv = view(out);
  writeSignature(out, 0, 'loge');
  dv.setUint32(8, out.length, true);
  dv.setUint32(12, input.tail, true);
  dv.setBigUint64(16, input.sequenceNumber, true);
  dv.setUint32(24, count, true);
  out.set(input.logGuid, 32);
  writeU64(dv, 48, input.flushedFileOffset);
  writeU64(dv, 56, input.lastFileOffset);
  const seqLow = Number(input.sequenceNumber & 0xffffffffn);
  const seqHigh = Number(input.sequenceNumber >> 32n);
  let sector = descSectors;
  input.descriptors.forEach((d, i) => {
    const at = ENTRY_HEADER_BYTES + i * DESCRIPTOR_BYTES;
    if (d.fileOffset % LOG_SECTOR_SIZE !== 0) throw new RangeError(`log write at unaligned offset ${d.fileOffset}`);
    writeU64(dv, at + 16, d.fileOffset);
    dv.setBigUint64(at + 24, input.sequenceNumber, true);
    if (isZeroDescriptor(d)) {
      writeSignature(out, at, 'zero');
      writeU64(dv, at + 8, d.zeroLength);
    } else {
      if (d.data.length !== LOG_SECTOR_SIZE) throw new RangeError('log data sector must be 4096 bytes');
      writeSignature(out, at, 'desc');
      out.set(d.data.subarray(4092, 4096), at + 4);
      out.set(d.data.subarray(0, 8), at + 8);
      const s = sector * LOG_SECTOR_SIZE;
      writeSignature(out, s, 'data');
      dv.setUint32(s + 4, seqHigh, true);
      out.set(d.data.subarray(8, 4092), s + 8);
      dv.setUint32(s + 4092, seqLow, true);
      sector++;
    }
  });
  dv.setUint32(4, structureChecksum(out), true);
  return out;
}

