/**
 * Mutation families over the base images. Every mutation is a plain, printable value (what fast-check
 * shows as the counterexample) plus an `apply` that edits a copy of the image. Structures that carry a
 * CRC (headers, region tables, log entries) are re-encoded or re-sealed so the hostile fields get past
 * the checksum and reach the validation behind it.
 *
 * Offsets are symbolic (`{ anchor: 'bat', delta: 4096 }`, or a raw u64 for values no JS number holds)
 * and resolved against the base image's layout, so counterexamples read as "the BAT region moved to
 * the metadata region" rather than as bare numbers.
 */
import fc from 'fast-check';
import { REGION_BAT, REGION_METADATA, METADATA_PARENT_LOCATOR, PARENT_LOCATOR_TYPE_VHDX } from '../../src/format/constants.js';
import { crc32c, structureChecksum } from '../../src/format/crc32c.js';
import { encodeHeader } from '../../src/format/header.js';
import { encodeLogEntry, type LogDescriptor } from '../../src/format/log-entry.js';
import { encodeRegionTable } from '../../src/format/region-table.js';
import { boundariesOf, KiB, MiB, type Layout } from './images.js';

// ---------------------------------------------------------------- raw little-endian access

export function putU16(b: Uint8Array, at: number, v: number): void {
  if (at < 0 || at + 2 > b.length) return;
  b[at] = v & 0xff;
  b[at + 1] = (v >>> 8) & 0xff;
}

export function putU32(b: Uint8Array, at: number, v: number): void {
  if (at < 0 || at + 4 > b.length) return;
  const x = v >>> 0;
  b[at] = x & 0xff;
  b[at + 1] = (x >>> 8) & 0xff;
  b[at + 2] = (x >>> 16) & 0xff;
  b[at + 3] = x >>> 24;
}

export function putU64(b: Uint8Array, at: number, v: bigint): void {
  if (at < 0 || at + 8 > b.length) return;
  const x = BigInt.asUintN(64, v);
  for (let i = 0; i < 8; i++) b[at + i] = Number((x >> BigInt(8 * i)) & 0xffn);
}

export function getU32(b: Uint8Array, at: number): number {
  return ((b[at] ?? 0) | ((b[at + 1] ?? 0) << 8) | ((b[at + 2] ?? 0) << 16) | ((b[at + 3] ?? 0) << 24)) >>> 0;
}

/** b.set clipped to the array (mutations may run after a truncation). */
function setBytes(b: Uint8Array, at: number, data: Uint8Array): void {
  if (at < 0 || at >= b.length) return;
  b.set(data.subarray(0, b.length - at), at);
}

function putAscii(b: Uint8Array, at: number, text: string): void {
  for (let i = 0; i < text.length && at + i < b.length; i++) b[at + i] = text.charCodeAt(i);
}

function hasAscii(b: Uint8Array, at: number, text: string): boolean {
  for (let i = 0; i < text.length; i++) if (b[at + i] !== text.charCodeAt(i)) return false;
  return true;
}

/** Deterministic filler bytes. */
function filler(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = x >>> 24;
  }
  return out;
}

// ---------------------------------------------------------------- checksums

export const HEADER_OFFSETS = [64 * KiB, 128 * KiB] as const;
export const REGION_TABLE_OFFSETS = [192 * KiB, 256 * KiB] as const;

export function resealHeader(b: Uint8Array, at: number): void {
  if (at + 4096 > b.length) return;
  putU32(b, at + 4, structureChecksum(b.subarray(at, at + 4096)));
}

export function resealRegionTable(b: Uint8Array, at: number): void {
  if (at + 64 * KiB > b.length) return;
  putU32(b, at + 4, structureChecksum(b.subarray(at, at + 64 * KiB)));
}

/** The `length` bytes of the ring starting at log-relative `offset`. */
function ringRead(b: Uint8Array, layout: Layout, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = b[layout.logOffset + ((offset + i) % layout.logLength)] ?? 0;
  return out;
}

function ringWrite(b: Uint8Array, layout: Layout, offset: number, data: Uint8Array): void {
  const n = Math.min(data.length, layout.logLength);
  const first = Math.min(n, layout.logLength - offset);
  const at = layout.logOffset + offset;
  if (at + first <= b.length) b.set(data.subarray(0, first), at);
  if (first < n && layout.logOffset + (n - first) <= b.length) b.set(data.subarray(first, n), layout.logOffset);
}

/** Recomputes the CRC of the entry at log-relative `offset` over its own (possibly hostile) EntryLength. */
export function resealLogEntry(b: Uint8Array, layout: Layout, offset: number): void {
  const at = layout.logOffset + offset;
  if (at + 4096 > b.length) return;
  const length = getU32(b, at + 8);
  if (length === 0 || length % 4096 !== 0 || length > layout.logLength) return;
  const bytes = ringRead(b, layout, offset, length);
  putU32(b, at + 4, structureChecksum(bytes));
}

/** Re-seals every CRC-carrying structure: both headers, both region tables, every `loge` sector of the log. */
export function resealAll(b: Uint8Array, layout: Layout): void {
  for (const at of HEADER_OFFSETS) resealHeader(b, at);
  for (const at of REGION_TABLE_OFFSETS) resealRegionTable(b, at);
  for (let s = 0; s < layout.logLength; s += 4096) {
    if (hasAscii(b, layout.logOffset + s, 'loge')) resealLogEntry(b, layout, s);
  }
}

// ---------------------------------------------------------------- symbolic values

const ANCHORS = [
  'zero',
  'header1',
  'header2',
  'regionTable1',
  'regionTable2',
  'headerSectionEnd',
  'log',
  'logEnd',
  'metadata',
  'metadataItems',
  'metadataEnd',
  'bat',
  'batEnd',
  'firstBlock',
  'lastBlock',
  'fileEnd',
] as const;
export type Anchor = (typeof ANCHORS)[number];
/** A file offset: an anchor in the base layout plus a delta, or a raw u64. */
export type Place = { anchor: Anchor; delta: number } | { raw: bigint };

function anchorValue(layout: Layout, anchor: Anchor): number {
  switch (anchor) {
    case 'zero':
      return 0;
    case 'header1':
      return 64 * KiB;
    case 'header2':
      return 128 * KiB;
    case 'regionTable1':
      return 192 * KiB;
    case 'regionTable2':
      return 256 * KiB;
    case 'headerSectionEnd':
      return MiB;
    case 'log':
      return layout.logOffset;
    case 'logEnd':
      return layout.logOffset + layout.logLength;
    case 'metadata':
      return layout.metadataOffset;
    case 'metadataItems':
      return layout.metadataOffset + 64 * KiB;
    case 'metadataEnd':
      return layout.metadataOffset + layout.metadataLength;
    case 'bat':
      return layout.batOffset;
    case 'batEnd':
      return layout.batOffset + layout.batLength;
    case 'firstBlock':
      return layout.blocks[0]?.fileOffset ?? layout.structuresEnd;
    case 'lastBlock':
      return layout.blocks[layout.blocks.length - 1]?.fileOffset ?? layout.structuresEnd;
    case 'fileEnd':
      return layout.fileSize;
  }
}

export function resolvePlace(layout: Layout, place: Place): bigint {
  if ('raw' in place) return BigInt.asUintN(64, place.raw);
  const v = anchorValue(layout, place.anchor) + place.delta;
  return BigInt(Math.max(0, v));
}

const HUGE_U64 = [
  2n ** 32n - 1n,
  2n ** 32n,
  2n ** 40n,
  2n ** 45n,
  2n ** 46n,
  2n ** 46n + 2n ** 40n,
  2n ** 46n + 2n ** 40n + 4096n,
  2n ** 52n,
  2n ** 53n - 4096n,
  2n ** 53n - 1n,
  2n ** 53n,
  2n ** 60n,
  2n ** 63n,
  2n ** 64n - 4096n,
  2n ** 64n - 1n,
];

export const hugeArb: fc.Arbitrary<bigint> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...HUGE_U64) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) },
);

export const deltaArb: fc.Arbitrary<number> = fc.oneof(
  { weight: 5, arbitrary: fc.constant(0) },
  { weight: 4, arbitrary: fc.constantFrom(1, -1, 512, -512, 4096, -4096, 64 * KiB, -64 * KiB, MiB, -MiB, 2 * MiB, 513 * MiB) },
  { weight: 1, arbitrary: fc.integer({ min: -4 * MiB, max: 8 * MiB }) },
);

export function placeArb(anchors: readonly Anchor[] = ANCHORS): fc.Arbitrary<Place> {
  return fc.oneof(
    { weight: 5, arbitrary: fc.record({ anchor: fc.constantFrom(...anchors), delta: deltaArb }) },
    { weight: 1, arbitrary: fc.record({ raw: hugeArb }) },
  );
}

