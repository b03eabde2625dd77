/**
 * A corpus of damaged images for check and repair: each case starts from the same good image (made by
 * the library, with known contents) and damages it the way a crash, a cut-short copy or a broken tool
 * would. Shared by the check corpus test and the agreement test against qemu-img.
 */
import { closeSync, openSync, readSync, statSync, truncateSync, writeSync, appendFileSync } from 'node:fs';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { buildImage } from '../build-image.js';
import { VhdxImage } from '../../src/image/image.js';
import { chooseHeader, HeaderWriter, readHeaderCopies } from '../../src/image/headers.js';
import { decodeRegionTable, encodeRegionTable } from '../../src/format/region-table.js';
import { guidEquals, randomGuid, type Guid } from '../../src/format/guid.js';
import { REGION_BAT } from '../../src/format/constants.js';
import type { FindingCode } from '../../src/ops/check.js';
import { patternBytes } from '../helpers.js';

export const MiB = 1024 * 1024;
export const KiB = 1024;
export const BLOCK = MiB;
/** Past 4 GiB with 1 MiB blocks and 512-byte sectors, so the BAT holds a sector bitmap entry (index 4096). */
export const VIRTUAL_SIZE = 4096 * MiB + 16 * MiB;
/** Only the first 16 MiB are ever written. */
export const DATA_SPAN = 16 * MiB;
export const WRITTEN_BLOCKS = [0, 2, 3, 5, 15];

export function baseContent(): Uint8Array {
  const model = new Uint8Array(DATA_SPAN);
  for (const [i, block] of WRITTEN_BLOCKS.entries()) {
    // Not whole blocks: the rest of each block must read as zeros.
    model.set(patternBytes(BLOCK - 4096 * (i + 1), block + 1), block * BLOCK + 1024 * i);
  }
  return model;
}

export async function makeBase(path: string, options: { dirtyLog?: boolean } = {}): Promise<void> {
  const model = baseContent();
  const backend = await NodeFileBackend.open(path, { readOnly: false, create: true });
  try {
    await buildImage(backend, {
      virtualSize: VIRTUAL_SIZE,
      blockSize: BLOCK,
      writes: WRITTEN_BLOCKS.map((b) => ({ offset: b * BLOCK, data: model.subarray(b * BLOCK, (b + 1) * BLOCK) })),
      ...(options.dirtyLog ? { dirtyLog: { entries: 2 } } : {}),
    });
    await backend.flush();
  } finally {
    await backend.close();
  }
}

function readAt(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, 'r');
  try {
    const b = Buffer.alloc(length);
    readSync(fd, b, 0, length, offset);
    return b;
  } finally {
    closeSync(fd);
  }
}

function writeAt(path: string, offset: number, data: Uint8Array): void {
  const fd = openSync(path, 'r+');
  try {
    writeSync(fd, data, 0, data.length, offset);
  } finally {
    closeSync(fd);
  }
}

function flipByte(path: string, offset: number): void {
  const b = readAt(path, offset, 1);
  b[0] = b[0]! ^ 0x5a;
  writeAt(path, offset, b);
}

/** File offset of the BAT, from region table copy 1 (the base image's copies are equal). */
export function batOffset(path: string): number {
  const table = decodeRegionTable(readAt(path, 192 * KiB, 64 * KiB));
  const bat = table.entries.find((e) => isBat(e.guid));
  if (!bat) throw new Error('no BAT region');
  return bat.fileOffset;
}

function isBat(guid: Guid): boolean {
  return guidEquals(guid, REGION_BAT);
}

/** Payload block `block`'s BAT entry index (chunk ratio 4096 for 1 MiB blocks of 512-byte sectors). */
function entryIndex(block: number): number {
  return block + Math.floor(block / 4096);
}

export function readEntry(path: string, index: number): { state: number; offset: number } {
  const raw = readAt(path, batOffset(path) + 8 * index, 8).readBigUInt64LE(0);
  return { state: Number(raw & 7n), offset: Number(raw >> 20n) * MiB };
}

