/**
 * Writing metadata through the log (format reference §8.8). Every BAT (and later sector-bitmap and
 * metadata) change reaches its place in the file only as: payload already durable (the caller flushed),
 * log entry written, flush, sectors applied in place, flush. The entry is the commit point.
 *
 * Crash-safety choices, each closing a window where an image would not reopen:
 * - The first entry of a session is written and flushed BEFORE the header that names its LogGuid, so a
 *   header with a non-zero LogGuid always has a valid entry to replay (the spec calls a LogGuid with no
 *   valid sequence corrupt).
 * - Every entry is applied and flushed before the next is written, so each entry's Tail is its own
 *   offset and replay is exactly one entry, idempotent.
 * - An entry is at most half the log, so a torn entry can never overwrite the previous (applied but
 *   still active) entry: after any crash the previous entry is a valid complete sequence.
 */
import { MiB } from '../format/bytes.js';
import { LOG_SECTOR_SIZE } from '../format/constants.js';
import { VhdxError } from '../format/errors.js';
import { guidEquals, guidIsZero, randomGuid, type Guid } from '../format/guid.js';
import { descriptorSectorCount, encodeLogEntry, type LogDescriptor } from '../format/log-entry.js';
import type { Backend } from '../io/backend.js';
import type { HeaderWriter } from './headers.js';

export interface LogSector {
  fileOffset: number;
  data: Uint8Array;
}

export class LogWriter {
  private logGuid: Guid | null = null;
  private position = 0;
  private sequenceNumber = 1n;
  private readonly maxDataSectorsPerEntry: number;
  /** Entries written this session (for tests and reports). */
  entriesWritten = 0;

  constructor(
    private readonly backend: Backend,
    private readonly headers: HeaderWriter,
    private readonly logOffset: number,
    private readonly logLength: number,
  ) {
    // n data sectors + their descriptor sectors must fit in half the log.
    const half = Math.floor(logLength / LOG_SECTOR_SIZE / 2);
    let n = half - 1;
    while (n > 0 && n + descriptorSectorCount(n) > half) n--;
    this.maxDataSectorsPerEntry = n;
  }

  /** Most sectors one entry carries: a commit of up to this many is atomic (one entry, replayed whole or not at all). */
  get sectorsPerEntry(): number {
    return this.maxDataSectorsPerEntry;
  }

  get canLog(): boolean {
    return this.maxDataSectorsPerEntry > 0;
  }

  /**
   * Commits `sectors` (whole 4 KiB sectors of metadata, built from the in-memory state) through the log.
   * The caller must have flushed the payload they refer to. `durableSize` is the file size known to be
   * durable; `requiredSize` covers every structure (both become MiB multiples in the entry).
   */
  async commit(sectors: LogSector[], durableSize: number, requiredSize: number): Promise<void> {
    if (sectors.length === 0) return;
    if (!this.canLog) throw new VhdxError('UNSUPPORTED', `log of ${this.logLength} bytes is too small to write through`, { file: this.backend.name });
    for (let i = 0; i < sectors.length; i += this.maxDataSectorsPerEntry) {
      await this.commitEntry(sectors.slice(i, i + this.maxDataSectorsPerEntry), durableSize, requiredSize);
    }
  }

  private async commitEntry(sectors: LogSector[], durableSize: number, requiredSize: number): Promise<void> {
    if (this.logGuid === null) {
      // A new LogGuid before this session first writes log space (§3.4), so no older entry can join.
      this.logGuid = randomGuid();
      this.position = 0;
    }
    const descriptors: LogDescriptor[] = sectors.map((s) => ({ fileOffset: s.fileOffset, data: s.data }));
    const entry = encodeLogEntry({
      sequenceNumber: this.sequenceNumber,
      tail: this.position,
      logGuid: this.logGuid,
      flushedFileOffset: Math.floor(durableSize / MiB) * MiB,
      lastFileOffset: Math.ceil(requiredSize / MiB) * MiB,
      descriptors,
    });
    const first = Math.min(entry.length, this.logLength - this.position);
    await this.backend.write(entry.subarray(0, first), this.logOffset + this.position);
    if (first < entry.length) await this.backend.write(entry.subarray(first), this.logOffset);
    await this.backend.flush();
    if (!guidEquals(this.headers.header.logGuid, this.logGuid)) await this.headers.update({ logGuid: this.logGuid });
    for (const s of sectors) await this.backend.write(s.data, s.fileOffset);
    await this.backend.flush();
    this.position = (this.position + entry.length) % this.logLength;
    this.sequenceNumber++;
    this.entriesWritten++;
  }

  /** Marks the log empty (LogGuid zero) once everything logged is applied and durable. */
  async close(): Promise<void> {
    if (!guidIsZero(this.headers.header.logGuid)) await this.headers.update({ logGuid: new Uint8Array(16) });
    this.logGuid = null;
  }
}