export const u32Arb: fc.Arbitrary<number> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(0, 1, 8, 511, 512, 4095, 4096, 64 * KiB, MiB - 1, MiB, MiB + 1, 2 * MiB, 3 * MiB, 513 * MiB, 2 ** 31, 2 ** 32 - MiB, 2 ** 32 - 1) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 16 }).map((k) => k * MiB) },
  { weight: 1, arbitrary: fc.nat({ max: 2 ** 32 - 1 }) },
);

const u16Arb: fc.Arbitrary<number> = fc.oneof(fc.constantFrom(0, 1, 2, 5, 6, 127, 128, 2047, 2048, 0x7fff, 0xffff), fc.nat({ max: 0xffff }));

export const u64Arb: fc.Arbitrary<bigint> = fc.oneof(
  { weight: 2, arbitrary: fc.constantFrom(0n, 1n, 512n, 4096n, BigInt(MiB), BigInt(4 * MiB), 2n ** 30n) },
  { weight: 2, arbitrary: hugeArb },
);

// ---------------------------------------------------------------- family: byte-level corruption

export const AREAS = [
  'fileIdentifier',
  'header1',
  'header2',
  'regionTable1',
  'regionTable2',
  'metadataTable',
  'metadataItems',
  'bat',
  'log',
  'payload',
  'anywhere',
] as const;
export type Area = (typeof AREAS)[number];

export type ByteOp =
  | { op: 'flip'; bit: number }
  | { op: 'byte'; value: number }
  | { op: 'u16'; value: number }
  | { op: 'u32'; value: number }
  | { op: 'u64'; value: bigint }
  | { op: 'fill'; length: number; value: number }
  | { op: 'copy'; from: number; length: number };

export interface ByteMutation {
  kind: 'bytes';
  area: Area;
  /** Aim at the bytes that carry fields rather than at reserved or padding bytes. */
  hot: boolean;
  at: number;
  op: ByteOp;
}

type Range = [number, number];

/** Where an area's bytes are (hot: the ones holding fields), clipped to the file. */
export function areaRanges(layout: Layout, area: Area, hot: boolean): Range[] {
  const m = layout.metadataOffset;
  const ranges: Range[] = [];
  switch (area) {
    case 'fileIdentifier':
      ranges.push(hot ? [0, 40] : [0, 64 * KiB]);
      break;
    case 'header1':
    case 'header2': {
      const at = area === 'header1' ? 64 * KiB : 128 * KiB;
      ranges.push(hot ? [at, at + 80] : [at, at + 4096]);
      break;
    }
    case 'regionTable1':
    case 'regionTable2': {
      const at = area === 'regionTable1' ? 192 * KiB : 256 * KiB;
      ranges.push(hot ? [at, at + 16 + 32 * 3] : [at, at + 64 * KiB]);
      break;
    }
    case 'metadataTable':
      ranges.push(hot ? [m, m + 32 + 32 * (layout.metadataItems.length + 1)] : [m, m + 64 * KiB]);
      break;
    case 'metadataItems': {
      const end = Math.max(...layout.metadataItems.map((i) => i.offset + i.length));
      ranges.push(hot ? [m + 64 * KiB, m + end] : [m + 64 * KiB, m + layout.metadataLength]);
      break;
    }
    case 'bat':
      ranges.push(hot ? [layout.batOffset, layout.batOffset + layout.batUsed] : [layout.batOffset, layout.batOffset + layout.batLength]);
      break;
    case 'log':
      if (hot && layout.logEntries.length > 0) {
        for (const e of layout.logEntries) {
          const first = Math.min(e.length, layout.logLength - e.offset);
          ranges.push([layout.logOffset + e.offset, layout.logOffset + e.offset + first]);
          if (first < e.length) ranges.push([layout.logOffset, layout.logOffset + e.length - first]);
        }
      } else {
        ranges.push([layout.logOffset, layout.logOffset + (hot ? 4096 : layout.logLength)]);
      }
      break;
    case 'payload':
      if (hot && layout.blocks.length > 0) {
        for (const blk of layout.blocks) ranges.push([blk.fileOffset, blk.fileOffset + layout.blockSize]);
      } else {
        ranges.push([layout.structuresEnd, layout.fileSize]);
      }
      break;
    case 'anywhere':
      ranges.push([0, layout.fileSize]);
      break;
  }
  const clipped = ranges.map(([s, e]): Range => [s, Math.min(e, layout.fileSize)]).filter(([s, e]) => e > s);
  return clipped.length > 0 ? clipped : [[0, layout.fileSize]];
}

function pickOffset(ranges: Range[], n: number): number {
  const total = ranges.reduce((sum, [s, e]) => sum + (e - s), 0);
  let k = n % total;
  for (const [s, e] of ranges) {
    if (k < e - s) return s + k;
    k -= e - s;
  }
  return ranges[0]![0];
}

const byteOpArb: fc.Arbitrary<ByteOp> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ op: fc.constant('flip' as const), bit: fc.integer({ min: 0, max: 7 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('byte' as const), value: fc.oneof(fc.constantFrom(0, 0xff, 0x80, 1), fc.nat({ max: 255 })) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('u16' as const), value: u16Arb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('u32' as const), value: u32Arb }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('u64' as const), value: u64Arb }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('fill' as const), length: fc.integer({ min: 1, max: 8192 }), value: fc.constantFrom(0, 0xff, 0x41) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('copy' as const), from: fc.nat(), length: fc.constantFrom(8, 16, 32, 64, 4096) }) },
);

export function byteMutationArb(areas: readonly Area[] = AREAS): fc.Arbitrary<ByteMutation> {
  return fc.record({
    kind: fc.constant('bytes' as const),
    area: fc.constantFrom(...areas),
    hot: fc.boolean(),
    at: fc.nat(),
    op: byteOpArb,
  });
}

export function applyBytes(b: Uint8Array, layout: Layout, m: ByteMutation): void {
  const ranges = areaRanges(layout, m.area, m.hot);
  const at = pickOffset(ranges, m.at);
  const op = m.op;
  switch (op.op) {
    case 'flip':
      if (at < b.length) b[at] = b[at]! ^ (1 << op.bit);
      break;
    case 'byte':
      if (at < b.length) b[at] = op.value;
      break;
    case 'u16':
      putU16(b, at, op.value);
      break;
    case 'u32':
      putU32(b, at, op.value);
      break;
    case 'u64':
      putU64(b, at, op.value);
      break;
    case 'fill':
      b.fill(op.value, at, Math.min(b.length, at + op.length));
      break;
    case 'copy': {
      const from = pickOffset(ranges, op.from);
      const n = Math.min(op.length, b.length - from, b.length - at);
      if (n > 0) b.copyWithin(at, from, from + n);
      break;
    }
  }
}

// ---------------------------------------------------------------- family: truncation and extension

export type SizeMutation =
  | { kind: 'truncate'; at: number }
  | { kind: 'truncateNear'; boundary: number; delta: number }
  | { kind: 'extend'; length: number; fill: number };

export const sizeMutationArb: fc.Arbitrary<SizeMutation> = fc.oneof(
  { weight: 2, arbitrary: fc.record({ kind: fc.constant('truncate' as const), at: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      kind: fc.constant('truncateNear' as const),
      boundary: fc.nat(),
      delta: fc.oneof(fc.constantFrom(0, 0, -1, 1, -8, 8, -512, 512, -4096, 4096), fc.integer({ min: -MiB, max: MiB })),
    }),
  },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('extend' as const), length: fc.constantFrom(1, 511, 4096, MiB, 3 * MiB + 7), fill: fc.constantFrom(0, 0xff) }) },
);

/** Returns the resized image (a new array when the size changes). */
export function applySize(b: Uint8Array, layout: Layout, m: SizeMutation): Uint8Array {
  switch (m.kind) {
    case 'truncate':
      return b.slice(0, m.at % (b.length + 1));
    case 'truncateNear': {
      const list = boundariesOf(layout);
      const cut = Math.min(b.length, Math.max(0, list[m.boundary % list.length]! + m.delta));
      return b.slice(0, cut);
    }
    case 'extend': {
      const out = new Uint8Array(b.length + m.length);
      out.set(b);
      out.fill(m.fill, b.length);
      return out;
    }
  }
}

// ---------------------------------------------------------------- family: headers with valid checksums