export function setEntry(path: string, index: number, state: number, fileOffset: number): void {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(BigInt(state) | (BigInt(fileOffset / MiB) << 20n));
  writeAt(path, batOffset(path) + 8 * index, b);
}

export function blockOffset(path: string, block: number): number {
  return readEntry(path, entryIndex(block)).offset;
}

export interface DamageCase {
  name: string;
  damage(path: string): Promise<void> | void;
  /** Codes our check must report. */
  codes: FindingCode[];
  /** Our check's exit status (and qemu-img check's convention): 0 clean, 2 corruption, 3 leaks. */
  exit: 0 | 2 | 3;
  repairable: boolean;
  /** Virtual ranges the repair reports lost (they read as zeros afterwards). */
  lost?: [number, number][];
  /** The content after repair, when it is not the base content with the lost ranges zeroed. */
  expected?(base: Uint8Array): Uint8Array;
  /** Needs the base built with a dirty log. */
  dirtyLog?: boolean;
}

export const CASES: DamageCase[] = [
  { name: 'header copy 1 bad', damage: (p) => flipByte(p, 64 * KiB + 200), codes: ['HEADER_COPY_BAD'], exit: 2, repairable: true },
  { name: 'header copy 2 bad', damage: (p) => flipByte(p, 128 * KiB + 200), codes: ['HEADER_COPY_BAD'], exit: 2, repairable: true },
  { name: 'region table copy 1 bad', damage: (p) => flipByte(p, 192 * KiB + 40), codes: ['REGION_TABLE_COPY_BAD'], exit: 2, repairable: true },
  { name: 'region table copy 2 bad', damage: (p) => flipByte(p, 256 * KiB + 40), codes: ['REGION_TABLE_COPY_BAD'], exit: 2, repairable: true },
  {
    name: 'region table copies differ',
    damage: (p) => {
      const table = decodeRegionTable(readAt(p, 192 * KiB, 64 * KiB));
      // A valid copy 2 with one more (optional, unknown) region: readers use copy 1.
      table.entries.push({ guid: randomGuid(), fileOffset: 64 * MiB, length: MiB, required: false });
      writeAt(p, 256 * KiB, encodeRegionTable(table));
    },
    codes: ['REGION_TABLES_DIFFER'],
    exit: 2,
    repairable: true,
  },
  { name: 'dirty log (crash after the log flush)', dirtyLog: true, damage: () => undefined, codes: ['LOG_REPLAY_NEEDED'], exit: 0, repairable: true },
  {
    name: 'log marked in use with nothing committed',
    damage: async (p) => {
      const backend = await NodeFileBackend.open(p, { readOnly: false });
      try {
        await new HeaderWriter(backend, chooseHeader(await readHeaderCopies(backend), p)).update({ logGuid: randomGuid() });
      } finally {
        await backend.close();
      }
    },
    codes: ['LOG_UNCOMMITTED'],
    exit: 0,
    repairable: true,
  },
  {
    name: 'BAT entry past the end of the file',
    damage: (p) => setEntry(p, entryIndex(7), 6, Math.ceil(statSync(p).size / MiB) * MiB + 10 * MiB),
    codes: ['BAT_PAST_EOF'],
    exit: 2,
    repairable: true,
    lost: [[7 * MiB, MiB]],
  },
  {
    name: 'file cut short inside the last block',
    damage: (p) => truncateSync(p, blockOffset(p, 15) + 512 * KiB),
    codes: ['BAT_CUT_SHORT'],
    exit: 2,
    repairable: true,
    lost: [[15 * MiB + 512 * KiB, 512 * KiB]],
  },
  { name: 'BAT entry into the header section', damage: (p) => setEntry(p, entryIndex(8), 6, 0), codes: ['BAT_IN_HEADER_SECTION'], exit: 2, repairable: true, lost: [[8 * MiB, MiB]] },
  { name: 'BAT entry into the BAT itself', damage: (p) => setEntry(p, entryIndex(9), 6, batOffset(p)), codes: ['BAT_OVERLAPS_STRUCTURE'], exit: 2, repairable: true, lost: [[9 * MiB, MiB]] },
  {
    name: 'two blocks sharing file space',
    damage: (p) => setEntry(p, entryIndex(10), 6, blockOffset(p, 2)),
    codes: ['BAT_OVERLAPS_BLOCK'],
    exit: 2,
    repairable: true,
    // Nothing is lost: block 10 keeps reading what it read, now from a copy of its own.
    expected: (base) => {
      const out = base.slice();
      out.set(base.subarray(2 * MiB, 3 * MiB), 10 * MiB);
      return out;
    },
  },
  { name: 'BAT entry with reserved state 4', damage: (p) => setEntry(p, entryIndex(11), 4, 0), codes: ['BAT_ILLEGAL_STATE'], exit: 2, repairable: true, lost: [[11 * MiB, MiB]] },
  {
    name: 'partially present block in a disk without a parent',
    damage: (p) => setEntry(p, entryIndex(0), 7, blockOffset(p, 0)),
    codes: ['BAT_ILLEGAL_STATE'],
    exit: 2,
    repairable: true,
    lost: [[0, MiB]],
  },
  { name: 'sector bitmap entry with an illegal state', damage: (p) => setEntry(p, 4096, 3, 0), codes: ['SECTOR_BITMAP_BAD'], exit: 2, repairable: true },
  {
    name: 'leaked space inside the file (a discarded block)',
    damage: async (p) => {
      const image = await VhdxImage.open(await NodeFileBackend.open(p, { readOnly: false }));
      await image.discard(3 * MiB, MiB);
      await image.close();
    },
    codes: ['LEAKED_SPACE'],
    exit: 3,
    repairable: true,
    expected: (base) => {
      const out = base.slice();
      out.fill(0, 3 * MiB, 4 * MiB);
      return out;
    },
  },
  { name: 'trailing garbage', damage: (p) => appendFileSync(p, patternBytes(3 * MiB + 100, 77)), codes: ['TRAILING_SPACE'], exit: 3, repairable: true },
  {
    name: 'both region table copies bad',
    damage: (p) => {
      flipByte(p, 192 * KiB + 40);
      flipByte(p, 256 * KiB + 40);
    },
    codes: ['BAD_REGION_TABLE'],
    exit: 2,
    repairable: false,
  },
  {
    name: 'metadata with an illegal block size',
    damage: async (p) => {
      // File Parameters: the metadata table's first item in images we make; its value starts with the block size.
      const table = decodeRegionTable(readAt(p, 192 * KiB, 64 * KiB));
      const meta = table.entries.find((e) => !isBat(e.guid))!;
      const items = readAt(p, meta.fileOffset, 64 * KiB);
      const count = items.readUInt16LE(10);
      for (let i = 0; i < count; i++) {
        const at = 32 + 32 * i;
        if (items.subarray(at, at + 16).equals(Buffer.from('3767a1ca36fa434db3b633f0aa44e76b', 'hex'))) {
          const b = Buffer.alloc(4);
          b.writeUInt32LE(3 * MiB);
          writeAt(p, meta.fileOffset + items.readUInt32LE(at + 16), b);
          return;
        }
      }
      throw new Error('no File Parameters item');
    },
    codes: ['BAD_METADATA'],
    exit: 2,
    repairable: false,
  },
];

export function lostRanges(c: DamageCase): [number, number][] {
  return c.lost ?? [];
}

export function expectedAfterRepair(c: DamageCase, base: Uint8Array): Uint8Array {
  if (c.expected) return c.expected(base);
  const out = base.slice();
  for (const [offset, length] of lostRanges(c)) out.fill(0, offset, offset + length);
  return out;
}
