/**
 * Opening an image: every structure is read, checked against the file size and the spec's limits before
 * anything is allocated from it, and the log is replayed (to the file when writable, in memory when not).
 * Order matters: headers first, then the log (it may rewrite region tables, metadata and BAT), then the
 * region table, metadata and BAT, all read through the replayed view.
 */
import { MiB, bytesEqual, isMultipleOf } from '../format/bytes.js';
import { batGeometry, BAT_ENTRY_SIZE, SB_BLOCK_PRESENT, type BatGeometry } from '../format/bat.js';
import {
  ALIGNMENT,
  FILE_IDENTIFIER_OFFSET,
  HEADER_SECTION_SIZE,
  MAX_BLOCK_SIZE,
  MAX_VIRTUAL_DISK_SIZE,
  METADATA_FILE_PARAMETERS,
  METADATA_LOGICAL_SECTOR_SIZE,
  METADATA_PARENT_LOCATOR,
  METADATA_PHYSICAL_SECTOR_SIZE,
  METADATA_VIRTUAL_DISK_ID,
  METADATA_VIRTUAL_DISK_SIZE,
  MIN_BLOCK_SIZE,
  REGION_BAT,
  REGION_METADATA,
  REGION_TABLE1_OFFSET,
  REGION_TABLE2_OFFSET,
  REGION_TABLE_SIZE,
  SECTOR_BITMAP_BLOCK_SIZE,
} from '../format/constants.js';
import { VhdxError } from '../format/errors.js';
import { decodeFileIdentifier, FILE_IDENTIFIER_DECODED_SIZE } from '../format/file-identifier.js';
import { guidEquals, guidIsZero, guidToString, randomGuid, type Guid } from '../format/guid.js';
import type { Header } from '../format/header.js';
import {
  METADATA_TABLE_SIZE,
  MAX_METADATA_ITEM_LENGTH,
  decodeFileParameters,
  decodeMetadataTable,
  decodeSectorSize,
  decodeVirtualDiskId,
  decodeVirtualDiskSize,
  type MetadataEntry,
} from '../format/metadata.js';
import { decodeParentLocator, type ParentLocator } from '../format/parent-locator.js';
import { decodeRegionTable, type RegionEntry, type RegionTable } from '../format/region-table.js';
import { readFully, type Backend } from '../io/backend.js';
import { BatTable, DEFAULT_BAT_CACHE_BYTES, WHOLE_BAT_LIMIT, findOverlap, pageCheck, type BatProblem, type Range } from './bat-table.js';
import { SectorBitmaps } from './sector-bitmaps.js';
import { chooseHeader, HeaderWriter, readHeaderCopies, type HeaderCopy } from './headers.js';
import type { VhdxImage } from './image.js';
import { applySequence, findActiveSequence, LogOverlay, validateSequenceTargets, type ActiveSequence } from './log-replay.js';

/** What happened to the log at open. */
export type LogState =
  | 'empty' // LogGuid zero: nothing to replay
  | 'replayed' // a dirty log was written to the file (writable open)
  | 'replayed-in-memory' // a dirty log is applied in memory only (read-only open)
  | 'uncommitted'; // LogGuid set but no complete entry: nothing to replay (see OpenOptions.strictLog)

export interface OpenOptions {
  readOnly?: boolean;
  /**
   * Refuse an image whose header marks the log in use but whose log holds no complete entry sequence
   * (the spec calls it corrupt). By default such an image opens as clean with a warning: nothing in
   * that log was ever committed, and QEMU leaves exactly this when it dies between its header update and
   * its first log flush.
   */
  strictLog?: boolean;
  /**
   * Writable opens: a block allocated past the end of the file is not zero-filled; the file is extended
   * and the unwritten rest of the block stays a hole. Much faster for small scattered writes, but the
   * file becomes sparse, which Hyper-V refuses. Space reused inside the file is always zero-filled.
   */
  sparse?: boolean;
  /**
   * Differencing disks: the parent image (opened by the caller, read-only). Reads of sectors the child
   * does not hold go to it. Without one, such reads fail with PARENT_REQUIRED.
   */
  parent?: VhdxImage;
  /**
   * Accept a parent whose DataWriteGuid matches neither parent_linkage nor parent_linkage2 (it was
   * changed after the child was made, so the chain may read garbage). For forensic use only.
   */
  ignoreParentLinkage?: boolean;
  /**
   * Bytes of BAT kept in memory (default 32 MiB). A BAT up to 4 MiB (by default) or up to this size
   * (when given) is read whole at open; a larger one (a 64 TiB disk with 1 MiB blocks has 513 MiB of
   * it) is read a 1 MiB page at a time as blocks are used, the least recently used pages dropped. A sector bitmap cache of `batCacheBytes / 2` (at least
   * one 1 MiB bitmap) goes with it in differencing disks.
   */
  batCacheBytes?: number;
}