export interface HeaderMutation {
  kind: 'header';
  /** Which copies get the hostile header; 'split' writes different hostile values to each. */
  slots: 'first' | 'second' | 'both' | 'split';
  sequence: 'keep' | 'higher' | 'lower' | 'equal' | { raw: bigint };
  logGuid: 'keep' | 'zero' | 'random';
  logVersion: number | 'keep';
  version: number | 'keep';
  logLength: number | 'keep';
  logOffset: Place | 'keep';
  /** Field values for the second copy in 'split' mode. */
  other: { logLength: number | 'keep'; logOffset: Place | 'keep' };
}

export const headerMutationArb: fc.Arbitrary<HeaderMutation> = fc.record({
  kind: fc.constant('header' as const),
  slots: fc.constantFrom('first', 'second', 'both', 'split'),
  sequence: fc.oneof(fc.constantFrom('keep', 'higher', 'lower', 'equal'), fc.record({ raw: fc.constantFrom(0n, 1n, 2n ** 63n, 2n ** 64n - 1n) })),
  logGuid: fc.constantFrom('keep', 'zero', 'random'),
  logVersion: fc.oneof({ weight: 4, arbitrary: fc.constant('keep' as const) }, { weight: 1, arbitrary: fc.constantFrom(0, 1, 0xffff) }),
  version: fc.oneof({ weight: 4, arbitrary: fc.constant('keep' as const) }, { weight: 1, arbitrary: fc.constantFrom(0, 1, 2, 0xffff) }),
  logLength: fc.oneof({ weight: 2, arbitrary: fc.constant('keep' as const) }, { weight: 3, arbitrary: u32Arb }),
  logOffset: fc.oneof({ weight: 2, arbitrary: fc.constant('keep' as const) }, { weight: 3, arbitrary: placeArb() }),
  other: fc.record({
    logLength: fc.oneof(fc.constant('keep' as const), u32Arb),
    logOffset: fc.oneof(fc.constant('keep' as const), placeArb()),
  }),
});

export function writeHeader(
  b: Uint8Array,
  slot: 0 | 1,
  fields: { sequence: bigint; logGuid: Uint8Array; logVersion: number; version: number; logLength: number; logOffset: bigint },
): void {
  const at = HEADER_OFFSETS[slot];
  if (at + 4096 > b.length) return;
  const bytes = encodeHeader({
    sequenceNumber: BigInt.asUintN(64, fields.sequence),
    fileWriteGuid: filler(16, 7 + slot),
    dataWriteGuid: filler(16, 9),
    logGuid: fields.logGuid,
    logVersion: fields.logVersion & 0xffff,
    version: fields.version & 0xffff,
    logLength: fields.logLength >>> 0,
    logOffset: 0,
  });
  putU64(bytes, 72, fields.logOffset);
  putU32(bytes, 4, structureChecksum(bytes));
  b.set(bytes, at);
}

export function applyHeader(b: Uint8Array, layout: Layout, m: HeaderMutation): void {
  const seq = layout.headerSequence;
  const sequence =
    m.sequence === 'keep' ? seq : m.sequence === 'higher' ? seq + 10n : m.sequence === 'lower' ? (seq > 5n ? seq - 5n : 0n) : m.sequence === 'equal' ? seq : m.sequence.raw;
  const logGuid = m.logGuid === 'keep' ? layout.logGuid : m.logGuid === 'zero' ? new Uint8Array(16) : filler(16, 1234);
  const fields = (logLength: number | 'keep', logOffset: Place | 'keep') => ({
    sequence,
    logGuid,
    logVersion: m.logVersion === 'keep' ? 0 : m.logVersion,
    version: m.version === 'keep' ? 1 : m.version,
    logLength: logLength === 'keep' ? layout.logLength : logLength,
    logOffset: logOffset === 'keep' ? BigInt(layout.logOffset) : resolvePlace(layout, logOffset),
  });
  const mine = fields(m.logLength, m.logOffset);
  // The other copy: 'equal' makes both copies claim the same sequence number.
  const otherSeq = m.sequence === 'equal' ? sequence : m.sequence === 'higher' ? seq : seq + 1n;
  if (m.slots === 'first' || m.slots === 'both' || m.slots === 'split') writeHeader(b, 0, mine);
  if (m.slots === 'second' || m.slots === 'both') writeHeader(b, 1, mine);
  if (m.slots === 'split') writeHeader(b, 1, { ...fields(m.other.logLength, m.other.logOffset), sequence: otherSeq });
}

// ---------------------------------------------------------------- family: region tables with valid checksums

export interface RegionSpec {
  guid: 'bat' | 'metadata' | 'unknown' | 'zero';
  offset: Place;
  length: number | 'batLength' | 'metadataLength';
  required: boolean;
}

export interface RegionMutation {
  kind: 'regions';
  copies: 'first' | 'second' | 'both' | 'first-and-corrupt-second';
  entries: RegionSpec[];
  /** Raw EntryCount written over the real count (CRC re-sealed). */
  count: number | null;
  /** Appends this many copies of the last entry (up to the 2047-entry maximum). */
  repeatLast: number;
}

const baseRegions: RegionSpec[] = [
  { guid: 'bat', offset: { anchor: 'bat', delta: 0 }, length: 'batLength', required: true },
  { guid: 'metadata', offset: { anchor: 'metadata', delta: 0 }, length: 'metadataLength', required: true },
];

const regionSpecArb: fc.Arbitrary<RegionSpec> = fc.record({
  guid: fc.constantFrom('bat', 'metadata', 'unknown', 'zero'),
  offset: placeArb(),
  length: fc.oneof(fc.constantFrom('batLength' as const, 'metadataLength' as const), u32Arb),
  required: fc.boolean(),
});

/** Mostly the base table with one or two fields changed (to get deep), sometimes a free-form table. */
export const regionEntriesArb: fc.Arbitrary<RegionSpec[]> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc
      .tuple(
        fc.array(
          fc.record({
            which: fc.constantFrom(0, 1),
            field: fc.constantFrom('offset', 'length', 'guid', 'required'),
            offset: placeArb(),
            length: u32Arb,
            guid: fc.constantFrom('bat' as const, 'metadata' as const, 'unknown' as const, 'zero' as const),
          }),
          { minLength: 1, maxLength: 2 },
        ),
        fc.array(regionSpecArb, { maxLength: 2 }),
        fc.boolean(),
      )
      .map(([edits, extra, swap]) => {
        const entries = baseRegions.map((r) => ({ ...r }));
        for (const e of edits) {
          const r = entries[e.which]!;
          if (e.field === 'offset') r.offset = e.offset;
          else if (e.field === 'length') r.length = e.length;
          else if (e.field === 'guid') r.guid = e.guid;
          else r.required = !r.required;
        }
        if (swap) entries.reverse();
        return [...entries, ...extra];
      }),
  },
  { weight: 1, arbitrary: fc.array(regionSpecArb, { maxLength: 6 }) },
);

export const regionMutationArb: fc.Arbitrary<RegionMutation> = fc.record({
  kind: fc.constant('regions' as const),
  copies: fc.constantFrom('first', 'second', 'both', 'first-and-corrupt-second'),
  entries: regionEntriesArb,
  count: fc.oneof({ weight: 5, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: fc.constantFrom(0, 1, 3, 2047, 2048, 0x7fffffff, 0xffffffff) }),
  repeatLast: fc.oneof({ weight: 5, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(1, 100, 2045, 5000) }),
});

export function encodeRegions(layout: Layout, entries: RegionSpec[], count: number | null): Uint8Array {
  const guidOf = (g: RegionSpec['guid']): Uint8Array => (g === 'bat' ? REGION_BAT : g === 'metadata' ? REGION_METADATA : g === 'zero' ? new Uint8Array(16) : filler(16, 99));
  const list = entries.slice(0, 2047);
  const table = encodeRegionTable({
    entries: list.map((r) => ({
      guid: guidOf(r.guid),
      fileOffset: 0,
      length: r.length === 'batLength' ? layout.batLength : r.length === 'metadataLength' ? layout.metadataLength : r.length >>> 0,
      required: r.required,
    })),
  });
  list.forEach((r, i) => putU64(table, 16 + 32 * i + 16, resolvePlace(layout, r.offset)));
  if (count !== null) putU32(table, 8, count);
  putU32(table, 4, structureChecksum(table));
  return table;
}

export function applyRegions(b: Uint8Array, layout: Layout, m: RegionMutation): void {
  const entries = [...m.entries];
  const last = entries[entries.length - 1];
  if (last) for (let i = 0; i < m.repeatLast && entries.length < 2047; i++) entries.push(last);
  const table = encodeRegions(layout, entries, m.count);
  const put = (at: number): void => {
    if (at + table.length <= b.length) b.set(table, at);
  };
  if (m.copies !== 'second') put(REGION_TABLE_OFFSETS[0]);
  if (m.copies === 'second' || m.copies === 'both') put(REGION_TABLE_OFFSETS[1]);
  if (m.copies === 'first-and-corrupt-second' && REGION_TABLE_OFFSETS[1] + 8 <= b.length) b[REGION_TABLE_OFFSETS[1] + 5] = b[REGION_TABLE_OFFSETS[1] + 5]! ^ 0x40;
}

