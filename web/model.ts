/**
 * What the inspector shows, gathered from an image through any read-only backend, with no DOM: the file
 * identifier, both header copies and both region table copies judged on their own bytes, the layout
 * as a reader opens it (a dirty log applied in memory, never written), the log's active sequence, the
 * allocation of every payload block, the library's check report, and an open image for sector reads.
 * Every step that can fail records its error instead of stopping the others.
 */
import {
  PAYLOAD_BLOCK_FULLY_PRESENT,
  PAYLOAD_BLOCK_NOT_PRESENT,
  PAYLOAD_BLOCK_PARTIALLY_PRESENT,
  PAYLOAD_BLOCK_UNDEFINED,
  PAYLOAD_BLOCK_UNMAPPED,
  PAYLOAD_BLOCK_UNMAPPED_V095,
  PAYLOAD_BLOCK_ZERO,
  PAYLOAD_STATE_NAMES,
} from '../src/format/bat.js';
import {
  FILE_IDENTIFIER_OFFSET,
  REGION_BAT,
  REGION_METADATA,
  REGION_TABLE1_OFFSET,
  REGION_TABLE2_OFFSET,
  REGION_TABLE_SIZE,
} from '../src/format/constants.js';
import { structureChecksum } from '../src/format/crc32c.js';
import { VhdxError } from '../src/format/errors.js';
import { decodeFileIdentifier, FILE_IDENTIFIER_DECODED_SIZE } from '../src/format/file-identifier.js';
import { guidEquals, guidIsZero, guidToString, type Guid } from '../src/format/guid.js';
import type { Header } from '../src/format/header.js';
import { isZeroDescriptor } from '../src/format/log-entry.js';
import type { MetadataEntry } from '../src/format/metadata.js';
import { decodeRegionTable, type RegionEntry } from '../src/format/region-table.js';
import { readFully, type Backend } from '../src/io/backend.js';
import { chooseHeader, HEADER_OFFSETS, readHeaderCopies } from '../src/image/headers.js';
import { VhdxImage } from '../src/image/image.js';
import { findActiveSequence } from '../src/image/log-replay.js';
import { KNOWN_ITEMS, openLayout, type OpenedLayout } from '../src/image/open.js';
import { check, type CheckReport } from '../src/ops/check.js';

/** An error as the page shows it: the library's code and one line. */
export interface Problem {
  code: string;
  message: string;
}

export interface HeaderView {
  slot: 0 | 1;
  offset: number;
  signatureOk: boolean;
  storedChecksum: number;
  computedChecksum: number;
  /** Decoded fields when the copy is valid. */
  header: Header | null;
  problem: string | null;
  current: boolean;
}

export interface RegionView {
  name: string;
  guid: string;
  fileOffset: number;
  length: number;
  required: boolean;
}

export interface RegionTableView {
  copy: 1 | 2;
  offset: number;
  signatureOk: boolean;
  storedChecksum: number;
  computedChecksum: number;
  entries: RegionView[] | null;
  problem: string | null;
  /** The log (applied in memory) rewrites bytes of this copy. */
  rewrittenByLog: boolean;
}

export interface MetadataItemView {
  name: string;
  guid: string;
  offset: number;
  length: number;
  isUser: boolean;
  isVirtualDisk: boolean;
  isRequired: boolean;
  /** The decoded value, for the items the format defines. */
  value: string;
}

export interface LogEntryView {
  logOffset: number;
  sequenceNumber: string;
  entryLength: number;
  tail: number;
  dataDescriptors: number;
  zeroDescriptors: number;
  flushedFileOffset: number;
  lastFileOffset: number;
  /** File offsets the entry writes (data sectors and zero ranges), first few only. */
  targets: { fileOffset: number; length: number; zero: boolean }[];
}

export interface LogView {
  state: OpenedLayout['logState'];
  guid: string;
  offset: number;
  length: number;
  entries: LogEntryView[];
  /** Payload blocks whose BAT state the log changes (shown after replay). */
  changedBlocks: number | null;
}

/** One letter per payload block state, as the canvas exposes them (`data-cells`). */
export type CellState = 'F' | 'P' | 'Z' | 'U' | 'N' | 'D' | 'X';