/** Internal: the layout-level open used by check and repair. */
export interface OpenLayoutOptions extends OpenOptions {
  /**
   * BAT entries with an illegal state, or pointing outside the file or into structures or other
   * blocks, do not fail the open. They are listed in `batProblems`, left out of the used ranges, and
   * must not be read through (so the image API never opens this way).
   */
  collectBatProblems?: boolean;
  /** With `collectBatProblems`: told the fraction of the BAT scanned (0 to 1) as the scan goes. */
  onBatProgress?: (fraction: number) => void;
}

export interface ImageMetadata {
  blockSize: number;
  leaveBlockAllocated: boolean;
  hasParent: boolean;
  virtualDiskSize: number;
  virtualDiskId: Guid;
  logicalSectorSize: number;
  physicalSectorSize: number;
  parentLocator: ParentLocator | null;
  entries: MetadataEntry[];
}

export interface OpenedLayout {
  creator: string;
  header: Header;
  headerWriter: HeaderWriter;
  regionTable: RegionTable;
  /** Both header copies as read, before any update this open made, each judged on its own. */
  headerCopies: [HeaderCopy, HeaderCopy];
  /** Both region table copies as readers see them (the log applied), each judged on its own. */
  regionTableCopies: RegionTableCopy[];
  batRegion: RegionEntry;
  metadataRegion: RegionEntry;
  metadata: ImageMetadata;
  geometry: BatGeometry;
  bat: BatTable;
  /**
   * Every byte range referenced at open: header section, log, regions, present blocks. Null when the
   * BAT is read lazily and the open was read-only (nothing needed the whole table).
   */
  used: Range[] | null;
  /** Present blocks at open, when the whole table was judged (see `used`). */
  allocatedBlocks: number | null;
  logState: LogState;
  /** Present after a read-only open of a dirty log; every metadata read must go through it. */
  overlay: LogOverlay | null;
  fileSize: number;
  warnings: string[];
  /** Bad BAT entries, when opened with `collectBatProblems` (otherwise the open throws at the first). */
  batProblems: BatProblem[];
  /** Differencing disks: the sector bitmap blocks (§7.7), read when first needed. */
  sectorBitmaps: SectorBitmaps;
}

