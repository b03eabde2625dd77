/**
 * Edits of an image's shape below the block write path: the region table (a BAT region grown or
 * moved), metadata items (the virtual size, the file parameters) and BAT entries outside the geometry
 * the image has now. `VhdxImage` holds its geometry fixed for the session, so resize and the fixed to
 * dynamic conversion work on the opened layout directly, one session per step, each closed clean
 * before the next opens the result.
 *
 * Every change here reaches the file only through the log (format reference §4.4 rule 5, §8.8): the
 * region tables at 192 KiB and 256 KiB are 4 KiB-aligned sectors the log may write like any other
 * (replay refuses only targets below 192 KiB). A step that must be all or nothing (both region table
 * copies) goes in one entry, which replay applies whole or not at all; a step longer than one entry is
 * ordered by its caller so that every applied prefix is a valid image.
 */
import { MiB } from '../format/bytes.js';
import { BAT_ENTRY_SIZE, encodeBatEntry } from '../format/bat.js';
import { LOG_SECTOR_SIZE, REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET, REGION_TABLE_SIZE } from '../format/constants.js';
import { VhdxError } from '../format/errors.js';
import { guidEquals, randomGuid, type Guid } from '../format/guid.js';
import { encodeRegionTable, type RegionTable } from '../format/region-table.js';
import { readFully, writeZeros, type Backend } from '../io/backend.js';
import { LogWriter, type LogSector } from '../image/log-writer.js';
import { openLayout, type OpenedLayout } from '../image/open.js';
import { lastUsedEnd } from './findings.js';

export class LayoutEdit {
  private readonly log: LogWriter;
  private begun = false;
  /** The file's size as this session left it. */
  fileEnd: number;

  private constructor(
    readonly backend: Backend,
    readonly layout: OpenedLayout,
    private readonly visible: boolean,
  ) {
    this.log = new LogWriter(backend, layout.headerWriter, layout.header.logOffset, layout.header.logLength);
    this.fileEnd = layout.fileSize;
  }

  /**
   * A writable open (a dirty log is replayed first, so the file holds the current metadata). `visible`
   * (default true) says the edit changes what readers see, so the session gets a new DataWriteGuid;
   * an edit readers cannot see (fixed to dynamic) keeps it, and children of the image stay valid.
   */
  static async open(backend: Backend, options: { visible?: boolean } = {}): Promise<LayoutEdit> {
    return new LayoutEdit(backend, await openLayout(backend, { readOnly: false }), options.visible ?? true);
  }

  get file(): string {
    return this.backend.name;
  }

  /** Every byte range in use (structures and blocks): a writable open judged the whole BAT. */
  get used(): { start: number; end: number }[] {
    return this.layout.used!;
  }

  /** Where new space starts: past the file and past everything referenced, 1 MiB aligned. */
  get spaceEnd(): number {
    return Math.ceil(Math.max(this.fileEnd, lastUsedEnd(this.used)) / MiB) * MiB;
  }

  /**
   * §3.4: one header update with a fresh FileWriteGuid, and a fresh DataWriteGuid when what readers see
   * changes (a new size), before anything else is written.
   */
  async begin(): Promise<void> {
    if (this.begun) return;
    await this.layout.headerWriter.update(this.visible ? { fileWriteGuid: randomGuid(), dataWriteGuid: randomGuid() } : { fileWriteGuid: randomGuid() });
    this.begun = true;
  }

  /** Payload-side bytes (not yet referenced by anything): written in place, made durable by `commit`. */
  async writeData(data: Uint8Array, fileOffset: number): Promise<void> {
    await this.begin();
    await this.backend.write(data, fileOffset);
    this.fileEnd = Math.max(this.fileEnd, fileOffset + data.length);
  }

  async writeZeros(fileOffset: number, length: number, signal?: AbortSignal, onBytes?: (n: number) => void): Promise<void> {
    await this.begin();
    const step = 64 * MiB;
    for (let done = 0; done < length; done += step) {
      signal?.throwIfAborted();
      const n = Math.min(step, length - done);
      await writeZeros(this.backend, fileOffset + done, n);
      this.fileEnd = Math.max(this.fileEnd, fileOffset + done + n);
      onBytes?.(n);
    }
  }

