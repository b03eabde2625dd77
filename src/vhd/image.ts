/**
 * A VHD (v1) image opened read-only over a `Backend`: fixed, dynamic, and differencing with its parent
 * attached. VHD is read so its disks can be converted and compared; writing goes through
 * `convertToVhd` (fixed output only), never through an open image, so there is no write path here.
 *
 * Opening validates everything a read will rely on before anything is allocated from it: the footer
 * (the one at the end, or for a dynamic disk the copy at offset 0 when the end is damaged), the dynamic
 * header, and every BAT entry the virtual size needs (each block inside the file and clear of the
 * header and the table). Reads then only ever touch file ranges already known to exist.
 */
import { bytesEqual, decodeUtf16le, humanSize } from '../format/bytes.js';
import { VhdxError } from '../format/errors.js';
import { guidToString, type Guid } from '../format/guid.js';
import { readExactly, readFully, type Backend } from '../io/backend.js';
import { decodeVhdFooter, VHD_EPOCH_SECONDS, VHD_FOOTER_SIZE, type ChsGeometry, type VhdDiskType, type VhdFooter } from './footer.js';
import { decodeVhdDynamicHeader, VHD_DYNAMIC_HEADER_SIZE, type VhdDynamicHeader } from './dynamic-header.js';
import { decodeVhdBat, vhdBatBytes, vhdBitmapBytes, vhdSectorRuns, VHD_SECTOR_SIZE, VHD_UNALLOCATED } from './bat.js';

/** The largest BAT read at open (64 Mi entries: 128 TiB of disk at 2 MiB blocks). */
export const VHD_MAX_BAT_BYTES = 256 * 1024 * 1024;
/** The largest parent locator read: a path of 32767 UTF-16 units with room to spare. */
export const VHD_MAX_LOCATOR_BYTES = 64 * 1024;
/** Sector bitmaps of a differencing disk kept in memory (least recently read dropped first). */
const BITMAP_CACHE_ENTRIES = 256;

/** Where a run of virtual bytes of a VHD comes from. */
export type VhdExtentKind =
  | 'data' // stored in this file at `fileOffset`
  | 'unallocated' // no block: reads as zeros
  | 'parent'; // differencing disk: a block or sectors not in this file, read from the parent

export interface VhdExtent {
  offset: number;
  length: number;
  kind: VhdExtentKind;
  /** `data` runs: where the bytes are in the file. */
  fileOffset?: number;
}

export interface VhdInfo {
  format: 'vhd';
  type: VhdDiskType;
  virtualSize: number;
  originalSize: number;
  fileSize: number;
  /** Dynamic and differencing disks only. */
  blockSize: number | null;
  /** Bytes of allocated blocks (data, without bitmaps); the virtual size for a fixed disk. */
  allocatedBytes: number;
  geometry: ChsGeometry;
  uniqueId: string;
  /** The footer's timestamp as an ISO 8601 date. */
  created: string;
  /** `vhdx 1.0 (Wi2k)`: the creator application, its version and the host OS. */
  creator: string;
  savedState: boolean;
  parentUniqueId: string | null;
  parentName: string | null;
  warnings: string[];
}

/** A W2ku (absolute) or W2ru (relative) parent path of a differencing disk. */
export interface VhdParentPath {
  platformCode: 'W2ku' | 'W2ru';
  path: string;
}

interface Dynamic {
  header: VhdDynamicHeader;
  bat: Uint32Array;
  bitmapBytes: number;
}

function badVhd(message: string, file: string, offset?: number): VhdxError {
  return new VhdxError('BAD_VHD', message, offset === undefined ? { file } : { file, offset });
}

export class VhdImage {
  private parentImage: VhdImage | null = null;
  private ownsParent = false;
  private readonly bitmaps = new Map<number, Uint8Array>();

  private constructor(
    readonly backend: Backend,
    readonly footer: VhdFooter,
    private readonly dynamic: Dynamic | null,
    private readonly fileSize: number,
    readonly warnings: readonly string[],
  ) {}

