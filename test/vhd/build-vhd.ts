/**
 * Builds VHD (v1) files for tests field by field from the specification's tables, without the library's
 * encoders, so a reader bug cannot hide behind a matching writer bug. Layout, as Windows and qemu-img
 * write it: footer copy at 0, dynamic header at 512, BAT at 1536, blocks after the BAT (sector bitmap,
 * then data), footer at the end.
 */
export const SECTOR = 512;
export const HEADER_OFFSET = 512;
export const TABLE_OFFSET = 1536;

export interface BuiltBlock {
  /** Sector-aligned content of the whole block (blockSize bytes). */
  data: Uint8Array;
  /** Sectors marked present; default all. */
  present?: (sector: number) => boolean;
}

export interface VhdSpec {
  type: 'dynamic' | 'differencing';
  size: number;
  blockSize: number;
  blocks: Map<number, BuiltBlock>;
  uniqueId?: Uint8Array;
  parentUniqueId?: Uint8Array;
  parentName?: string;
  /** Parent locators: platform code and path (stored UTF-16LE after the blocks). */
  locators?: { code: string; path: string }[];
  /** Extra BAT entries beyond the blocks the size needs. */
  extraEntries?: number;
}

function checksum(bytes: Uint8Array, field: number): number {
  let sum = 0;
  for (let i = 0; i < bytes.length; i++) if (i < field || i >= field + 4) sum += bytes[i]!;
  return ~sum >>> 0;
}

function ascii(out: Uint8Array, offset: number, text: string): void {
  for (let i = 0; i < text.length; i++) out[offset + i] = text.charCodeAt(i);
}

/** A footer from the specification's table. `dataOffset` null: fixed. */
export function buildFooter(type: 'fixed' | 'dynamic' | 'differencing', size: number, dataOffset: number | null, uniqueId: Uint8Array = new Uint8Array(16).fill(0x5a), creator = 'test'): Uint8Array {
  const f = new Uint8Array(512);
  const dv = new DataView(f.buffer);
  ascii(f, 0, 'conectix');
  dv.setUint32(8, 2);
  dv.setUint32(12, 0x0001_0000);
  dv.setBigUint64(16, dataOffset === null ? 0xffff_ffff_ffff_ffffn : BigInt(dataOffset));
  dv.setUint32(24, 1000);
  ascii(f, 28, creator.padEnd(4).slice(0, 4));
  dv.setUint32(32, 0x0001_0000);
  ascii(f, 36, 'Wi2k');
  dv.setBigUint64(40, BigInt(size));
  dv.setBigUint64(48, BigInt(size));
  dv.setUint16(56, 1000);
  f[58] = 16;
  f[59] = 63;
  dv.setUint32(60, { fixed: 2, dynamic: 3, differencing: 4 }[type]);
  f.set(uniqueId, 68);
  dv.setUint32(64, checksum(f, 64));
  return f;
}

/** Re-seals a footer (offset 64) or dynamic header (offset 36) after a test changed it. */
export function reseal(bytes: Uint8Array, at: number, checksumField: number, length: number): void {
  const view = bytes.subarray(at, at + length);
  new DataView(view.buffer, view.byteOffset).setUint32(checksumField, checksum(view, checksumField));
}

/** A dynamic or differencing VHD file. */
export function buildVhd(spec: VhdSpec): Uint8Array {
  const entries = Math.ceil(spec.size / spec.blockSize) + (spec.extraEntries ?? 0);
  const batBytes = Math.ceil((entries * 4) / SECTOR) * SECTOR;
  const bitmapBytes = Math.ceil(spec.blockSize / SECTOR / 8 / SECTOR) * SECTOR;
  const locatorData = (spec.locators ?? []).map((l) => {
    const b = new Uint8Array(Math.ceil((l.path.length * 2) / SECTOR) * SECTOR || SECTOR);
    for (let i = 0; i < l.path.length; i++) new DataView(b.buffer).setUint16(2 * i, l.path.charCodeAt(i), true);
    return { ...l, bytes: b, length: l.path.length * 2 };
  });
  const sortedBlocks = [...spec.blocks.keys()].sort((a, b) => a - b);
  let cursor = TABLE_OFFSET + batBytes;
  const locatorOffsets = locatorData.map((l) => {
    const at = cursor;
    cursor += l.bytes.length;
    return at;
  });
  const blockOffsets = new Map<number, number>();
  for (const b of sortedBlocks) {
    blockOffsets.set(b, cursor);
    cursor += bitmapBytes + spec.blockSize;
  }
  const out = new Uint8Array(cursor + 512);
  const dv = new DataView(out.buffer);
  const footer = buildFooter(spec.type, spec.size, HEADER_OFFSET, spec.uniqueId ?? new Uint8Array(16).fill(0x5a));
  out.set(footer, 0);
  out.set(footer, cursor);
  // Dynamic header.
  const h = HEADER_OFFSET;
  ascii(out, h, 'cxsparse');
  dv.setBigUint64(h + 8, 0xffff_ffff_ffff_ffffn);
  dv.setBigUint64(h + 16, BigInt(TABLE_OFFSET));
  dv.setUint32(h + 24, 0x0001_0000);
  dv.setUint32(h + 28, entries);
  dv.setUint32(h + 32, spec.blockSize);
  if (spec.parentUniqueId) out.set(spec.parentUniqueId, h + 40);
  const name = spec.parentName ?? '';
  for (let i = 0; i < name.length; i++) dv.setUint16(h + 64 + 2 * i, name.charCodeAt(i));
  locatorData.forEach((l, i) => {
    const at = h + 576 + 24 * i;
    ascii(out, at, l.code);
    dv.setUint32(at + 4, l.bytes.length);
    dv.setUint32(at + 8, l.length);
    dv.setBigUint64(at + 16, BigInt(locatorOffsets[i]!));
    out.set(l.bytes, locatorOffsets[i]!);
  });
  reseal(out, h, 36, 1024);
  // BAT.
  out.fill(0xff, TABLE_OFFSET, TABLE_OFFSET + batBytes);
  for (const [block, offset] of blockOffsets) {
    dv.setUint32(TABLE_OFFSET + 4 * block, offset / SECTOR);
    const { data, present } = spec.blocks.get(block)!;
    for (let s = 0; s < spec.blockSize / SECTOR; s++) if (!present || present(s)) out[offset + (s >> 3)]! |= 0x80 >> (s & 7);
    out.set(data.subarray(0, spec.blockSize), offset + bitmapBytes);
  }
  return out;
}

/** A fixed VHD: the bytes, then a footer. */
export function buildFixed(data: Uint8Array, uniqueId?: Uint8Array): Uint8Array {
  const out = new Uint8Array(data.length + 512);
  out.set(data, 0);
  out.set(buildFooter("fixed", data.length, null, uniqueId ?? new Uint8Array(16).fill(0x5a)), data.length);
  return out;
}