// ---------------------------------------------------------------- family: metadata table and items

export type MetadataField = 'offset' | 'length' | 'flags' | 'id';
export type ItemValue =
  | { item: 'blockSize'; value: number }
  | { item: 'fileFlags'; value: number }
  | { item: 'virtualSize'; value: bigint }
  | { item: 'logicalSectorSize'; value: number }
  | { item: 'physicalSectorSize'; value: number };

export interface MetadataMutation {
  kind: 'metadata';
  /** Raw u16 EntryCount. */
  count: number | null;
  edits: { index: number; field: MetadataField; value: number; idFrom: number }[];
  extra: { id: 'unknown' | 'duplicate' | 'parentLocator'; offset: number; length: number; flags: number }[];
  values: ItemValue[];
}

const itemValueArb: fc.Arbitrary<ItemValue> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      item: fc.constant('blockSize' as const),
      value: fc.oneof(fc.constantFrom(0, 1, 512, 4096, MiB / 2, MiB, 2 * MiB, 3 * MiB, 32 * MiB, 256 * MiB, 512 * MiB, 2 ** 31, 2 ** 32 - 1), fc.nat({ max: 2 ** 32 - 1 })),
    }),
  },
  { weight: 2, arbitrary: fc.record({ item: fc.constant('fileFlags' as const), value: fc.constantFrom(0, 1, 2, 3, 4, 0xffffffff) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      item: fc.constant('virtualSize' as const),
      value: fc.oneof(
        fc.constantFrom(0n, 1n, 511n, 512n, 4096n, 4097n, BigInt(MiB), 2n ** 30n, 2n ** 35n, 2n ** 40n, 2n ** 45n, 2n ** 46n - 512n, 2n ** 46n, 2n ** 46n + 512n, 2n ** 47n),
        hugeArb,
      ),
    }),
  },
  { weight: 2, arbitrary: fc.record({ item: fc.constant('logicalSectorSize' as const), value: fc.constantFrom(0, 1, 256, 512, 1024, 4096, 8192, 65536, 2 ** 32 - 1) }) },
  { weight: 1, arbitrary: fc.record({ item: fc.constant('physicalSectorSize' as const), value: fc.constantFrom(0, 1, 512, 4096, 8192, 2 ** 32 - 1) }) },
);

const metadataOffsetArb = fc.oneof(fc.constantFrom(0, 1, 32, 64 * KiB - 1, 64 * KiB, 64 * KiB + 8, 128 * KiB, MiB - 8, MiB - 1, MiB, 2 ** 32 - 1), fc.nat({ max: 2 ** 32 - 1 }));
const metadataLengthArb = fc.oneof(fc.constantFrom(0, 1, 4, 7, 8, 9, 16, 24, 64 * KiB, MiB - 64 * KiB, MiB, MiB + 1, 2 ** 32 - 1), fc.nat({ max: 2 ** 32 - 1 }));

export const metadataMutationArb: fc.Arbitrary<MetadataMutation> = fc.record({
  kind: fc.constant('metadata' as const),
  count: fc.oneof({ weight: 4, arbitrary: fc.constant(null) }, { weight: 1, arbitrary: u16Arb }),
  edits: fc.array(
    fc.record({
      index: fc.nat({ max: 6 }),
      field: fc.constantFrom('offset', 'length', 'flags', 'id'),
      value: fc.oneof(metadataOffsetArb, metadataLengthArb, fc.constantFrom(0, 1, 2, 3, 4, 5, 7, 0xffffffff)),
      idFrom: fc.nat({ max: 6 }),
    }),
    { maxLength: 3 },
  ),
  extra: fc.array(
    fc.record({ id: fc.constantFrom('unknown', 'duplicate', 'parentLocator'), offset: metadataOffsetArb, length: metadataLengthArb, flags: fc.constantFrom(0, 1, 2, 4, 5, 6, 7) }),
    { maxLength: 2 },
  ),
  values: fc.array(itemValueArb, { maxLength: 3 }),
});

export function applyMetadata(b: Uint8Array, layout: Layout, m: MetadataMutation): void {
  const m0 = layout.metadataOffset;
  const entryAt = (i: number): number => m0 + 32 + 32 * i;
  // Item values first, at the base items' places (table edits below may then move them).
  const itemAt = (index: number): number => m0 + layout.metadataItems[index]!.offset;
  for (const v of m.values) {
    switch (v.item) {
      case 'blockSize':
        putU32(b, itemAt(0), v.value);
        break;
      case 'fileFlags':
        putU32(b, itemAt(0) + 4, v.value);
        break;
      case 'virtualSize':
        putU64(b, itemAt(1), v.value);
        break;
      case 'logicalSectorSize':
        putU32(b, itemAt(3), v.value);
        break;
      case 'physicalSectorSize':
        putU32(b, itemAt(4), v.value);
        break;
    }
  }
  let count = layout.metadataItems.length;
  for (const x of m.extra) {
    const at = entryAt(count);
    if (x.id === 'unknown') setBytes(b, at, filler(16, 77 + count));
    else if (x.id === 'parentLocator') setBytes(b, at, METADATA_PARENT_LOCATOR);
    else b.copyWithin(at, entryAt(0), entryAt(0) + 16);
    putU32(b, at + 16, x.offset);
    putU32(b, at + 20, x.length);
    putU32(b, at + 24, x.flags);
    count++;
  }
  for (const e of m.edits) {
    const at = entryAt(e.index);
    if (e.field === 'offset') putU32(b, at + 16, e.value);
    else if (e.field === 'length') putU32(b, at + 20, e.value);
    else if (e.field === 'flags') putU32(b, at + 24, e.value);
    else b.copyWithin(at, entryAt(e.idFrom), entryAt(e.idFrom) + 16);
  }
  putU16(b, m0 + 10, m.count ?? count);
}

// ---------------------------------------------------------------- family: parent locator

export interface ParentLocatorMutation {
  kind: 'parentLocator';
  /** Where the item sits in the metadata region, and its length. */
  itemOffset: number;
  itemLength: number;
  count: number;
  /** How the key/value offsets are laid out. */
  shape: 'packed' | 'sliding-keys' | 'same-slice' | 'random';
  keyLength: number;
  valueLength: number;
  fill: 'ascii' | 'counter' | 'zeros';
  seed: number;
}

/**
 * Biased towards locators that are structurally valid (even lengths, distinct keys from the counter
 * fill, everything inside the item) but extreme in size, because those reach the decoder's full work.
 */
export const parentLocatorArb: fc.Arbitrary<ParentLocatorMutation> = fc.record({
  kind: fc.constant('parentLocator' as const),
  itemOffset: fc.constantFrom(64 * KiB + 4096, 128 * KiB),
  itemLength: fc.oneof({ weight: 3, arbitrary: fc.constant(896 * KiB) }, { weight: 1, arbitrary: fc.constantFrom(20, 32, 4096, 64 * KiB, 512 * KiB) }, { weight: 1, arbitrary: fc.integer({ min: 20, max: 896 * KiB }) }),
  count: fc.oneof({ weight: 2, arbitrary: fc.nat({ max: 8 }) }, { weight: 3, arbitrary: fc.constantFrom(100, 1000, 4000, 30000, 65535) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff }) }),
  shape: fc.oneof({ weight: 3, arbitrary: fc.constant('sliding-keys' as const) }, { weight: 2, arbitrary: fc.constant('packed' as const) }, { weight: 1, arbitrary: fc.constantFrom('same-slice' as const, 'random' as const) }),
  keyLength: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(2, 28, 4096, 16384, 32768, 65534) }, { weight: 1, arbitrary: fc.constantFrom(0, 1, 65535) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff }) }),
  valueLength: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(2, 76, 4096, 32768, 65534) }, { weight: 1, arbitrary: fc.constantFrom(0, 65535) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff }) }),
  fill: fc.oneof({ weight: 3, arbitrary: fc.constant('counter' as const) }, { weight: 1, arbitrary: fc.constantFrom('ascii' as const, 'zeros' as const) }),
  seed: fc.nat(),
});