export const CELL_STATES: { state: CellState; label: string; stateName: string }[] = [
  { state: 'F', label: 'data (fully present)', stateName: 'fully-present' },
  { state: 'P', label: 'partially present', stateName: 'partially-present' },
  { state: 'Z', label: 'zero', stateName: 'zero' },
  { state: 'U', label: 'unmapped', stateName: 'unmapped' },
  { state: 'N', label: 'not present', stateName: 'not-present' },
  { state: 'D', label: 'undefined', stateName: 'undefined' },
  { state: 'X', label: 'bad BAT entry', stateName: 'bad' },
];

export interface Allocation {
  blockSize: number;
  virtualSize: number;
  blocks: number;
  /** One letter per payload block. */
  cells: Uint8Array;
  counts: Record<CellState, number>;
  hasParent: boolean;
}

export interface Inspection {
  name: string;
  fileSize: number;
  creator: string | null;
  /** The file cannot be inspected at all (not a VHDX, or too short). */
  fatal: Problem | null;
  headers: HeaderView[];
  headerProblem: Problem | null;
  regionTables: RegionTableView[];
  /** The layout as readers open it (log in memory, bad BAT entries collected), or why it failed. */
  layout: OpenedLayout | null;
  layoutProblem: Problem | null;
  metadataItems: MetadataItemView[];
  log: LogView | null;
  allocation: Allocation | null;
  check: CheckReport | null;
  checkProblem: Problem | null;
  /** The image opened as the library's readers open it, for sector reads, or why it failed. */
  image: VhdxImage | null;
  imageProblem: Problem | null;
}

export function problemOf(error: unknown): Problem {
  if (error instanceof VhdxError) return { code: error.code, message: error.message };
  return { code: 'INTERNAL', message: error instanceof Error ? error.message : String(error) };
}

const CELL_CODE: Record<CellState, number> = { F: 70, P: 80, Z: 90, U: 85, N: 78, D: 68, X: 88 };

export function cellState(code: number): CellState {
  return String.fromCharCode(code) as CellState;
}

function readU32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16) | (bytes[at + 3]! << 24)) >>> 0;
}

function hasAscii(bytes: Uint8Array, text: string): boolean {
  for (let i = 0; i < text.length; i++) if (bytes[i] !== text.charCodeAt(i)) return false;
  return true;
}

export function regionName(guid: Guid): string {
  if (guidEquals(guid, REGION_BAT)) return 'BAT';
  if (guidEquals(guid, REGION_METADATA)) return 'Metadata';
  return 'unknown region';
}


function metadataItem(e: MetadataEntry, layout: OpenedLayout): MetadataItemView {
  const m = layout.metadata;
  const known = e.isUser ? undefined : KNOWN_ITEMS.find((k) => guidEquals(k.id, e.itemId));
  let value = '';
  switch (known?.name) {
    case 'File Parameters':
      value = `block size ${m.blockSize} bytes; LeaveBlockAllocated ${m.leaveBlockAllocated ? 1 : 0}; HasParent ${m.hasParent ? 1 : 0}`;
      break;
    case 'Virtual Disk Size':
      value = `${m.virtualDiskSize} bytes`;
      break;
    case 'Virtual Disk ID':
      value = guidToString(m.virtualDiskId);
      break;
    case 'Logical Sector Size':
      value = `${m.logicalSectorSize} bytes`;
      break;
    case 'Physical Sector Size':
      value = `${m.physicalSectorSize} bytes`;
      break;
    case 'Parent Locator':
      value = m.parentLocator
        ? `type ${guidToString(m.parentLocator.locatorType)}, ${m.parentLocator.entries.length} key/value pairs`
        : 'present, unused (the disk has no parent)';
      break;
  }
  return {
    name: known?.name ?? (e.isUser ? 'user item' : 'unknown system item'),
    guid: guidToString(e.itemId),
    offset: e.offset,
    length: e.length,
    isUser: e.isUser,
    isVirtualDisk: e.isVirtualDisk,
    isRequired: e.isRequired,
    value,
  };
}

/** At most this many log target ranges are listed per entry. */
const MAX_TARGETS = 16;
/** Raw BAT bytes compared with the replayed ones only up to this size. */
const MAX_BAT_COMPARE = 32 * 1024 * 1024;