export async function openLayout(backend: Backend, options: OpenLayoutOptions = {}): Promise<OpenedLayout> {
  const file = backend.name;
  const readOnly = options.readOnly ?? backend.readOnly;
  const warnings: string[] = [];
  let fileSize = await backend.size();

  const identifier = new Uint8Array(Math.min(fileSize, FILE_IDENTIFIER_DECODED_SIZE));
  await readFully(backend, identifier, FILE_IDENTIFIER_OFFSET);
  let creator: string;
  try {
    creator = decodeFileIdentifier(identifier).creator;
  } catch (error) {
    throw withFile(error, file);
  }
  if (fileSize < HEADER_SECTION_SIZE) {
    throw new VhdxError('TRUNCATED', `file is ${fileSize} bytes, shorter than the 1 MiB header section`, { file });
  }

  const chosen = chooseHeader(await readHeaderCopies(backend), file);
  warnings.push(...chosen.warnings);
  const headerWriter = new HeaderWriter(backend, chosen);
  validateHeader(chosen.header, fileSize, file);

  // ---- Log (§8.7)
  let logState: LogState = 'empty';
  let overlay: LogOverlay | null = null;
  const header = chosen.header;
  let sequence: ActiveSequence | null = null;
  if (!guidIsZero(header.logGuid)) {
    const log = new Uint8Array(header.logLength);
    await readFully(backend, log, header.logOffset);
    sequence = findActiveSequence(log, header.logGuid);
    if (sequence === null) {
      const problem = `log ${guidToString(header.logGuid)} is marked in use but holds no complete entry sequence`;
      if (options.strictLog) throw new VhdxError('BAD_LOG', problem, { file, offset: header.logOffset });
      warnings.push(`${problem}: nothing was committed to it, so the image is opened as clean`);
      logState = 'uncommitted';
      if (!readOnly) await headerWriter.update({ fileWriteGuid: randomGuid(), logGuid: new Uint8Array(16) });
    }
  }
  if (sequence) {
    validateSequenceTargets(sequence, file, fileSize);
    if (fileSize < sequence.head.header.flushedFileOffset) {
      throw new VhdxError('TRUNCATED', `file is ${fileSize} bytes but the log says ${sequence.head.header.flushedFileOffset} bytes were durable: it was truncated`, { file });
    }
    if (readOnly) {
      overlay = new LogOverlay(sequence);
      logState = 'replayed-in-memory';
    } else {
      // §3.4 and §8.7 step 8: a new FileWriteGuid precedes every other modification, replay included.
      // DataWriteGuid stays: replay restores what readers already see, so children stay valid.
      await headerWriter.update({ fileWriteGuid: randomGuid() });
      await applySequence(backend, sequence);
      await headerWriter.update({ logGuid: new Uint8Array(16) });
      fileSize = await backend.size();
      logState = 'replayed';
    }
  }
  // Everything must lie inside the file that exists: a log may rewrite bytes, but its LastFileOffset
  // and far-reaching descriptors cannot conjure regions or blocks (nor make us allocate for them).
  const effectiveSize = fileSize;
  const readMeta = async (position: number, length: number): Promise<Uint8Array> => {
    const out = new Uint8Array(length);
    await readFully(backend, out, position);
    overlay?.patch(out, position);
    return out;
  };

  // ---- Region table (§4)
  const { table: regionTable, copies: regionTableCopies } = await chooseRegionTable(readMeta, file, warnings);
  const { batRegion, metadataRegion } = validateRegions(regionTable, header, effectiveSize, file);

  // ---- Metadata (§5)
  const metadata = await readMetadata(readMeta, metadataRegion, file);
  const geometry = batGeometry(metadata.virtualDiskSize, metadata.blockSize, metadata.logicalSectorSize, metadata.hasParent);

  // ---- BAT (§7)
  const requiredBytes = geometry.requiredEntries * BAT_ENTRY_SIZE;
  if (batRegion.length < requiredBytes) {
    throw new VhdxError('BAD_BAT', `BAT region is ${batRegion.length} bytes but ${geometry.requiredEntries} entries need ${requiredBytes}`, { file, offset: batRegion.fileOffset });
  }
  const cacheBytes = options.batCacheBytes ?? DEFAULT_BAT_CACHE_BYTES;
  if (!Number.isSafeInteger(cacheBytes) || cacheBytes < 4096) throw new VhdxError('INVALID_ARGUMENT', `batCacheBytes ${cacheBytes} is below 4096`, { file });
  // Whole 4 KiB sectors: the writer logs the BAT a sector at a time.
  const source = { backend, fileOffset: batRegion.fileOffset, length: Math.min(batRegion.length, Math.ceil(requiredBytes / 4096) * 4096), patch: (b: Uint8Array, at: number) => overlay?.patch(b, at) };
  const structures: Range[] = [
    { start: 0, end: HEADER_SECTION_SIZE, what: 'header section' },
    ...regionTable.entries.map((r) => ({ start: r.fileOffset, end: r.fileOffset + r.length, what: regionName(r) })),
  ];
  if (header.logLength > 0) structures.push({ start: header.logOffset, end: header.logOffset + header.logLength, what: 'log' });
  const batOptions = { hasParent: metadata.hasParent, fileSize: effectiveSize, structures, file, batOffset: batRegion.fileOffset };
  // Read whole: a BAT up to 4 MiB by default; up to the cache when its size is given.
  const lazy = source.length > (options.batCacheBytes === undefined ? WHOLE_BAT_LIMIT : cacheBytes);
  const bat = lazy
    ? BatTable.lazy(geometry, source, { cacheBytes, ...(options.collectBatProblems || !readOnly ? {} : { check: pageCheck(batOptions, warnings) }) })
    : await BatTable.resident(geometry, source);
  // The whole table is judged at open when it is in memory anyway, when the image will be written (the
  // allocator needs every block's place, and nothing may be written over a block another entry claims;
  // later its pages hold only what this session wrote), and for check; a lazily read one opened
  // read-only is judged a page at a time as it is read.
  let checked: { warnings: string[]; used: Range[] | null; problems: BatProblem[]; allocatedBlocks: number | null } = { warnings: [], used: null, problems: [], allocatedBlocks: null };
  if (options.collectBatProblems) checked = await bat.inspect({ ...batOptions, ...(options.onBatProgress ? { onProgress: options.onBatProgress } : {}) });
  else if (!lazy || !readOnly) checked = { ...(await bat.validate(batOptions)), problems: [] };
  warnings.push(...checked.warnings);

  // Sector bitmaps (differencing only): whole 1 MiB blocks, read through the log overlay when first
  // needed. Each lies inside the file (checked with its entry), so one is never larger than the file.
  const bad = new Set(checked.problems.map((p) => p.chunk).filter((c) => c !== undefined));
  const sectorBitmaps = new SectorBitmaps(bat, (chunk) => !bad.has(chunk), readMeta, Math.max(1, Math.floor(cacheBytes / 2 / SECTOR_BITMAP_BLOCK_SIZE)));

  return {
    creator,
    header: headerWriter.header,
    headerWriter,
    regionTable,
    headerCopies: chosen.copies,
    regionTableCopies,
    batRegion,
    metadataRegion,
    metadata,
    geometry,
    bat,
    used: checked.used,
    allocatedBlocks: checked.allocatedBlocks,
    logState,
    overlay,
    fileSize,
    warnings,
    batProblems: checked.problems,
    sectorBitmaps,
  };
}