  /** The sectors of both region table copies that change when the table becomes `table`. */
  async regionTableSectors(table: RegionTable): Promise<LogSector[]> {
    const next = encodeRegionTable(table);
    const sectors: LogSector[] = [];
    for (const copy of [REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET]) {
      const current = new Uint8Array(REGION_TABLE_SIZE);
      await readFully(this.backend, current, copy);
      sectors.push(...changedSectors(current, next, copy));
    }
    return sectors;
  }

  /** The metadata sectors that change when system item `itemId` (of the same length) holds `value`. */
  async metadataItemSectors(itemId: Guid, value: Uint8Array): Promise<LogSector[]> {
    const region = this.layout.metadataRegion;
    const entry = this.layout.metadata.entries.find((e) => !e.isUser && guidEquals(e.itemId, itemId));
    if (!entry || entry.length !== value.length) throw new VhdxError('BAD_METADATA', 'a system metadata item to update is missing or has another length', { file: this.file });
    const at = region.fileOffset + entry.offset;
    const first = Math.floor(at / LOG_SECTOR_SIZE) * LOG_SECTOR_SIZE;
    const current = new Uint8Array(Math.ceil((at + value.length) / LOG_SECTOR_SIZE) * LOG_SECTOR_SIZE - first);
    await readFully(this.backend, current, first);
    const next = current.slice();
    next.set(value, at - first);
    return changedSectors(current, next, first);
  }

  /**
   * The BAT sectors that change when entries `[first, first + states.length)` of the BAT region at
   * `batOffset` become the given states and offsets (entries outside the image's current geometry
   * included: the region is read from the file).
   */
  async batSectors(batOffset: number, first: number, entry: (index: number) => { state: number; offset: number }, count: number): Promise<LogSector[]> {
    const sectors: LogSector[] = [];
    const perSector = LOG_SECTOR_SIZE / BAT_ENTRY_SIZE;
    for (let s = Math.floor(first / perSector); s * perSector < first + count; s++) {
      const current = new Uint8Array(LOG_SECTOR_SIZE);
      await readFully(this.backend, current, batOffset + s * LOG_SECTOR_SIZE);
      const next = current.slice();
      for (let index = Math.max(first, s * perSector); index < Math.min(first + count, (s + 1) * perSector); index++) {
        const e = entry(index);
        encodeBatEntry(next, index - s * perSector, e.state, e.offset);
      }
      sectors.push(...changedSectors(current, next, batOffset + s * LOG_SECTOR_SIZE));
    }
    return sectors;
  }

  /**
   * Rule 1 of the project then rule 2: everything written so far is synced, then `sectors` go through
   * the log in order (applied and synced). With `atomic`, they must fit one log entry.
   */
  async commit(sectors: LogSector[], options: { atomic?: boolean; requiredSize?: number } = {}): Promise<void> {
    await this.begin();
    if (options.atomic && sectors.length > this.log.sectorsPerEntry) {
      throw new VhdxError('UNSUPPORTED', `a ${this.layout.header.logLength}-byte log cannot carry ${sectors.length} sectors in one entry`, { file: this.file });
    }
    await this.backend.flush();
    await this.log.commit(sectors, this.fileEnd, Math.max(this.fileEnd, options.requiredSize ?? 0));
  }

  /** Leaves the log empty and the headers clean (nothing can replay over what follows). */
  async close(): Promise<void> {
    if (this.begun) await this.log.close();
  }
}

function changedSectors(current: Uint8Array, next: Uint8Array, fileOffset: number): LogSector[] {
  const out: LogSector[] = [];
  for (let at = 0; at < next.length; at += LOG_SECTOR_SIZE) {
    const a = current.subarray(at, at + LOG_SECTOR_SIZE);
    const b = next.subarray(at, at + LOG_SECTOR_SIZE);
    if (b.some((x, i) => x !== a[i])) out.push({ fileOffset: fileOffset + at, data: b.slice() });
  }
  return out;
}