async function inspectLog(backend: Backend, layout: OpenedLayout): Promise<LogView> {
  const { header } = layout;
  const view: LogView = {
    state: layout.logState,
    guid: guidToString(header.logGuid),
    offset: header.logOffset,
    length: header.logLength,
    entries: [],
    changedBlocks: null,
  };
  if (guidIsZero(header.logGuid) || header.logLength === 0) return view;
  const log = new Uint8Array(header.logLength);
  await readFully(backend, log, header.logOffset);
  const sequence = findActiveSequence(log, header.logGuid);
  for (const { logOffset, entry } of sequence?.entries ?? []) {
    const zero = entry.descriptors.filter(isZeroDescriptor);
    view.entries.push({
      logOffset,
      sequenceNumber: entry.header.sequenceNumber.toString(),
      entryLength: entry.header.entryLength,
      tail: entry.header.tail,
      dataDescriptors: entry.descriptors.length - zero.length,
      zeroDescriptors: zero.length,
      flushedFileOffset: entry.header.flushedFileOffset,
      lastFileOffset: entry.header.lastFileOffset,
      targets: entry.descriptors.slice(0, MAX_TARGETS).map((d) => (isZeroDescriptor(d) ? { fileOffset: d.fileOffset, length: d.zeroLength, zero: true } : { fileOffset: d.fileOffset, length: 4096, zero: false })),
    });
  }
  // What replaying changes in the BAT: the file's own entries against the replayed ones.
  const batLength = layout.bat.entryCount * 8;
  if (layout.overlay && batLength <= MAX_BAT_COMPARE) {
    const raw = new Uint8Array(batLength);
    await readFully(backend, raw, layout.batRegion.fileOffset);
    const { chunkRatio, payloadBlocks } = layout.geometry;
    let changed = 0;
    for (let block = 0; block < payloadBlocks; block++) {
      const at = (block + Math.floor(block / chunkRatio)) * 8;
      const replayed = layout.bat.entryBytes(at / 8);
      if (readU32(raw, at) !== readU32(replayed, 0) || readU32(raw, at + 4) !== readU32(replayed, 4)) changed++;
    }
    view.changedBlocks = changed;
  }
  return view;
}

function allocationOf(layout: OpenedLayout): Allocation {
  const { geometry, bat, metadata } = layout;
  const cells = new Uint8Array(geometry.payloadBlocks);
  const counts: Record<CellState, number> = { F: 0, P: 0, Z: 0, U: 0, N: 0, D: 0, X: 0 };
  const bad = new Set<number>();
  for (const p of layout.batProblems) if (p.block !== undefined) bad.add(p.block);
  for (let block = 0; block < geometry.payloadBlocks; block++) {
    let state: CellState;
    if (bad.has(block)) {
      state = 'X';
    } else {
      switch (bat.blockState(block)) {
        case PAYLOAD_BLOCK_FULLY_PRESENT:
          state = 'F';
          break;
        case PAYLOAD_BLOCK_PARTIALLY_PRESENT:
          state = 'P';
          break;
        case PAYLOAD_BLOCK_ZERO:
          state = 'Z';
          break;
        case PAYLOAD_BLOCK_UNMAPPED:
        case PAYLOAD_BLOCK_UNMAPPED_V095:
          state = 'U';
          break;
        case PAYLOAD_BLOCK_NOT_PRESENT:
          state = 'N';
          break;
        case PAYLOAD_BLOCK_UNDEFINED:
          state = 'D';
          break;
        default:
          state = 'X';
      }
    }
    cells[block] = CELL_CODE[state];
    counts[state]++;
  }
  return { blockSize: metadata.blockSize, virtualSize: metadata.virtualDiskSize, blocks: geometry.payloadBlocks, cells, counts, hasParent: metadata.hasParent };
}

/** The BAT state name of a block (as `vhdx map` prints it). */
/** A cache larger than any BAT: the page reads the whole table at open, as it shows all of it. */
const WHOLE_BAT = Number.MAX_SAFE_INTEGER;

/** Differencing disks: every present sector bitmap read now, so hovering a block answers at once. */
async function loadSectorBitmaps(layout: OpenedLayout): Promise<void> {
  if (!layout.metadata.hasParent) return;
  for (let chunk = 0; chunk < layout.geometry.sectorBitmapBlocks; chunk++) await layout.sectorBitmaps.get(chunk);
}

export function blockStateName(layout: OpenedLayout, block: number): string {
  return PAYLOAD_STATE_NAMES[layout.bat.blockState(block)] ?? 'unknown';
}