  /**
   * Opens a VHD read-only. The footer at the end is used when valid; a dynamic or differencing disk
   * whose end footer is damaged is opened from the copy at offset 0, with a warning.
   */
  static async open(backend: Backend): Promise<VhdImage> {
    const file = backend.name;
    const fileSize = await backend.size();
    if (fileSize < VHD_FOOTER_SIZE) throw badVhd(`file is ${fileSize} bytes, too small to hold a VHD footer (${VHD_FOOTER_SIZE})`, file);
    const warnings: string[] = [];
    const endBytes = await readExactly(backend, fileSize - VHD_FOOTER_SIZE, VHD_FOOTER_SIZE, 'VHD footer');
    const copyBytes = await readExactly(backend, 0, VHD_FOOTER_SIZE, 'VHD footer copy');
    let footer: VhdFooter;
    try {
      footer = decodeVhdFooter(endBytes, file);
      if (footer.diskType !== 'fixed' && !bytesEqual(endBytes, copyBytes)) warnings.push('the footer copy at offset 0 differs from the footer at the end of the file');
    } catch (endError) {
      const copy = tryDecode(copyBytes, file);
      if (!copy || copy.diskType === 'fixed') throw endError;
      footer = copy;
      warnings.push(`the footer at the end of the file is damaged (${(endError as Error).message}); using the copy at offset 0`);
    }
    if (footer.diskType === 'fixed') {
      const payload = fileSize - VHD_FOOTER_SIZE;
      if (footer.currentSize > payload) {
        throw badVhd(`fixed VHD footer says ${footer.currentSize} bytes but the file holds ${payload} bytes before the footer`, file);
      }
      return new VhdImage(backend, footer, null, fileSize, warnings);
    }
    const dynamic = await openDynamic(backend, footer, fileSize);
    return new VhdImage(backend, footer, dynamic, fileSize, warnings);
  }

  get type(): VhdDiskType {
    return this.footer.diskType;
  }

  get virtualSize(): number {
    return this.footer.currentSize;
  }

  get uniqueId(): Guid {
    return this.footer.uniqueId;
  }

  /** Dynamic and differencing disks: bytes per block; null for a fixed disk. */
  get blockSize(): number | null {
    return this.dynamic?.header.blockSize ?? null;
  }

  /** Dynamic and differencing disks: the dynamic header; null for a fixed disk. */
  get dynamicHeader(): VhdDynamicHeader | null {
    return this.dynamic?.header ?? null;
  }

  get parent(): VhdImage | null {
    return this.parentImage;
  }

  /**
   * Attaches the parent of a differencing disk. It must be the image the child was made from: its
   * footer's Unique Id is the child's Parent Unique Id (PARENT_MISMATCH otherwise, unless
   * `ignoreParentLinkage`), and its size the child's. `owned`: closed with the child.
   */
  attachParent(parent: VhdImage, options: { owned?: boolean; ignoreParentLinkage?: boolean } = {}): void {
    const file = this.backend.name;
    if (this.type !== 'differencing') throw new VhdxError('INVALID_ARGUMENT', `a ${this.type} VHD has no parent`, { file });
    const expected = this.dynamic!.header.parentUniqueId;
    if (!options.ignoreParentLinkage && !bytesEqual(expected, parent.uniqueId)) {
      throw new VhdxError('PARENT_MISMATCH', `parent ${parent.backend.name} has Unique Id {${guidToString(parent.uniqueId)}}, the child expects {${guidToString(expected)}}`, { file });
    }
    if (parent.virtualSize !== this.virtualSize) {
      throw new VhdxError('PARENT_MISMATCH', `parent ${parent.backend.name} is ${parent.virtualSize} bytes, the child ${this.virtualSize}`, { file });
    }
    this.parentImage = parent;
    this.ownsParent = options.owned ?? false;
  }