/** Encodes a hostile locator item (offsets from the item start, §6.1). */
export function encodeHostileLocator(m: ParentLocatorMutation): Uint8Array {
  const out = new Uint8Array(m.itemLength);
  out.set(PARENT_LOCATOR_TYPE_VHDX.subarray(0, Math.min(16, out.length)), 0);
  putU16(out, 18, m.count);
  const tableEnd = Math.min(out.length, 20 + 12 * m.count);
  for (let i = tableEnd; i + 1 < out.length; i += 2) {
    const k = (i - tableEnd) >> 1;
    const c = m.fill === 'zeros' ? 0 : m.fill === 'ascii' ? 0x61 + (k % 26) : 0x100 + (k & 0x7fff);
    putU16(out, i, c);
  }
  const rand = filler(m.count * 8, m.seed);
  const room = Math.max(1, out.length - tableEnd);
  for (let i = 0; i < m.count && 20 + 12 * i + 12 <= out.length; i++) {
    let keyOffset: number;
    let valueOffset: number;
    switch (m.shape) {
      case 'packed':
        keyOffset = tableEnd + ((i * (m.keyLength + m.valueLength)) % room);
        valueOffset = keyOffset + m.keyLength;
        break;
      case 'sliding-keys':
        keyOffset = tableEnd + ((2 * i) % room);
        valueOffset = tableEnd;
        break;
      case 'same-slice':
        keyOffset = tableEnd;
        valueOffset = tableEnd;
        break;
      case 'random':
        keyOffset = getU32(rand, 8 * i) % (out.length + 1);
        valueOffset = getU32(rand, 8 * i + 4) % (out.length + 1);
        break;
    }
    const at = 20 + 12 * i;
    putU32(out, at, keyOffset);
    putU32(out, at + 4, valueOffset);
    putU16(out, at + 8, m.keyLength);
    putU16(out, at + 10, m.valueLength);
  }
  return out;
}

/** Turns the image into a differencing disk whose locator is `m` (a sixth metadata item, HasParent set). */
export function applyParentLocator(b: Uint8Array, layout: Layout, m: ParentLocatorMutation): void {
  const m0 = layout.metadataOffset;
  const item = encodeHostileLocator(m);
  const itemOffset = Math.min(m.itemOffset, layout.metadataLength - item.length);
  if (itemOffset < 64 * KiB) return;
  setBytes(b, m0 + itemOffset, item);
  const index = layout.metadataItems.length;
  const at = m0 + 32 + 32 * index;
  setBytes(b, at, METADATA_PARENT_LOCATOR);
  putU32(b, at + 16, itemOffset);
  putU32(b, at + 20, item.length);
  putU32(b, at + 24, 4); // IsRequired
  putU16(b, m0 + 10, index + 1);
  const params = m0 + layout.metadataItems[0]!.offset;
  putU32(b, params + 4, 2); // HasParent
}

// ---------------------------------------------------------------- family: BAT entries

export interface BatEdit {
  target: { block: number } | { sectorBitmap: number } | { index: number };
  state: number | 'keep';
  /** The FileOffsetMB field, as a file offset (rounded down to MiB) or a raw 44-bit MiB count. */
  offset: Place | { existingBlock: number } | { mb: number } | 'keep';
  reserved: number;
}

export interface BatMutation {
  kind: 'bat';
  edits: BatEdit[];
  /** Applied to every payload entry first: all present at one offset, all one state, or unchanged. */
  mass: { mode: 'none' } | { mode: 'allPresentAt'; offset: Place } | { mode: 'allState'; state: number } | { mode: 'allPresentSequential'; from: Place };
}

const batEditArb: fc.Arbitrary<BatEdit> = fc.record({
  target: fc.oneof(
    { weight: 5, arbitrary: fc.record({ block: fc.oneof(fc.nat({ max: 7 }), fc.nat({ max: 4096 })) }) },
    { weight: 1, arbitrary: fc.record({ sectorBitmap: fc.nat({ max: 2 }) }) },
    { weight: 1, arbitrary: fc.record({ index: fc.nat({ max: 140_000 }) }) },
  ),
  state: fc.oneof(fc.constant('keep' as const), fc.integer({ min: 0, max: 7 }), fc.constantFrom(4, 6, 6, 7)),
  offset: fc.oneof(
    { weight: 1, arbitrary: fc.constant('keep' as const) },
    { weight: 4, arbitrary: placeArb() },
    { weight: 2, arbitrary: fc.record({ existingBlock: fc.nat({ max: 4 }) }) },
    { weight: 1, arbitrary: fc.record({ mb: fc.constantFrom(0, 1, 2 ** 20, 2 ** 26, 2 ** 32, 2 ** 44 - 1) }) },
  ),
  reserved: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(1, 0x1ffff) }),
});

export const batMutationArb: fc.Arbitrary<BatMutation> = fc.record({
  kind: fc.constant('bat' as const),
  edits: fc.array(batEditArb, { minLength: 1, maxLength: 6 }),
  mass: fc.oneof(
    { weight: 6, arbitrary: fc.constant({ mode: 'none' as const }) },
    { weight: 1, arbitrary: fc.record({ mode: fc.constant('allPresentAt' as const), offset: placeArb() }) },
    { weight: 1, arbitrary: fc.record({ mode: fc.constant('allState' as const), state: fc.integer({ min: 0, max: 7 }) }) },
    { weight: 1, arbitrary: fc.record({ mode: fc.constant('allPresentSequential' as const), from: placeArb(['firstBlock', 'bat', 'metadata', 'log', 'fileEnd', 'headerSectionEnd']) }) },
  ),
});

function putBatEntry(b: Uint8Array, at: number, state: number, mb: bigint, reserved: number): void {
  if (at < 0 || at + 8 > b.length) return;
  const m = BigInt.asUintN(44, mb);
  const lo = ((Number(m & 0xfffn) << 20) | ((reserved & 0x1ffff) << 3) | (state & 7)) >>> 0;
  const hi = Number(m >> 12n) >>> 0;
  putU32(b, at, lo);
  putU32(b, at + 4, hi);
}

export function applyBat(b: Uint8Array, layout: Layout, m: BatMutation): void {
  const base = layout.batOffset;
  const entryIndex = (block: number): number => block + Math.floor(block / layout.chunkRatio);
  const mbOf = (p: Place): bigint => resolvePlace(layout, p) / BigInt(MiB);
  const blocks = Math.min(layout.payloadBlocks, 4096);
  if (m.mass.mode === 'allPresentAt') {
    const mb = mbOf(m.mass.offset);
    for (let k = 0; k < blocks; k++) putBatEntry(b, base + 8 * entryIndex(k), 6, mb, 0);
  } else if (m.mass.mode === 'allState') {
    for (let k = 0; k < blocks; k++) {
      const at = base + 8 * entryIndex(k);
      if (at < b.length) b[at] = (b[at]! & ~7) | m.mass.state;
    }
  } else if (m.mass.mode === 'allPresentSequential') {
    const mb = mbOf(m.mass.from);
    const step = BigInt(layout.blockSize / MiB);
    for (let k = 0; k < blocks; k++) putBatEntry(b, base + 8 * entryIndex(k), 6, mb + BigInt(k) * step, 0);
  }
  for (const e of m.edits) {
    const index =
      'block' in e.target ? entryIndex(e.target.block) : 'sectorBitmap' in e.target ? e.target.sectorBitmap * (layout.chunkRatio + 1) + layout.chunkRatio : e.target.index;
    const at = base + 8 * index;
    if (at + 8 > b.length) continue;
    const lo = getU32(b, at);
    const hi = getU32(b, at + 4);
    const state = e.state === 'keep' ? lo & 7 : e.state;
    let mb: bigint;
    if (e.offset === 'keep') mb = (BigInt(hi) << 12n) | BigInt(lo >>> 20);
    else if ('existingBlock' in e.offset) mb = BigInt((layout.blocks[e.offset.existingBlock % Math.max(1, layout.blocks.length)]?.fileOffset ?? 0) / MiB);
    else if ('mb' in e.offset) mb = BigInt(e.offset.mb);
    else mb = mbOf(e.offset);
    putBatEntry(b, at, state, mb, e.reserved);
  }
}

// ---------------------------------------------------------------- family: log entries with valid checksums

export type DataContent =
  | { content: 'file' }
  | { content: 'zeros' }
  | { content: 'random'; seed: number }
  /** The file's sector at the target with u64 patches (hostile BAT entries, item values, region fields). */
  | { content: 'patched'; patches: { at: number; value: bigint }[] }
  /** The first sector of a hostile region table, sealed against the rest of the file's table. */
  | { content: 'regionTable'; entries: RegionSpec[] };

export type DescriptorSpec =
  | { kind: 'data'; target: Place; data: DataContent }
  | { kind: 'zero'; target: Place; zeroLength: bigint };