function withFile(error: unknown, file: string): unknown {
  if (error instanceof VhdxError && error.file === undefined) error.file = file;
  return error;
}

/** §3.2 step 4 and §3.1: judged only after the current header is chosen. */
function validateHeader(header: Header, fileSize: number, file: string): void {
  if (header.version !== 1) {
    throw new VhdxError('UNSUPPORTED', `header version ${header.version} is not supported (expected 1)`, { file });
  }
  const logInUse = !guidIsZero(header.logGuid);
  if (logInUse && header.logVersion !== 0) {
    throw new VhdxError('UNSUPPORTED', `log version ${header.logVersion} is not supported (expected 0)`, { file });
  }
  if (header.logLength === 0) {
    if (logInUse) throw new VhdxError('BAD_HEADER', 'log is marked in use but has length 0', { file });
    return;
  }
  if (!isMultipleOf(header.logLength, MiB) || !isMultipleOf(header.logOffset, ALIGNMENT) || header.logOffset < HEADER_SECTION_SIZE) {
    throw new VhdxError('BAD_HEADER', `log at offset ${header.logOffset} with length ${header.logLength} is not 1 MiB aligned after the header section`, { file });
  }
  if (header.logOffset + header.logLength > fileSize) {
    throw new VhdxError('TRUNCATED', `log [${header.logOffset}, ${header.logOffset + header.logLength}) extends past the end of the ${fileSize}-byte file`, { file });
  }
}

type ReadMeta = (position: number, length: number) => Promise<Uint8Array>;

/** §4.4 step 1: copy 1 when valid, else copy 2; a warning when one is bad or they differ. */
/** One region table copy as read (with the log applied when a read-only open left one pending). */
export interface RegionTableCopy {
  raw: Uint8Array;
  table: RegionTable | null;
  /** Why the copy is unusable, when it is. */
  problem: string | null;
}

/** Each region table copy judged on its own (§4.1). */
export function judgeRegionTables(raws: Uint8Array[]): RegionTableCopy[] {
  return raws.map((raw) => {
    try {
      return { raw, table: decodeRegionTable(raw), problem: null };
    } catch (error) {
      if (!(error instanceof VhdxError)) throw error;
      return { raw, table: null, problem: error.message };
    }
  });
}

async function chooseRegionTable(readMeta: ReadMeta, file: string, warnings: string[]): Promise<{ table: RegionTable; copies: RegionTableCopy[] }> {
  const raws: Uint8Array[] = [];
  for (const offset of [REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET]) raws.push(await readMeta(offset, REGION_TABLE_SIZE));
  const copies = judgeRegionTables(raws);
  copies.forEach((c, i) => {
    if (c.problem !== null) warnings.push(`region table copy ${i + 1} (at ${i === 0 ? REGION_TABLE1_OFFSET : REGION_TABLE2_OFFSET}) is unusable: ${c.problem}`);
  });
  const table = copies[0]!.table ?? copies[1]!.table;
  if (!table) {
    throw new VhdxError('BAD_REGION_TABLE', 'neither region table copy is valid', { file, offset: REGION_TABLE1_OFFSET });
  }
  if (copies[0]!.table && copies[1]!.table && !bytesEqual(raws[0]!, raws[1]!)) warnings.push('the two region table copies differ; using copy 1');
  return { table, copies };
}