  /**
   * The Windows paths of the parent a differencing disk records (W2ru relative, then W2ku absolute,
   * UTF-16LE), each locator's data bounds-checked against the file first. Other platforms are skipped.
   */
  async parentPaths(): Promise<VhdParentPath[]> {
    if (!this.dynamic || this.type !== 'differencing') return [];
    const file = this.backend.name;
    const out: VhdParentPath[] = [];
    for (const entry of this.dynamic.header.parentLocators) {
      if (entry.platformCode !== 'W2ku' && entry.platformCode !== 'W2ru') continue;
      if (entry.dataLength === 0) continue;
      if (entry.dataLength > VHD_MAX_LOCATOR_BYTES || entry.dataOffset + entry.dataLength > this.fileSize) {
        throw badVhd(`VHD parent locator ${entry.platformCode} (${entry.dataLength} bytes at ${entry.dataOffset}) lies outside the ${this.fileSize}-byte file or is too long`, file, entry.dataOffset);
      }
      const bytes = await readExactly(this.backend, entry.dataOffset, entry.dataLength, 'VHD parent locator');
      const path = decodeUtf16le(bytes).replace(/\0+$/, '');
      if (path) out.push({ platformCode: entry.platformCode, path });
    }
    return out.sort((a, b) => (a.platformCode === b.platformCode ? 0 : a.platformCode === 'W2ru' ? -1 : 1));
  }

  /**
   * Runs of [offset, offset + length) in order, adjacent runs of one kind merged (data runs only when
   * contiguous in the file). A differencing disk's sector bitmaps are read as the walk reaches them.
   */
  async *walk(offset = 0, length = this.virtualSize - offset): AsyncGenerator<VhdExtent> {
    this.checkRange(offset, length);
    if (length === 0) return;
    if (!this.dynamic) {
      yield { offset, length, kind: 'data', fileOffset: offset };
      return;
    }
    const { bat, bitmapBytes, header } = this.dynamic;
    const blockSize = header.blockSize;
    let pending: VhdExtent | null = null;
    const push = (run: VhdExtent): VhdExtent | null => {
      if (pending && pending.kind === run.kind && (run.kind !== 'data' || pending.fileOffset! + pending.length === run.fileOffset)) {
        pending.length += run.length;
        return null;
      }
      const done = pending;
      pending = run;
      return done;
    };
    const end = offset + length;
    for (let position = offset; position < end; ) {
      const block = Math.floor(position / blockSize);
      const inBlock = position - block * blockSize;
      const n = Math.min(blockSize - inBlock, end - position);
      const entry = bat[block]!;
      const runs: VhdExtent[] = [];
      if (entry === VHD_UNALLOCATED) {
        runs.push({ offset: position, length: n, kind: this.type === 'differencing' ? 'parent' : 'unallocated' });
      } else {
        const dataStart = entry * VHD_SECTOR_SIZE + bitmapBytes;
        if (this.type !== 'differencing') {
          runs.push({ offset: position, length: n, kind: 'data', fileOffset: dataStart + inBlock });
        } else {
          // Bits cover whole sectors; a run that starts or ends inside a sector takes that sector's bit.
          const bitmap = await this.bitmap(block, entry);
          const firstSector = Math.floor(inBlock / VHD_SECTOR_SIZE);
          const sectors = Math.ceil((inBlock + n) / VHD_SECTOR_SIZE) - firstSector;
          let at = position;
          let sector = firstSector;
          for (const [present, count] of vhdSectorRuns(bitmap, firstSector, sectors)) {
            const runEnd = Math.min(block * blockSize + (sector + count) * VHD_SECTOR_SIZE, position + n);
            runs.push(present ? { offset: at, length: runEnd - at, kind: 'data', fileOffset: dataStart + (at - block * blockSize) } : { offset: at, length: runEnd - at, kind: 'parent' });
            at = runEnd;
            sector += count;
          }
        }
      }
      for (const run of runs) {
        const done = push(run);
        if (done) yield done;
      }
      position += n;
    }
    if (pending) yield pending;
  }

  /** The runs of `walk`, collected. */
  async extents(offset = 0, length = this.virtualSize - offset): Promise<VhdExtent[]> {
    const out: VhdExtent[] = [];
    for await (const run of this.walk(offset, length)) out.push(run);
    return out;
  }

  /** Fills `target` with the virtual bytes at `offset` (the range must lie inside the disk). */
  async readInto(target: Uint8Array, offset: number): Promise<void> {
    for await (const run of this.walk(offset, target.length)) {
      const piece = target.subarray(run.offset - offset, run.offset - offset + run.length);
      if (run.kind === 'unallocated') piece.fill(0);
      else if (run.kind === 'parent') await this.requireParent().readInto(piece, run.offset);
      else {
        const got = await readFully(this.backend, piece, run.fileOffset!);
        if (got !== piece.length) throw new VhdxError('TRUNCATED', `file ends inside VHD data (needs ${piece.length} bytes at offset ${run.fileOffset})`, { file: this.backend.name, offset: run.fileOffset! });
      }
    }
  }