/** For a partially present block: how many of its logical sectors this file holds. */
export function sectorsPresent(layout: OpenedLayout, block: number): { present: number; total: number } | null {
  const { chunkRatio } = layout.geometry;
  const { blockSize, logicalSectorSize, virtualDiskSize } = layout.metadata;
  const bitmap = layout.sectorBitmaps.peek(Math.floor(block / chunkRatio));
  if (!bitmap) return null;
  const total = Math.ceil(Math.min(blockSize, virtualDiskSize - block * blockSize) / logicalSectorSize);
  const first = (block % chunkRatio) * (blockSize / logicalSectorSize);
  let present = 0;
  for (let s = 0; s < total; s++) {
    const bit = first + s;
    if (bitmap[bit >> 3]! & (1 << (bit & 7))) present++;
  }
  return { present, total };
}

export async function inspect(backend: Backend): Promise<Inspection> {
  const result: Inspection = {
    name: backend.name,
    fileSize: await backend.size(),
    creator: null,
    fatal: null,
    headers: [],
    headerProblem: null,
    regionTables: [],
    layout: null,
    layoutProblem: null,
    metadataItems: [],
    log: null,
    allocation: null,
    check: null,
    checkProblem: null,
    image: null,
    imageProblem: null,
  };

  // ---- File identifier: without it there is nothing to inspect.
  const identifier = new Uint8Array(Math.min(result.fileSize, FILE_IDENTIFIER_DECODED_SIZE));
  await readFully(backend, identifier, FILE_IDENTIFIER_OFFSET);
  try {
    result.creator = decodeFileIdentifier(identifier).creator;
  } catch (error) {
    result.fatal = problemOf(error);
    return result;
  }

  // ---- Both header copies, each judged on its own bytes.
  try {
    const copies = await readHeaderCopies(backend);
    let slot: 0 | 1 | null = null;
    try {
      slot = chooseHeader(copies, backend.name).slot;
    } catch (error) {
      result.headerProblem = problemOf(error);
    }
    result.headers = copies.map((c, i) => ({
      slot: i as 0 | 1,
      offset: HEADER_OFFSETS[i]!,
      signatureOk: hasAscii(c.raw, 'head'),
      storedChecksum: readU32(c.raw, 4),
      computedChecksum: structureChecksum(c.raw),
      header: c.header,
      problem: c.problem,
      current: slot === i,
    }));
  } catch (error) {
    result.fatal = problemOf(error);
    return result;
  }

  // ---- Both region table copies as they are in the file.
  for (const [i, offset] of [REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET].entries()) {
    const raw = new Uint8Array(REGION_TABLE_SIZE);
    const got = await readFully(backend, raw, offset);
    const view: RegionTableView = {
      copy: (i + 1) as 1 | 2,
      offset,
      signatureOk: hasAscii(raw, 'regi'),
      storedChecksum: readU32(raw, 4),
      computedChecksum: structureChecksum(raw),
      entries: null,
      problem: null,
      rewrittenByLog: false,
    };
    if (got < REGION_TABLE_SIZE) {
      view.problem = 'the file ends inside it';
    } else {
      try {
        view.entries = decodeRegionTable(raw).entries.map((e: RegionEntry) => ({ name: regionName(e.guid), guid: guidToString(e.guid), fileOffset: e.fileOffset, length: e.length, required: e.required }));
      } catch (error) {
        view.problem = problemOf(error).message;
      }
    }
    result.regionTables.push(view);
  }

  // ---- The layout as a reader opens it: read-only, so a dirty log is applied in memory only.
  try {
    // The whole BAT in memory: the allocation picture shows every block, and hovering reads any of them.
    result.layout = await openLayout(backend, { readOnly: true, collectBatProblems: true, batCacheBytes: WHOLE_BAT });
    await loadSectorBitmaps(result.layout);
  } catch (error) {
    result.layoutProblem = problemOf(error);
  }
  const layout = result.layout;
  if (layout) {
    for (const t of result.regionTables) t.rewrittenByLog = layout.overlay?.touches(t.offset, REGION_TABLE_SIZE) ?? false;
    result.metadataItems = layout.metadata.entries.map((e) => metadataItem(e, layout));
    result.allocation = allocationOf(layout);
    try {
      result.log = await inspectLog(backend, layout);
    } catch (error) {
      result.log = null;
      result.layoutProblem ??= problemOf(error);
    }
  }

  // ---- The library's check (reads only).
  try {
    result.check = await check(backend);
  } catch (error) {
    result.checkProblem = problemOf(error);
  }

  // ---- The image as readers open it, for sector reads.
  try {
    result.image = await VhdxImage.open(backend, { readOnly: true });
  } catch (error) {
    result.imageProblem = problemOf(error);
  }
  return result;
}