export type EntryPatch =
  | { field: 'entryLength'; value: number }
  | { field: 'descriptorCount'; value: number }
  | { field: 'reserved'; value: number }
  | { field: 'descriptorSignature'; index: number; value: 'zero' | 'desc' | 'junk' }
  | { field: 'descriptorSequence'; index: number }
  | { field: 'dataSectorSignature'; index: number }
  | { field: 'dataSectorSequence'; index: number; high: boolean }
  | { field: 'logGuid' };

export interface LogEntrySpec {
  sequence: 'next' | 'same' | 'skip' | 'back' | { raw: bigint };
  tail: 'self' | 'first' | 'previous' | 'lastSector' | 'outside' | 'unaligned' | { sector: number };
  flushedFileOffset: Place;
  lastFileOffset: Place;
  descriptors: DescriptorSpec[];
  /** Pads the entry with this many extra zero sectors descriptors do not use (covered by the CRC). */
  padSectors: number;
  patches: EntryPatch[];
  reseal: boolean;
}

/**
 * Fills the ring with many valid entries (no descriptors) instead of `entries`: 'chain' puts single-sector
 * entries back to back with consecutive sequence numbers; 'nested' gives each a padded EntryLength
 * reaching the end of the flooded area, so every entry lies inside the previous one (each still has a
 * valid CRC over its own bytes). Tail 'outside' names a sector no entry starts at (the ring's last).
 */
export interface LogFlood {
  mode: 'chain' | 'nested';
  count: number;
  tail: 'self' | 'first' | 'outside' | 'next';
}

/**
 * Tails that close a sequence at once ('self', 'first') make the scan stop early, so the weight is on
 * those that do not; counts reach the ring's capacity.
 */
export const logFloodArb: fc.Arbitrary<LogFlood> = fc.record({
  mode: fc.constantFrom('chain', 'nested'),
  count: fc.oneof({ weight: 1, arbitrary: fc.constantFrom(1, 2, 17, 255) }, { weight: 3, arbitrary: fc.constantFrom(511, 1023, 2047, 4095) }),
  tail: fc.oneof({ weight: 1, arbitrary: fc.constantFrom('self' as const, 'first' as const) }, { weight: 3, arbitrary: fc.constantFrom('outside' as const, 'next' as const) }),
});

export interface LogMutation {
  kind: 'log';
  flood: LogFlood | null;
  /** Keep the base log's bytes under the new entries, or clear the ring first. */
  clear: boolean;
  /** Log-relative sector where the first entry goes: 0, a random sector, or close to the end (wrap). */
  start: { at: 'zero' } | { at: 'sector'; sector: number } | { at: 'nearEnd'; back: number };
  firstSequence: bigint;
  entries: LogEntrySpec[];
}

const alignedDeltaArb = fc.oneof(fc.constantFrom(0, 0, 4096, -4096, 8192, 64 * KiB, MiB, -MiB), fc.integer({ min: -512, max: 2048 }).map((k) => k * 4096));

/** Log targets: mostly aligned places on the structures a log normally rewrites, some absurd ones. */
export const logTargetArb: fc.Arbitrary<Place> = fc.oneof(
  {
    weight: 10,
    arbitrary: fc.record({
      anchor: fc.constantFrom<Anchor>('zero', 'header1', 'regionTable1', 'regionTable2', 'log', 'metadata', 'metadataItems', 'bat', 'batEnd', 'firstBlock', 'fileEnd'),
      delta: alignedDeltaArb,
    }),
  },
  { weight: 1, arbitrary: fc.record({ raw: hugeArb }) },
);

const fileSizePlaceArb: fc.Arbitrary<Place> = fc.oneof(
  { weight: 8, arbitrary: fc.record({ anchor: fc.constantFrom<Anchor>('fileEnd', 'zero', 'bat', 'lastBlock'), delta: fc.constantFrom(0, 0, 0, 1, -1, 4096, -4096, MiB, -MiB, 513 * MiB) }) },
  { weight: 1, arbitrary: fc.record({ raw: hugeArb }) },
);

const dataContentArb: fc.Arbitrary<DataContent> = fc.oneof(
  { weight: 3, arbitrary: fc.constant({ content: 'file' as const }) },
  { weight: 1, arbitrary: fc.constant({ content: 'zeros' as const }) },
  { weight: 1, arbitrary: fc.record({ content: fc.constant('random' as const), seed: fc.nat() }) },
  {
    weight: 3,
    arbitrary: fc.record({
      content: fc.constant('patched' as const),
      patches: fc.array(fc.record({ at: fc.oneof(fc.constantFrom(0, 8, 16, 24, 48, 56, 4088), fc.nat({ max: 511 }).map((k) => k * 8)), value: u64Arb }), {
        minLength: 1,
        maxLength: 4,
      }),
    }),
  },
  { weight: 2, arbitrary: fc.record({ content: fc.constant('regionTable' as const), entries: regionEntriesArb }) },
);

export const descriptorArb: fc.Arbitrary<DescriptorSpec> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ kind: fc.constant('data' as const), target: logTargetArb, data: dataContentArb }) },
  {
    weight: 2,
    arbitrary: fc.record({
      kind: fc.constant('zero' as const),
      target: logTargetArb,
      zeroLength: fc.oneof(
        { weight: 4, arbitrary: fc.constantFrom(0n, 4096n, 8192n, BigInt(MiB), 2n ** 32n, 2n ** 40n, 2n ** 46n, 2n ** 46n + 2n ** 40n, 2n ** 53n - 4096n, 2n ** 62n) },
        { weight: 1, arbitrary: hugeArb },
      ),
    }),
  },
);

