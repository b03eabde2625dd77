/**
 * The valid starting images of the fuzz suite, built in memory with the fixture generator, and the map
 * of where each structure sits in them (decoded with the library's codecs) so mutations can aim.
 */
import { batGeometry, decodeBatEntry, payloadEntryIndex, PAYLOAD_BLOCK_FULLY_PRESENT } from '../../src/format/bat.js';
import { HEADER1_OFFSET, HEADER2_OFFSET, REGION_BAT, REGION_METADATA, REGION_TABLE1_OFFSET } from '../../src/format/constants.js';
import { guidEquals } from '../../src/format/guid.js';
import { decodeHeader } from '../../src/format/header.js';
import { decodeFileParameters, decodeMetadataTable, decodeSectorSize, decodeVirtualDiskSize, METADATA_TABLE_SIZE } from '../../src/format/metadata.js';
import { decodeRegionTable } from '../../src/format/region-table.js';
import { MemoryBackend } from '../../src/io/memory.js';
import { buildImage, type BuildSpec } from '../build-image.js';
import { patternBytes } from '../helpers.js';

export const KiB = 1024;
export const MiB = 1024 * KiB;

/** 4 MiB-ish disks for most families; 2 GiB sparse disks where a dirty log needs several BAT sectors. */
export const BASE_SPECS = {
  'dynamic-windows-512': {
    virtualSize: 4 * MiB,
    blockSize: MiB,
    logicalSectorSize: 512,
    type: 'dynamic',
    layout: 'windows',
    writes: [
      { offset: 0, data: patternBytes(64 * KiB, 1) },
      { offset: 2 * MiB + MiB / 2, data: patternBytes(MiB, 2) },
    ],
    blockStates: [{ block: 1, state: 2 }],
  },
  'dynamic-qemu-4k': {
    virtualSize: 6 * MiB,
    blockSize: MiB,
    logicalSectorSize: 4096,
    physicalSectorSize: 4096,
    type: 'dynamic',
    layout: 'qemu',
    writes: [
      { offset: MiB + 4096, data: patternBytes(8192, 3) },
      { offset: 4 * MiB, data: patternBytes(MiB, 4) },
    ],
    blockStates: [
      { block: 5, state: 3 },
      { block: 0, state: 5 },
    ],
  },
  'fixed-windows-4k': {
    virtualSize: 3 * MiB,
    blockSize: MiB,
    logicalSectorSize: 4096,
    type: 'fixed',
    layout: 'windows',
    writes: [{ offset: 12288, data: patternBytes(2 * MiB, 5) }],
  },
  'fixed-qemu-512': {
    virtualSize: 2 * MiB + MiB / 2,
    blockSize: MiB,
    logicalSectorSize: 512,
    type: 'fixed',
    layout: 'qemu',
    writes: [{ offset: 2 * MiB + 100, data: patternBytes(5000, 6) }],
  },
  'dirty-windows-512': {
    virtualSize: 2048 * MiB,
    blockSize: MiB,
    logicalSectorSize: 512,
    type: 'dynamic',
    layout: 'windows',
    writes: [0, 600, 1100, 1700].map((block, i) => ({ offset: block * MiB + 512 * i, data: patternBytes(8192, 10 + i) })),
    dirtyLog: { entries: 4 },
  },
  'dirty-qemu-4k-wrap': {
    virtualSize: 2048 * MiB,
    blockSize: MiB,
    logicalSectorSize: 4096,
    type: 'dynamic',
    layout: 'qemu',
    writes: [3, 700, 1500].map((block, i) => ({ offset: block * MiB + 4096 * i, data: patternBytes(4096, 20 + i) })),
    dirtyLog: { entries: 3, wrap: true },
  },
  'dirty-fixed-windows-512': {
    virtualSize: 3 * MiB,
    blockSize: MiB,
    logicalSectorSize: 512,
    type: 'fixed',
    layout: 'windows',
    writes: [{ offset: MiB - 10, data: patternBytes(20, 30) }],
    dirtyLog: { entries: 2 },
  },
  /** A 16 MiB log (legal: any multiple of 1 MiB), for the log-scan families only (its 21 MiB cost more per case). */
  'big-log-windows-512': {
    virtualSize: 4 * MiB,
    blockSize: MiB,
    logicalSectorSize: 512,
    type: 'dynamic',
    layout: 'windows',
    logLength: 16 * MiB,
    writes: [{ offset: 3 * MiB, data: patternBytes(4096, 40) }],
  },
  /** A 64 MiB log, for the log-scan regression test only. */
  'huge-log-windows-512': {
    virtualSize: 4 * MiB,
    blockSize: MiB,
    logicalSectorSize: 512,
    type: 'dynamic',
    layout: 'windows',
    logLength: 64 * MiB,
    writes: [{ offset: 0, data: patternBytes(4096, 41) }],
  },
} satisfies Record<string, BuildSpec>;

