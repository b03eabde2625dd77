/**
 * Finding the active log sequence (format reference §8.6, §8.7) and applying it, either to the file
 * (writable open) or as an in-memory overlay (read-only open: the file is never touched).
 */
import { LOG_SECTOR_SIZE, REGION_TABLE1_OFFSET } from '../format/constants.js';
import { VhdxError } from '../format/errors.js';
import type { Guid } from '../format/guid.js';
import { decodeLogEntry, decodeLogEntryHeader, isZeroDescriptor, type LogDescriptor, type LogEntry } from '../format/log-entry.js';
import { writeZeros, type Backend } from '../io/backend.js';

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
 * Finds the complete sequence with the highest head sequence number (§8.6, §8.7), in time linear in the
 * log size:
 * 1. One pass over the ring finds every valid entry, stepping over the span of each one found (a legal
 *    log never starts an entry inside a valid one: overwriting part of an entry breaks its checksum).
 *    Checksum work on candidates that turn out invalid is capped, so a hostile log cannot make the scan
 *    slow; past the cap the log is refused.
 * 2. Each valid entry's successor is the entry right after it with the next sequence number; following
 *    successors gives the head of the run through any entry (memoized; sequence numbers only grow, so
 *    runs cannot loop).
 * 3. A run is complete when its head's Tail is an entry of the run: equivalently, an entry t whose run's
 *    head names t as its Tail. Among those, the highest head wins; replay goes from t to the head.
 */
export function findActiveSequence(log: Uint8Array, logGuid: Guid): ActiveSequence | null {
  const logLength = log.length;
  let checksumBudget = 4 * logLength + 16 * 1024 * 1024;
  const entries = new Map<number, LogEntry>();
  for (let offset = 0; offset < logLength; ) {
    const entry = decodeEntryAt(log, offset, logGuid, (length) => {
      checksumBudget -= length;
      if (checksumBudget < 0) throw new VhdxError('BAD_LOG', 'log holds too many overlapping entry candidates to scan');
    });
    if (entry) {
      entries.set(offset, entry);
      offset += entry.header.entryLength;
    } else {
      offset += LOG_SECTOR_SIZE;
    }
  }

  const successor = (offset: number): number | null => {
    const entry = entries.get(offset)!;
    const next = (offset + entry.header.entryLength) % logLength;
    const candidate = entries.get(next);
    return candidate && candidate.header.sequenceNumber === entry.header.sequenceNumber + 1n ? next : null;
  };
  const headOf = new Map<number, number>();
  const findHead = (start: number): number => {
    const path: number[] = [];
    let at = start;
    for (;;) {
      const known = headOf.get(at);
      if (known !== undefined) {
        at = known;
        break;
      }
      path.push(at);
      const next = successor(at);
      if (next === null) break;
      at = next;
    }
    for (const p of path) headOf.set(p, at);
    return at;
  };

  let best: { tail: number; head: number } | null = null;
  for (const offset of entries.keys()) {
    const head = findHead(offset);
    const headEntry = entries.get(head)!;
    if (headEntry.header.tail !== offset) continue;
    if (best === null || headEntry.header.sequenceNumber > entries.get(best.head)!.header.sequenceNumber) best = { tail: offset, head };
  }
  if (best === null) return null;
  const sequence: PlacedLogEntry[] = [];
  for (let at: number | null = best.tail; at !== null; at = at === best.head ? null : successor(at)) {
    sequence.push({ logOffset: at, entry: entries.get(at)! });
  }
  return { entries: sequence, head: entries.get(best.head)! };
}

/** The valid entry at `offset`, or null. `charge` is told the bytes about to be checksummed and may throw. */
function decodeEntryAt(log: Uint8Array, offset: number, logGuid: Guid, charge: (length: number) => void): LogEntry | null {
  let length: number;
  try {
    length = decodeLogEntryHeader(log.subarray(offset, offset + LOG_SECTOR_SIZE), log.length).entryLength;
  } catch (error) {
    if (error instanceof VhdxError) return null;
    throw error;
  }
  charge(length);
  try {
    return decodeLogEntry(entryBytes(log, offset, length), logGuid, log.length);
  } catch (error) {
    if (error instanceof VhdxError) return null;
    throw error;
  }
}

/**
 * Rejects a sequence that would write the file identifier or headers, or beyond the file size the log
 * itself declares (LastFileOffset, at most 64 TiB of payload plus metadata).
 */
export function validateSequenceTargets(sequence: ActiveSequence, file: string, fileSize: number): void {
  const declared = sequence.head.header.lastFileOffset;
  if (declared > MAX_LOG_TARGET) {
    throw new VhdxError('BAD_LOG', `log head declares a file of ${declared} bytes, beyond any legal image`, { file });
  }
  const limit = Math.max(fileSize, declared);
  for (const { logOffset, entry } of sequence.entries) {
    for (const d of entry.descriptors) {
      const length = isZeroDescriptor(d) ? d.zeroLength : LOG_SECTOR_SIZE;
      if (d.fileOffset < REGION_TABLE1_OFFSET || d.fileOffset + length > limit) {
        throw new VhdxError('BAD_LOG', `log entry at log offset ${logOffset} writes ${length} bytes at file offset ${d.fileOffset}, outside the metadata of a ${limit}-byte file`, { file });
      }
    }
  }
}

/**
 * The logical state of the file after replay, kept in memory: the ordered list of logged writes laid
 * over the real bytes. Metadata reads and payload reads both go through it, so a read-only open shows
 * exactly what a writable open (which replays to the file) would.
 */
export class LogOverlay {
  private readonly writes: LogDescriptor[] = [];

  constructor(sequence: ActiveSequence) {
    for (const { entry } of sequence.entries) this.writes.push(...entry.descriptors);
  }

  /** Whether any logged write overlaps [position, position + length) of the file. */
  touches(position: number, length: number): boolean {
    return this.writes.some((d) => d.fileOffset < position + length && position < d.fileOffset + (isZeroDescriptor(d) ? d.zeroLength : LOG_SECTOR_SIZE));
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

/**
 * Writes the sequence to the file, extends it to LastFileOffset and flushes (§8.7 steps 9-11, without
 * the header step). Zeros past the end of the file are not written: extending the file provides them.
 */
export async function applySequence(backend: Backend, sequence: ActiveSequence): Promise<void> {
  let size = await backend.size();
  const target = Math.max(size, sequence.head.header.lastFileOffset);
  for (const { entry } of sequence.entries) {
    for (const d of entry.descriptors) {
      if (isZeroDescriptor(d)) {
        const end = Math.min(d.fileOffset + d.zeroLength, size);
        await writeZeros(backend, d.fileOffset, end - d.fileOffset);
        if (d.fileOffset + d.zeroLength > size) {
          size = d.fileOffset + d.zeroLength;
          await backend.truncate(size);
        }
      } else {
        await backend.write(d.data, d.fileOffset);
        size = Math.max(size, d.fileOffset + d.data.length);
      }
    }
  }
  if (size < target) await backend.truncate(target);
  await backend.flush();
}