const entryPatchArb: fc.Arbitrary<EntryPatch> = fc.oneof(
  { weight: 3, arbitrary: fc.record({ field: fc.constant('entryLength' as const), value: fc.oneof(fc.constantFrom(0, 4095, 4096, 8192, 12288, MiB - 4096, MiB, MiB + 4096, 2 ** 32 - 4096, 2 ** 32 - 1), u32Arb) }) },
  { weight: 3, arbitrary: fc.record({ field: fc.constant('descriptorCount' as const), value: fc.oneof(fc.constantFrom(0, 1, 2, 125, 126, 127, 128, 254, 255, 32766, 2 ** 31, 2 ** 32 - 1), u32Arb) }) },
  { weight: 1, arbitrary: fc.record({ field: fc.constant('reserved' as const), value: fc.constantFrom(1, 2 ** 32 - 1) }) },
  { weight: 1, arbitrary: fc.record({ field: fc.constant('descriptorSignature' as const), index: fc.nat({ max: 3 }), value: fc.constantFrom('zero', 'desc', 'junk') }) },
  { weight: 1, arbitrary: fc.record({ field: fc.constant('descriptorSequence' as const), index: fc.nat({ max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ field: fc.constant('dataSectorSignature' as const), index: fc.nat({ max: 3 }) }) },
  { weight: 1, arbitrary: fc.record({ field: fc.constant('dataSectorSequence' as const), index: fc.nat({ max: 3 }), high: fc.boolean() }) },
  { weight: 1, arbitrary: fc.constant({ field: 'logGuid' as const }) },
);

export const logEntrySpecArb: fc.Arbitrary<LogEntrySpec> = fc.record({
  sequence: fc.oneof({ weight: 6, arbitrary: fc.constant('next' as const) }, { weight: 1, arbitrary: fc.constantFrom('same' as const, 'skip' as const, 'back' as const) }, {
    weight: 1,
    arbitrary: fc.record({ raw: fc.constantFrom(0n, 1n, 2n ** 63n, 2n ** 64n - 1n) }),
  }),
  tail: fc.oneof(
    { weight: 7, arbitrary: fc.constantFrom('self' as const, 'first' as const) },
    { weight: 2, arbitrary: fc.constantFrom('previous' as const, 'lastSector' as const, 'outside' as const, 'unaligned' as const) },
    { weight: 1, arbitrary: fc.record({ sector: fc.nat({ max: 4095 }) }) },
  ),
  flushedFileOffset: fileSizePlaceArb,
  lastFileOffset: fileSizePlaceArb,
  descriptors: fc.oneof(
    { weight: 6, arbitrary: fc.array(descriptorArb, { maxLength: 4 }) },
    // Enough zero descriptors to need several descriptor sectors.
    { weight: 1, arbitrary: fc.integer({ min: 120, max: 400 }).map((n) => Array.from({ length: n }, (_, i): DescriptorSpec => ({ kind: 'zero', target: { anchor: 'bat', delta: (i % 4) * 4096 }, zeroLength: 4096n }))) },
  ),
  padSectors: fc.oneof({ weight: 6, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(1, 3, 200) }),
  patches: fc.oneof({ weight: 3, arbitrary: fc.constant<EntryPatch[]>([]) }, { weight: 1, arbitrary: fc.array(entryPatchArb, { minLength: 1, maxLength: 2 }) }),
  reseal: fc.oneof({ weight: 9, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
});

export const logMutationArb: fc.Arbitrary<LogMutation> = fc.record({
  kind: fc.constant('log' as const),
  flood: fc.constant(null),
  clear: fc.boolean(),
  start: fc.oneof(
    { weight: 3, arbitrary: fc.constant({ at: 'zero' as const }) },
    { weight: 1, arbitrary: fc.record({ at: fc.constant('sector' as const), sector: fc.nat({ max: 4095 }) }) },
    { weight: 2, arbitrary: fc.record({ at: fc.constant('nearEnd' as const), back: fc.integer({ min: 1, max: 3 }) }) },
  ),
  firstSequence: fc.oneof({ weight: 4, arbitrary: fc.constant(50n) }, { weight: 1, arbitrary: fc.constantFrom(1n, 2n ** 32n - 1n, 2n ** 63n, 2n ** 64n - 2n, 2n ** 64n - 1n) }),
  entries: fc.array(logEntrySpecArb, { minLength: 1, maxLength: 4 }),
});

function dataSector(b: Uint8Array, layout: Layout, target: bigint, content: DataContent): Uint8Array {
  const t = target <= BigInt(b.length) ? Number(target) : b.length;
  const fromFile = (): Uint8Array => {
    const out = new Uint8Array(4096);
    if (t < b.length) out.set(b.subarray(t, Math.min(b.length, t + 4096)));
    return out;
  };
  switch (content.content) {
    case 'file':
      return fromFile();
    case 'zeros':
      return new Uint8Array(4096);
    case 'random':
      return filler(4096, content.seed);
    case 'patched': {
      const out = fromFile();
      for (const p of content.patches) putU64(out, p.at, p.value);
      return out;
    }
    case 'regionTable': {
      // Sealed as the first 4 KiB of a table whose remaining 60 KiB are the file's region table 1.
      const table = encodeRegions(layout, content.entries, null);
      const rest = REGION_TABLE_OFFSETS[0] + 4096;
      if (rest + 60 * KiB <= b.length) table.set(b.subarray(rest, rest + 60 * KiB), 4096);
      putU32(table, 4, 0);
      putU32(table, 4, structureChecksum(table));
      return table.slice(0, 4096);
    }
  }
}

// CRC-32C of a concatenation from the CRCs of its parts (zlib's crc32_combine, Castagnoli polynomial):
// lets the nested flood seal each entry in O(log n) instead of re-reading everything after it.
function gf2Times(matrix: Uint32Array, vector: number): number {
  let sum = 0;
  for (let i = 0; vector !== 0; i++, vector >>>= 1) if (vector & 1) sum ^= matrix[i]!;
  return sum >>> 0;
}

function gf2Square(square: Uint32Array, matrix: Uint32Array): void {
  for (let n = 0; n < 32; n++) square[n] = gf2Times(matrix, matrix[n]!);
}

export function crc32cCombine(crc1: number, crc2: number, length2: number): number {
  if (length2 <= 0) return crc1 >>> 0;
  const even = new Uint32Array(32);
  const odd = new Uint32Array(32);
  odd[0] = 0x82f63b78;
  for (let n = 1, row = 1; n < 32; n++, row *= 2) odd[n] = row;
  gf2Square(even, odd);
  gf2Square(odd, even);
  let crc = crc1 >>> 0;
  let remaining = length2;
  for (;;) {
    gf2Square(even, odd);
    if (remaining % 2 === 1) crc = gf2Times(even, crc);
    remaining = Math.floor(remaining / 2);
    if (remaining === 0) break;
    gf2Square(odd, even);
    if (remaining % 2 === 1) crc = gf2Times(odd, crc);
    remaining = Math.floor(remaining / 2);
    if (remaining === 0) break;
  }
  return (crc ^ crc2) >>> 0;
}

const floodCache = new Map<string, Uint8Array>();

/** The flooded ring (cached per shape). */
export function floodLog(logLength: number, logGuid: Uint8Array, firstSequence: bigint, flood: LogFlood): Uint8Array {
  const sectors = logLength / 4096;
  const n = Math.min(flood.count, sectors - 1);
  const key = `${logLength}/${flood.mode}/${n}/${flood.tail}/${firstSequence}/${logGuid.join(',')}`;
  const cached = floodCache.get(key);
  if (cached) return cached;
  const log = new Uint8Array(logLength);
  const tailOf = (i: number): number =>
    flood.tail === 'self' ? i * 4096 : flood.tail === 'first' ? 0 : flood.tail === 'outside' ? (sectors - 1) * 4096 : ((i + 1) % sectors) * 4096;
  const entry = (i: number): Uint8Array =>
    encodeLogEntry({ sequenceNumber: BigInt.asUintN(64, firstSequence + BigInt(i)), tail: tailOf(i), logGuid, flushedFileOffset: 0, lastFileOffset: 0, descriptors: [] });
  if (flood.mode === 'chain') {
    for (let i = 0; i < n; i++) log.set(entry(i), i * 4096);
  } else {
    // Entry i spans [i, n) sectors: its CRC is its own sector (checksum field zero) combined with the
    // CRC of everything after it as stored, which is entry i+1's sealed bytes and so on.
    const end = n * 4096;
    let after = 0; // CRC-32C of the stored bytes from the next entry to the end (empty: 0)
    for (let i = n - 1; i >= 0; i--) {
      const at = i * 4096;
      const sector = entry(i);
      putU32(sector, 8, end - at);
      putU32(sector, 4, 0);
      const rest = end - at - 4096;
      putU32(sector, 4, crc32cCombine(crc32c(sector), after, rest));
      after = crc32cCombine(crc32c(sector), after, rest);
      log.set(sector, at);
    }
  }
  floodCache.set(key, log);
  return log;
}

/** Writes a fresh log (valid CRCs unless told otherwise) and points both headers at it with a new LogGuid. */
export function applyLog(b: Uint8Array, layout: Layout, m: LogMutation): void {
  const L = layout.logLength;
  if (L === 0 || layout.logOffset + L > b.length) return;
  const logGuid = filler(16, 4242);
  if (m.clear) b.fill(0, layout.logOffset, layout.logOffset + L);
  const sectors = L / 4096;
  if (m.flood) {
    b.set(floodLog(L, logGuid, m.firstSequence, m.flood), layout.logOffset);
    m = { ...m, entries: [] };
  }
  let position = m.start.at === 'zero' ? 0 : m.start.at === 'sector' ? (m.start.sector % sectors) * 4096 : Math.max(0, L - m.start.back * 4096);
  const first = position;
  let previous = position;
  let sequence = m.firstSequence;
  m.entries.forEach((spec, i) => {
    if (i > 0) {
      if (spec.sequence === 'next') sequence += 1n;
      else if (spec.sequence === 'skip') sequence += 2n;
      else if (spec.sequence === 'back') sequence -= 1n;
      else if (spec.sequence !== 'same') sequence = spec.sequence.raw;
    } else if (typeof spec.sequence === 'object') {
      sequence = spec.sequence.raw;
    }
    sequence = BigInt.asUintN(64, sequence);
    const tail =
      spec.tail === 'self'
        ? position
        : spec.tail === 'first'
          ? first
          : spec.tail === 'previous'
            ? previous
            : spec.tail === 'lastSector'
              ? L - 4096
              : spec.tail === 'outside'
                ? L
                : spec.tail === 'unaligned'
                  ? position + 512
                  : (spec.tail.sector % sectors) * 4096;
    const descriptors: LogDescriptor[] = spec.descriptors.map((d) =>
      d.kind === 'data' ? { fileOffset: 0, data: dataSector(b, layout, resolvePlace(layout, d.target), d.data) } : { fileOffset: 0, zeroLength: 0 },
    );
    const encoded = encodeLogEntry({ sequenceNumber: sequence, tail: 0, logGuid, flushedFileOffset: 0, lastFileOffset: 0, descriptors });
    const entry = new Uint8Array(encoded.length + spec.padSectors * 4096);
    entry.set(encoded);
    putU32(entry, 8, entry.length);
    putU32(entry, 12, tail);
    putU64(entry, 48, resolvePlace(layout, spec.flushedFileOffset));
    putU64(entry, 56, resolvePlace(layout, spec.lastFileOffset));
    const descriptorSectors = Math.ceil((descriptors.length + 2) / 128);
    spec.descriptors.forEach((d, k) => {
      const at = 64 + 32 * k;
      // Targets are kept 4 KiB aligned (rounded down) unless they are raw u64s: alignment is its own check.
      const target = resolvePlace(layout, d.target);
      putU64(entry, at + 16, 'raw' in d.target ? target : target - (target % 4096n));
      if (d.kind === 'zero') putU64(entry, at + 8, d.zeroLength);
    });
    for (const p of spec.patches) {
      switch (p.field) {
        case 'entryLength':
          putU32(entry, 8, p.value);
          break;
        case 'descriptorCount':
          putU32(entry, 24, p.value);
          break;
        case 'reserved':
          putU32(entry, 28, p.value);
          break;
        case 'descriptorSignature':
          if (p.index < descriptors.length) putAscii(entry, 64 + 32 * p.index, p.value === 'junk' ? 'xxxx' : p.value);
          break;
        case 'descriptorSequence':
          if (p.index < descriptors.length) putU64(entry, 64 + 32 * p.index + 24, sequence + 1n);
          break;
        case 'dataSectorSignature':
          putAscii(entry, (descriptorSectors + p.index) * 4096, 'dat\0');
          break;
        case 'dataSectorSequence':
          putU32(entry, (descriptorSectors + p.index) * 4096 + (p.high ? 4 : 4092), 0xdeadbeef);
          break;
        case 'logGuid':
          entry[32] = entry[32]! ^ 1;
          break;
      }
    }
    putU32(entry, 4, 0);
    ringWrite(b, layout, position, entry);
    if (spec.reseal) resealLogEntry(b, layout, position);
    previous = position;
    position = (position + entry.length) % L;
  });
  const seq = layout.headerSequence + 100n;
  for (const slot of [0, 1] as const) {
    writeHeader(b, slot, { sequence: seq + BigInt(slot), logGuid, logVersion: 0, version: 1, logLength: L, logOffset: BigInt(layout.logOffset) });
  }
}

// ---------------------------------------------------------------- family: a log that extends the file

/**
 * A dirty log whose head says the file is longer than it is (LastFileOffset, or a descriptor beyond the
 * end), plus region and metadata edits that put structures in the space only the log claims exists.
 */
export interface ExtendMutation {
  kind: 'extendByLog';
  how: 'lastFileOffset' | 'dataDescriptor' | 'zeroDescriptor';
  /** The file size the log implies. */
  to: { fileEndPlus: number } | { raw: bigint };
  bat: 'keep' | 'atFileEnd' | 'belowExtent' | { raw: bigint };
  batLength: number | 'keep';
  metadata: 'keep' | 'atFileEnd';
  virtualSize: bigint | 'keep';
  blockSize: number | 'keep';
}

/** Biased to the corner that matters: the extension reaches the BAT's end, the BAT is large, the disk too. */
export const extendMutationArb: fc.Arbitrary<ExtendMutation> = fc.record({
  kind: fc.constant('extendByLog' as const),
  how: fc.constantFrom('lastFileOffset', 'dataDescriptor', 'zeroDescriptor'),
  to: fc.oneof(
    { weight: 1, arbitrary: fc.record({ fileEndPlus: fc.constantFrom(MiB, 16 * MiB, 64 * MiB, 600 * MiB, 2 ** 32) }) },
    { weight: 2, arbitrary: fc.record({ raw: fc.constantFrom(2n ** 36n, 2n ** 40n, 2n ** 45n, 2n ** 46n, 2n ** 46n + 2n ** 40n, 2n ** 53n - BigInt(MiB)) }) },
  ),
  bat: fc.oneof(
    { weight: 4, arbitrary: fc.constant('belowExtent' as const) },
    { weight: 2, arbitrary: fc.constantFrom('keep' as const, 'atFileEnd' as const) },
    { weight: 1, arbitrary: fc.record({ raw: fc.constantFrom(2n ** 32n, 2n ** 40n, 2n ** 45n) }) },
  ),
  batLength: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(65 * MiB, 513 * MiB, 2 ** 32 - MiB) }, { weight: 1, arbitrary: fc.constantFrom('keep' as const, 16 * MiB, 64 * MiB) }),
  metadata: fc.constantFrom('keep', 'keep', 'atFileEnd'),
  virtualSize: fc.oneof({ weight: 3, arbitrary: fc.constantFrom(2n ** 43n, 2n ** 45n, 2n ** 46n) }, { weight: 1, arbitrary: fc.constantFrom('keep' as const, 2n ** 34n, 2n ** 40n) }),
  blockSize: fc.constantFrom('keep' as const, MiB, 256 * MiB),
});

export function applyExtend(b: Uint8Array, layout: Layout, m: ExtendMutation): void {
  const fileEnd = BigInt(layout.fileSize);
  const to = 'raw' in m.to ? m.to.raw : fileEnd + BigInt(m.to.fileEndPlus);
  const mib = BigInt(MiB);
  const descriptors: DescriptorSpec[] = [{ kind: 'data', target: { anchor: 'bat', delta: 0 }, data: { content: 'file' } }];
  if (m.how === 'dataDescriptor') descriptors.push({ kind: 'data', target: { raw: to - 4096n }, data: { content: 'zeros' } });
  if (m.how === 'zeroDescriptor') descriptors.push({ kind: 'zero', target: { raw: fileEnd }, zeroLength: to - fileEnd });
  applyLog(b, layout, {
    kind: 'log',
    flood: null,
    clear: true,
    start: { at: 'zero' },
    firstSequence: 50n,
    entries: [
      {
        sequence: 'next',
        tail: 'self',
        flushedFileOffset: { anchor: 'fileEnd', delta: 0 },
        lastFileOffset: m.how === 'lastFileOffset' ? { raw: to } : { anchor: 'fileEnd', delta: 0 },
        descriptors,
        padSectors: 0,
        patches: [],
        reseal: true,
      },
    ],
  });
  const batLength = m.batLength === 'keep' ? layout.batLength : m.batLength;
  const batAt: Place =
    m.bat === 'keep'
      ? { anchor: 'bat', delta: 0 }
      : m.bat === 'atFileEnd'
        ? { anchor: 'fileEnd', delta: 0 }
        : m.bat === 'belowExtent'
          ? { raw: ((to - BigInt(batLength)) / mib) * mib }
          : m.bat;
  const metadataAt: Place = m.metadata === 'keep' ? { anchor: 'metadata', delta: 0 } : { anchor: 'fileEnd', delta: m.bat === 'atFileEnd' ? batLength : 0 };
  applyRegions(b, layout, {
    kind: 'regions',
    copies: 'both',
    entries: [
      { guid: 'bat', offset: batAt, length: batLength, required: true },
      { guid: 'metadata', offset: metadataAt, length: 'metadataLength', required: true },
    ],
    count: null,
    repeatLast: 0,
  });
  const values: ItemValue[] = [];
  if (m.virtualSize !== 'keep') values.push({ item: 'virtualSize', value: m.virtualSize });
  if (m.blockSize !== 'keep') values.push({ item: 'blockSize', value: m.blockSize });
  applyMetadata(b, layout, { kind: 'metadata', count: null, edits: [], extra: [], values });
}

// ---------------------------------------------------------------- everything at once

export type Mutation = ByteMutation | SizeMutation | HeaderMutation | RegionMutation | MetadataMutation | ParentLocatorMutation | BatMutation | LogMutation | ExtendMutation;

export const anyMutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  { weight: 4, arbitrary: byteMutationArb() },
  { weight: 1, arbitrary: sizeMutationArb },
  { weight: 2, arbitrary: headerMutationArb },
  { weight: 2, arbitrary: regionMutationArb },
  { weight: 2, arbitrary: metadataMutationArb },
  { weight: 1, arbitrary: parentLocatorArb },
  { weight: 2, arbitrary: batMutationArb },
  { weight: 2, arbitrary: logMutationArb },
  { weight: 1, arbitrary: extendMutationArb },
);

/** Each kind's applier; the size mutations return the resized image, the rest change it in place. */
const APPLY: Record<Mutation['kind'], (b: Uint8Array, layout: Layout, m: never) => Uint8Array | void> = {
  bytes: applyBytes,
  truncate: applySize,
  truncateNear: applySize,
  extend: applySize,
  header: applyHeader,
  regions: applyRegions,
  metadata: applyMetadata,
  parentLocator: applyParentLocator,
  bat: applyBat,
  log: applyLog,
  extendByLog: applyExtend,
};

/**
 * Applies mutations in order to a copy of `base` (made in `into` when given, e.g. a sandbox stage);
 * returns the mutated image, sized as the mutations say.
 */
export function mutate(base: Uint8Array, layout: Layout, mutations: Mutation[], reseal = false, into?: Uint8Array): Uint8Array {
  let b: Uint8Array;
  if (into && into.length === base.length) {
    into.set(base);
    b = into;
  } else {
    b = base.slice();
  }
  for (const m of mutations) b = APPLY[m.kind](b, layout, m as never) ?? b;
  if (reseal) resealAll(b, layout);
  return b;
}