export type BaseName = keyof typeof BASE_SPECS;
/** The bases every family runs on. */
export const BASE_NAMES = (Object.keys(BASE_SPECS) as BaseName[]).filter((n) => !n.includes('-log-'));
export const DIRTY_BASES = BASE_NAMES.filter((n) => n.startsWith('dirty'));
export const BIG_LOG_BASE: BaseName = 'big-log-windows-512';
export const HUGE_LOG_BASE: BaseName = 'huge-log-windows-512';

export interface Layout {
  fileSize: number;
  headerSequence: bigint;
  logGuid: Uint8Array;
  logOffset: number;
  logLength: number;
  /** Log-relative offsets and lengths of the entries found in the base log. */
  logEntries: { offset: number; length: number }[];
  batOffset: number;
  batLength: number;
  /** Bytes of the BAT the reader needs. */
  batUsed: number;
  metadataOffset: number;
  metadataLength: number;
  /** Region-relative positions of the metadata items, in table order. */
  metadataItems: { id: Uint8Array; offset: number; length: number }[];
  blockSize: number;
  logicalSectorSize: number;
  virtualSize: number;
  chunkRatio: number;
  payloadBlocks: number;
  /** Payload blocks present in the file's own BAT. */
  blocks: { block: number; fileOffset: number }[];
  /** End of the last of header section, log, BAT and metadata. */
  structuresEnd: number;
}

export interface BaseImage {
  name: BaseName;
  bytes: Uint8Array;
  layout: Layout;
}

function hasAscii(bytes: Uint8Array, at: number, text: string): boolean {
  for (let i = 0; i < text.length; i++) if (bytes[at + i] !== text.charCodeAt(i)) return false;
  return true;
}