function regionName(r: RegionEntry): string {
  if (guidEquals(r.guid, REGION_BAT)) return 'BAT region';
  if (guidEquals(r.guid, REGION_METADATA)) return 'metadata region';
  return `region ${guidToString(r.guid)}`;
}

/** §4.2-§4.4: alignment, bounds, required GUIDs, BAT and metadata exactly once, no overlaps. */
function validateRegions(table: RegionTable, header: Header, fileSize: number, file: string): { batRegion: RegionEntry; metadataRegion: RegionEntry } {
  let batRegion: RegionEntry | undefined;
  let metadataRegion: RegionEntry | undefined;
  const ranges: Range[] = [{ start: 0, end: HEADER_SECTION_SIZE, what: 'header section' }];
  if (header.logLength > 0) ranges.push({ start: header.logOffset, end: header.logOffset + header.logLength, what: 'log' });
  for (const r of table.entries) {
    const name = regionName(r);
    if (!isMultipleOf(r.fileOffset, ALIGNMENT) || r.fileOffset < HEADER_SECTION_SIZE || !isMultipleOf(r.length, MiB) || r.length === 0) {
      throw new VhdxError('BAD_REGION_TABLE', `${name} at offset ${r.fileOffset} with length ${r.length} is not 1 MiB aligned after the header section`, { file });
    }
    if (r.fileOffset + r.length > fileSize) {
      throw new VhdxError('TRUNCATED', `${name} [${r.fileOffset}, ${r.fileOffset + r.length}) extends past the end of the ${fileSize}-byte file`, { file });
    }
    if (guidEquals(r.guid, REGION_BAT)) {
      if (batRegion) throw new VhdxError('BAD_REGION_TABLE', 'the BAT region appears twice', { file });
      batRegion = r;
    } else if (guidEquals(r.guid, REGION_METADATA)) {
      if (metadataRegion) throw new VhdxError('BAD_REGION_TABLE', 'the metadata region appears twice', { file });
      metadataRegion = r;
    } else if (r.required) {
      throw new VhdxError('UNKNOWN_REQUIRED_REGION', `unknown region ${guidToString(r.guid)} is marked required`, { file, offset: REGION_TABLE1_OFFSET });
    }
    ranges.push({ start: r.fileOffset, end: r.fileOffset + r.length, what: name });
  }
  if (!batRegion) throw new VhdxError('BAD_REGION_TABLE', 'no BAT region', { file });
  if (!metadataRegion) throw new VhdxError('BAD_REGION_TABLE', 'no metadata region', { file });
  const overlap = findOverlap(ranges);
  if (overlap) {
    throw new VhdxError('OVERLAP', `${overlap[0].what} overlaps ${overlap[1].what}`, { file, offset: overlap[1].start });
  }
  return { batRegion, metadataRegion };
}

/** The metadata items this version knows (§6.2), with their names in the spec. */
export const KNOWN_ITEMS: { id: Guid; name: string }[] = [
  { id: METADATA_FILE_PARAMETERS, name: 'File Parameters' },
  { id: METADATA_VIRTUAL_DISK_SIZE, name: 'Virtual Disk Size' },
  { id: METADATA_VIRTUAL_DISK_ID, name: 'Virtual Disk ID' },
  { id: METADATA_LOGICAL_SECTOR_SIZE, name: 'Logical Sector Size' },
  { id: METADATA_PHYSICAL_SECTOR_SIZE, name: 'Physical Sector Size' },
  { id: METADATA_PARENT_LOCATOR, name: 'Parent Locator' },
];

/** §5: the table, each item's bounds, unknown required items, then the values and their legal ranges. */
/** Known metadata items within this many bytes of each other are read at once. */
const METADATA_SPAN_READ = 64 * 1024;

