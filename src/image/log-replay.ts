/**
 * Finding the active log sequence (format reference §8.6, §8.7) and applying it, either to the file
 * (writable open) or as an in-memory overlay (read-only open: the file is never touched).
 */
import { LOG_SECTOR_SIZE, REGION_TABLE1_OFFSET } from '../format/constants.js';
import { VhdxError } from '../format/errors.js';
import type { Guid } from '../format/guid.js';
import { decodeLogEntry, decodeLogEntryHeader, isZeroDescriptor, type LogDescriptor, type LogEntry } from '../format/log-entry.js';
import type { Backend } from '../io/backend.js';

/** A log entry together with where it sits in the ring. */
export interface PlacedLogEntry {
  logOffset: number;
  entry: LogEntry;
}

export interface ActiveSequence {
  /** From the tail entry to the head, in apply order. */
  entries: PlacedLogEntry[];
  head: LogEntry;
}

/**
 * Highest file offset a log descriptor may touch: 64 TiB of payload plus room for metadata. A larger
 * target is corruption, and refusing it keeps a hostile log from growing the file without bound.
 */
export const MAX_LOG_TARGET = 2 ** 46 + 2 ** 40;

/** Bytes of the entry at `offset`, unwrapped from the ring (entries may wrap at sector granularity, §8.1). */
function entryBytes(log: Uint8Array, offset: number, length: number): Uint8Array {
  if (offset + length <= log.length) return log.subarray(offset, offset + length);
  const out = new Uint8Array(length);
  const first = log.length - offset;
  out.set(log.subarray(offset), 0);
  out.set(log.subarray(0, length - first), first);
  return out;
}

/**
 * Scans the ring for the complete sequence with the highest head sequence number. Entries are decoded
 * at most once per offset, so the scan is linear in the log size for well-formed logs.
 */
export function findActiveSequence(log: Uint8Array, logGuid: Guid): ActiveSequence | null {
  const logLength = log.length;
  const cache = new Map<number, LogEntry | null>();
  const entryAt = (offset: number): LogEntry | null => {
    const cached = cache.get(offset);
    if (cached !== undefined) return cached;
    let entry: LogEntry | null = null;
    try {
      const header = decodeLogEntryHeader(log.subarray(offset, offset + LOG_SECTOR_SIZE), logLength);
      entry = decodeLogEntry(entryBytes(log, offset, header.entryLength), logGuid, logLength);
    } catch (error) {
      if (!(error instanceof VhdxError)) throw error;
    }
    cache.set(offset, entry);
    return entry;
  };

  let best: ActiveSequence | null = null;
  let start = 0;
  while (start < logLength) {
    const sequence: PlacedLogEntry[] = [];
    let position = start;
    let bytesCovered = 0;
    for (;;) {
      const entry = entryAt(position);
      if (entry === null) break;
      const previous = sequence[sequence.length - 1];
      if (previous && entry.header.sequenceNumber !== previous.entry.header.sequenceNumber + 1n) break;
      // A sequence can never be longer than the ring; stop before it laps itself.
      if (bytesCovered + entry.header.entryLength > logLength) break;
      sequence.push({ logOffset: position, entry });
      bytesCovered += entry.header.entryLength;
      position = (position + entry.header.entryLength) % logLength;
    }
    const head = sequence[sequence.length - 1];
    const tailIndex = head ? sequence.findIndex((e) => e.logOffset === head.entry.header.tail) : -1;
    if (head && tailIndex >= 0) {
      if (best === null || head.entry.header.sequenceNumber > best.head.header.sequenceNumber) {
        best = { entries: sequence.slice(tailIndex), head: head.entry };
      }
      // A complete sequence: continue after it (§8.7 step 4). A wrapped one ends the scan.
      const next = start + bytesCovered;
      start = next;
    } else {
      start += LOG_SECTOR_SIZE;
    }
  }
  return best;
}

/** Rejects descriptors that would write the file identifier or headers, or far beyond any legal file. */
export function validateSequenceTargets(sequence: ActiveSequence, file: string): void {
  for (const { logOffset, entry } of sequence.entries) {
    for (const d of entry.descriptors) {
      const length = isZeroDescriptor(d) ? d.zeroLength : LOG_SECTOR_SIZE;
      if (d.fileOffset < REGION_TABLE1_OFFSET || d.fileOffset + length > MAX_LOG_TARGET) {
        throw new VhdxError('BAD_LOG', `log entry at log offset ${logOffset} writes ${length} bytes at file offset ${d.fileOffset}, outside any metadata`, { file });
      }
    }
  }
}

/**
 * The logical state of the file after replay, kept in memory: the ordered list of logged writes laid
 * over the real bytes. Only metadata reads go through it; payload data is never in the log.
 */
export class LogOverlay {
  private readonly writes: LogDescriptor[] = [];
  /** End of the highest byte the log writes or requires (LastFileOffset); the file reads as this long. */
  readonly extent: number;

  constructor(sequence: ActiveSequence) {
    let extent = sequence.head.header.lastFileOffset;
    for (const { entry } of sequence.entries) {
      for (const d of entry.descriptors) {
        this.writes.push(d);
        extent = Math.max(extent, d.fileOffset + (isZeroDescriptor(d) ? d.zeroLength : LOG_SECTOR_SIZE));
      }
    }
    this.extent = extent;
  }

  /** Lays every logged write that overlaps [position, position + target.length) over `target`, in log order. */
  patch(target: Uint8Array, position: number): void {
    const end = position + target.length;
    for (const d of this.writes) {
      const length = isZeroDescriptor(d) ? d.zeroLength : LOG_SECTOR_SIZE;
      const from = Math.max(position, d.fileOffset);
      const to = Math.min(end, d.fileOffset + length);
      if (from >= to) continue;
      if (isZeroDescriptor(d)) {
        target.fill(0, from - position, to - position);
      } else {
        target.set(d.data.subarray(from - d.fileOffset, to - d.fileOffset), from - position);
      }
    }
  }
}

/** Writes the sequence to the file, extends it to LastFileOffset and flushes (§8.7 steps 9-11, without the header step). */
export async function applySequence(backend: Backend, sequence: ActiveSequence): Promise<void> {
  const zeroChunk = new Uint8Array(1024 * 1024);
  for (const { entry } of sequence.entries) {
    for (const d of entry.descriptors) {
      if (isZeroDescriptor(d)) {
        for (let done = 0; done < d.zeroLength; done += zeroChunk.length) {
          const n = Math.min(zeroChunk.length, d.zeroLength - done);
          await backend.write(zeroChunk.subarray(0, n), d.fileOffset + done);
        }
      } else {
        await backend.write(d.data, d.fileOffset);
      }
    }
  }
  const size = await backend.size();
  if (size < sequence.head.header.lastFileOffset) await backend.truncate(sequence.head.header.lastFileOffset);
  await backend.flush();
}