export function parseLayout(bytes: Uint8Array): Layout {
  const h1 = decodeHeader(bytes.subarray(HEADER1_OFFSET, HEADER1_OFFSET + 4096));
  const h2 = decodeHeader(bytes.subarray(HEADER2_OFFSET, HEADER2_OFFSET + 4096));
  const header = h1.sequenceNumber >= h2.sequenceNumber ? h1 : h2;
  const regions = decodeRegionTable(bytes.subarray(REGION_TABLE1_OFFSET, REGION_TABLE1_OFFSET + 64 * KiB)).entries;
  const bat = regions.find((r) => guidEquals(r.guid, REGION_BAT))!;
  const meta = regions.find((r) => guidEquals(r.guid, REGION_METADATA))!;
  const table = decodeMetadataTable(bytes.subarray(meta.fileOffset, meta.fileOffset + METADATA_TABLE_SIZE));
  const item = (i: number): Uint8Array => {
    const e = table.entries[i]!;
    return bytes.subarray(meta.fileOffset + e.offset, meta.fileOffset + e.offset + e.length);
  };
  const params = decodeFileParameters(item(0));
  const virtualSize = decodeVirtualDiskSize(item(1));
  const logicalSectorSize = decodeSectorSize(item(3), 'logical');
  const geometry = batGeometry(virtualSize, params.blockSize, logicalSectorSize, false);
  const blocks: Layout['blocks'] = [];
  for (let b = 0; b < geometry.payloadBlocks; b++) {
    const e = decodeBatEntry(bytes.subarray(bat.fileOffset), payloadEntryIndex(b, geometry.chunkRatio));
    if (e.state === PAYLOAD_BLOCK_FULLY_PRESENT) blocks.push({ block: b, fileOffset: e.fileOffset });
  }
  const logEntries: Layout['logEntries'] = [];
  for (let s = 0; s < header.logLength; s += 4096) {
    const at = header.logOffset + s;
    if (hasAscii(bytes, at, 'loge')) logEntries.push({ offset: s, length: new DataView(bytes.buffer, bytes.byteOffset + at + 8, 4).getUint32(0, true) });
  }
  return {
    fileSize: bytes.length,
    headerSequence: header.sequenceNumber,
    logGuid: header.logGuid,
    logOffset: header.logOffset,
    logLength: header.logLength,
    logEntries,
    batOffset: bat.fileOffset,
    batLength: bat.length,
    batUsed: geometry.requiredEntries * 8,
    metadataOffset: meta.fileOffset,
    metadataLength: meta.length,
    metadataItems: table.entries.map((e) => ({ id: e.itemId, offset: e.offset, length: e.length })),
    blockSize: params.blockSize,
    logicalSectorSize,
    virtualSize,
    chunkRatio: geometry.chunkRatio,
    payloadBlocks: geometry.payloadBlocks,
    blocks,
    structuresEnd: Math.max(header.logOffset + header.logLength, bat.fileOffset + bat.length, meta.fileOffset + meta.length),
  };
}

/** The offsets where a cut is most interesting: every structure's start and end, every block's. */
export function boundariesOf(layout: Layout): number[] {
  const out = [0, 1, 8, 519, 520, 64 * KiB, 64 * KiB + 4096, 128 * KiB, 128 * KiB + 4096, 192 * KiB, 256 * KiB, 320 * KiB, MiB];
  out.push(layout.logOffset, layout.logOffset + layout.logLength, layout.metadataOffset, layout.metadataOffset + 64 * KiB);
  for (const i of layout.metadataItems) out.push(layout.metadataOffset + i.offset, layout.metadataOffset + i.offset + i.length);
  out.push(layout.metadataOffset + layout.metadataLength, layout.batOffset, layout.batOffset + layout.batUsed, layout.batOffset + layout.batLength);
  for (const e of layout.logEntries) out.push(layout.logOffset + e.offset, layout.logOffset + e.offset + e.length);
  for (const blk of layout.blocks) out.push(blk.fileOffset, blk.fileOffset + layout.blockSize);
  out.push(layout.fileSize);
  return out;
}

const cache = new Map<BaseName, Promise<BaseImage>>();

/** The base image (built once per process). Callers must copy `bytes` before mutating. */
export function baseImage(name: BaseName): Promise<BaseImage> {
  let p = cache.get(name);
  if (!p) {
    p = (async () => {
      const backend = new MemoryBackend();
      await buildImage(backend, BASE_SPECS[name]);
      const bytes = backend.contents().slice();
      return { name, bytes, layout: parseLayout(bytes) };
    })();
    cache.set(name, p);
  }
  return p;
}

/** Virtual ranges with known content in a base image: each write, and the blocks forced to a zero state. */
export function knownContent(name: BaseName): { offset: number; data: Uint8Array }[] {
  const spec: BuildSpec = BASE_SPECS[name];
  const bs = spec.blockSize ?? 32 * MiB;
  const out = (spec.writes ?? []).map((w) => ({ offset: w.offset, data: w.data }));
  for (const { block } of spec.blockStates ?? []) {
    out.push({ offset: block * bs, data: new Uint8Array(Math.min(bs, spec.virtualSize - block * bs)) });
  }
  return out;
}