async function readMetadata(readMeta: ReadMeta, region: RegionEntry, file: string): Promise<ImageMetadata> {
  const bad = (message: string): VhdxError => new VhdxError('BAD_METADATA', message, { file, offset: region.fileOffset });
  if (region.length < METADATA_TABLE_SIZE) throw bad(`metadata region is only ${region.length} bytes`);
  let entries: MetadataEntry[];
  try {
    entries = decodeMetadataTable(await readMeta(region.fileOffset, METADATA_TABLE_SIZE)).entries;
  } catch (error) {
    throw withFile(error, file);
  }
  const items = new Map<string, Uint8Array>();
  const ranges: Range[] = [];
  const seen = new Set<string>();
  const wanted: { name: string; offset: number; length: number }[] = [];
  for (const e of entries) {
    const key = `${guidToString(e.itemId)}/${e.isUser}`;
    if (seen.has(key)) throw bad(`metadata item ${guidToString(e.itemId)} appears twice`);
    seen.add(key);
    if (e.length === 0) {
      if (e.offset !== 0) throw bad(`empty metadata item ${guidToString(e.itemId)} has non-zero offset ${e.offset}`);
    } else if (e.offset < METADATA_TABLE_SIZE || e.length > MAX_METADATA_ITEM_LENGTH || e.offset + e.length > region.length) {
      throw bad(`metadata item ${guidToString(e.itemId)} (offset ${e.offset}, length ${e.length}) lies outside the ${region.length}-byte region`);
    } else {
      ranges.push({ start: e.offset, end: e.offset + e.length, what: `metadata item ${guidToString(e.itemId)}` });
    }
    if (e.isUser) continue;
    const known = KNOWN_ITEMS.find((k) => guidEquals(k.id, e.itemId));
    if (!known) {
      if (e.isRequired) {
        throw new VhdxError('UNKNOWN_REQUIRED_METADATA', `unknown metadata item ${guidToString(e.itemId)} is marked required`, { file, offset: region.fileOffset });
      }
      continue;
    }
    wanted.push({ name: known.name, offset: e.offset, length: e.length });
  }
  const overlap = findOverlap(ranges);
  if (overlap) throw bad(`${overlap[0].what} overlaps ${overlap[1].what}`);
  // The known items sit together after the table (a few dozen bytes in all): one read where their span
  // is small, instead of one read each.
  const present = wanted.filter((w) => w.length > 0);
  const spanStart = Math.min(...present.map((w) => w.offset));
  const spanEnd = Math.max(...present.map((w) => w.offset + w.length));
  const span = present.length > 0 && spanEnd - spanStart <= METADATA_SPAN_READ ? await readMeta(region.fileOffset + spanStart, spanEnd - spanStart) : null;
  for (const w of wanted) {
    if (w.length === 0) items.set(w.name, new Uint8Array(0));
    else items.set(w.name, span ? span.slice(w.offset - spanStart, w.offset - spanStart + w.length) : await readMeta(region.fileOffset + w.offset, w.length));
  }

  const item = (name: string): Uint8Array => {
    const bytes = items.get(name);
    if (!bytes) throw bad(`required metadata item ${name} is missing`);
    return bytes;
  };
  const decode = <T>(fn: () => T): T => {
    try {
      return fn();
    } catch (error) {
      throw withFile(error, file);
    }
  };
  const params = decode(() => decodeFileParameters(item('File Parameters')));
  const virtualDiskSize = decode(() => decodeVirtualDiskSize(item('Virtual Disk Size')));
  const virtualDiskId = decode(() => decodeVirtualDiskId(item('Virtual Disk ID')));
  const logicalSectorSize = decode(() => decodeSectorSize(item('Logical Sector Size'), 'Logical Sector Size'));
  const physicalSectorSize = decode(() => decodeSectorSize(item('Physical Sector Size'), 'Physical Sector Size'));

  // §5.4 value rules.
  const { blockSize } = params;
  if (blockSize < MIN_BLOCK_SIZE || blockSize > MAX_BLOCK_SIZE || (blockSize & (blockSize - 1)) !== 0) {
    throw bad(`block size ${blockSize} is not a power of two from 1 MiB to 256 MiB`);
  }
  if (logicalSectorSize !== 512 && logicalSectorSize !== 4096) throw bad(`logical sector size ${logicalSectorSize} is neither 512 nor 4096`);
  if (physicalSectorSize !== 512 && physicalSectorSize !== 4096) throw bad(`physical sector size ${physicalSectorSize} is neither 512 nor 4096`);
  if (virtualDiskSize === 0 || virtualDiskSize > MAX_VIRTUAL_DISK_SIZE || virtualDiskSize % logicalSectorSize !== 0) {
    throw bad(`virtual disk size ${virtualDiskSize} is not a non-zero multiple of ${logicalSectorSize} up to 64 TiB`);
  }
  let parentLocator: ParentLocator | null = null;
  if (params.hasParent) {
    parentLocator = decode(() => decodeParentLocator(item('Parent Locator')));
  }
  return { ...params, virtualDiskSize, virtualDiskId, logicalSectorSize, physicalSectorSize, parentLocator, entries };
}