  async read(offset: number, length: number): Promise<Uint8Array> {
    const out = new Uint8Array(length);
    await this.readInto(out, offset);
    return out;
  }

  /**
   * True when [offset, offset + length) certainly reads as zeros without reading data: unallocated
   * blocks, parent runs the parent knows to be zero, and for a fixed disk a hole the backend can name.
   */
  async knownZero(offset: number, length: number): Promise<boolean> {
    if (!this.dynamic) return this.backend.nextData ? this.backend.nextData(offset) >= offset + length : false;
    for await (const run of this.walk(offset, length)) {
      if (run.kind === 'data') return false;
      if (run.kind === 'parent' && !(this.parentImage && (await this.parentImage.knownZero(run.offset, run.length)))) return false;
    }
    return true;
  }

  /**
   * Where a dynamic or differencing disk's structures lie in the file (null for a fixed disk): the
   * dynamic header, the table (its entries as read, `VHD_UNALLOCATED` for none), the bitmap size and
   * the file's size. For `checkVhd`.
   */
  layout(): { headerOffset: number; header: VhdDynamicHeader; bat: Uint32Array; bitmapBytes: number; fileSize: number } | null {
    if (!this.dynamic) return null;
    return { headerOffset: this.footer.dataOffset!, header: this.dynamic.header, bat: this.dynamic.bat, bitmapBytes: this.dynamic.bitmapBytes, fileSize: this.fileSize };
  }

  /** Bytes of the file. */
  get fileBytes(): number {
    return this.fileSize;
  }

  info(): VhdInfo {
    const f = this.footer;
    const header = this.dynamic?.header ?? null;
    let allocatedBytes = f.currentSize;
    if (this.dynamic) {
      let blocks = 0;
      for (const entry of this.dynamic.bat) if (entry !== VHD_UNALLOCATED) blocks++;
      allocatedBytes = blocks * this.dynamic.header.blockSize;
    }
    const version = `${f.creatorVersion >>> 16}.${f.creatorVersion & 0xffff}`;
    return {
      format: 'vhd',
      type: f.diskType,
      virtualSize: f.currentSize,
      originalSize: f.originalSize,
      fileSize: this.fileSize,
      blockSize: header?.blockSize ?? null,
      allocatedBytes,
      geometry: { ...f.geometry },
      uniqueId: guidToString(f.uniqueId),
      created: new Date((VHD_EPOCH_SECONDS + f.timestamp) * 1000).toISOString(),
      creator: `${f.creatorApplication.replace(/\0/g, '').trim() || '(none)'} ${version} (${f.creatorHostOs.replace(/\0/g, '').trim() || 'unknown host'})`,
      savedState: f.savedState,
      parentUniqueId: f.diskType === 'differencing' && header ? guidToString(header.parentUniqueId) : null,
      parentName: f.diskType === 'differencing' && header ? header.parentName : null,
      warnings: [...this.warnings],
    };
  }

  /** Closes the backend, and the parent when it was attached as owned. */
  async close(): Promise<void> {
    await this.backend.close();
    if (this.parentImage && this.ownsParent) await this.parentImage.close();
  }

  private requireParent(): VhdImage {
    if (!this.parentImage) throw new VhdxError('PARENT_REQUIRED', 'this differencing VHD needs its parent attached to read this range', { file: this.backend.name });
    return this.parentImage;
  }

  private checkRange(offset: number, length: number): void {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > this.virtualSize) {
      throw new VhdxError('OUT_OF_RANGE', `range [${offset}, +${length}) is outside the ${humanSize(this.virtualSize)} virtual disk`, { file: this.backend.name });
    }
  }

  private async bitmap(block: number, entry: number): Promise<Uint8Array> {
    const cached = this.bitmaps.get(block);
    if (cached) {
      this.bitmaps.delete(block);
      this.bitmaps.set(block, cached); // most recently used last
      return cached;
    }
    const bitmap = await readExactly(this.backend, entry * VHD_SECTOR_SIZE, this.dynamic!.bitmapBytes, 'VHD sector bitmap');
    if (this.bitmaps.size >= BITMAP_CACHE_ENTRIES) this.bitmaps.delete(this.bitmaps.keys().next().value!);
    this.bitmaps.set(block, bitmap);
    return bitmap;
  }
}

function tryDecode(bytes: Uint8Array, file: string): VhdFooter | null {
  try {
    return decodeVhdFooter(bytes, file);
  } catch {
    return null;
  }
}


/** Intervals [start, end) overlap. */
function overlaps(a: number, aEnd: number, b: number, bEnd: number): boolean {
  return a < bEnd && b < aEnd;
}

/**
 * The dynamic header and BAT, judged against the file: header and table inside it, enough entries for
 * the virtual size, every allocated block inside the file and clear of the header, the table and the
 * footer copy at offset 0.
 */
async function openDynamic(backend: Backend, footer: VhdFooter, fileSize: number): Promise<Dynamic> {
  const file = backend.name;
  const headerOffset = footer.dataOffset!;
  if (headerOffset < VHD_FOOTER_SIZE || headerOffset + VHD_DYNAMIC_HEADER_SIZE > fileSize) {
    throw badVhd(`VHD dynamic header offset ${headerOffset} lies outside the ${fileSize}-byte file`, file, headerOffset);
  }
  const header = decodeVhdDynamicHeader(await readExactly(backend, headerOffset, VHD_DYNAMIC_HEADER_SIZE, 'VHD dynamic header'), file);
  const blockSize = header.blockSize;
  const entries = Math.ceil(footer.currentSize / blockSize);
  if (header.maxTableEntries < entries) {
    throw badVhd(`VHD BAT has ${header.maxTableEntries} entries but the ${footer.currentSize}-byte disk needs ${entries} blocks of ${blockSize} bytes`, file, headerOffset);
  }
  const batBytes = vhdBatBytes(entries);
  if (batBytes > VHD_MAX_BAT_BYTES) throw new VhdxError('UNSUPPORTED', `VHD BAT of ${entries} entries is larger than ${humanSize(VHD_MAX_BAT_BYTES)}`, { file });
  const tableOffset = header.tableOffset;
  // The table region holds Max Table Entries entries (spec); an absurd count runs past the end of the file.
  if (tableOffset < VHD_FOOTER_SIZE || tableOffset + header.maxTableEntries * 4 > fileSize) {
    throw badVhd(`VHD BAT (${header.maxTableEntries} entries at offset ${tableOffset}) lies outside the ${fileSize}-byte file`, file, tableOffset);
  }
  if (overlaps(tableOffset, tableOffset + entries * 4, headerOffset, headerOffset + VHD_DYNAMIC_HEADER_SIZE)) {
    throw badVhd(`VHD BAT at offset ${tableOffset} overlaps the dynamic header at ${headerOffset}`, file, tableOffset);
  }
  const bat = decodeVhdBat(await readExactly(backend, tableOffset, entries * 4, 'VHD BAT'), entries, file);
  const bitmapBytes = vhdBitmapBytes(blockSize);
  for (let block = 0; block < entries; block++) {
    const entry = bat[block]!;
    if (entry === VHD_UNALLOCATED) continue;
    const start = entry * VHD_SECTOR_SIZE;
    // The last block may be cut short where the virtual disk ends.
    const end = start + bitmapBytes + Math.min(blockSize, footer.currentSize - block * blockSize);
    const where = `VHD BAT entry ${block} (sector ${entry}, file offset ${start})`;
    if (start < VHD_FOOTER_SIZE || end > fileSize) throw badVhd(`${where} points outside the ${fileSize}-byte file`, file, tableOffset + block * 4);
    if (overlaps(start, end, headerOffset, headerOffset + VHD_DYNAMIC_HEADER_SIZE) || overlaps(start, end, tableOffset, tableOffset + entries * 4)) {
      throw badVhd(`${where} overlaps the dynamic header or the BAT`, file, tableOffset + block * 4);
    }
  }
  return { header, bat, bitmapBytes };
}
