/**
 * Disks for the cloud tests and what a blob made from them must hold, worked out here from the bytes
 * the test wrote, never from the code under test: the model of the virtual disk, the 512-byte pages
 * that are not all zeros, and the footer fields read straight from the bytes (big-endian, at the
 * offsets of the VHD specification), checksum recomputed here.
 */
import assert from 'node:assert/strict';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { openImage } from '../../src/node/paths.js';
import { create } from '../../src/ops/create.js';

export const MiB = 1024 * 1024;
export const SECTOR = 512;
/** Seconds from the Unix epoch to 2000-01-01T00:00:00Z, the VHD epoch. */
const VHD_EPOCH = 946_684_800;

export interface Write {
  offset: number;
  data: Uint8Array;
}

/** Creates a dynamic VHDX (1 MiB blocks) at `path`, writes `writes` through the library and returns the virtual disk's bytes. */
export async function makeVhdx(path: string, virtualSize: number, writes: Write[]): Promise<Uint8Array> {
  const backend = await NodeFileBackend.open(path, { readOnly: false, create: true });
  await create(backend, { virtualSize, blockSize: MiB });
  await backend.close();
  const image = await openImage(path, { readOnly: false });
  const model = new Uint8Array(virtualSize);
  for (const w of writes) {
    await image.write(w.offset, w.data);
    model.set(w.data, w.offset);
  }
  await image.close();
  return model;
}

/** The [start, end) ranges of 512-byte sectors of `model` that are not all zeros, merged. */
export function nonZeroSectors(model: Uint8Array): { start: number; end: number }[] {
  const out: { start: number; end: number }[] = [];
  for (let at = 0; at < model.length; at += SECTOR) {
    let zero = true;
    for (let i = at; i < Math.min(at + SECTOR, model.length); i++) {
      if (model[i] !== 0) {
        zero = false;
        break;
      }
    }
    if (zero) continue;
    const end = Math.min(at + SECTOR, model.length);
    const last = out[out.length - 1];
    if (last && last.end === at) last.end = end;
    else out.push({ start: at, end });
  }
  return out;
}

export interface FooterExpectation {
  /** The virtual size the footer must state (the disk's size rounded up to a MiB). */
  size: number;
  uniqueId?: Uint8Array;
  /** Unix seconds. */
  time?: number;
}

/** Checks a fixed VHD footer field by field from its raw bytes; returns its unique ID. */
export function checkFooter(footer: Uint8Array, want: FooterExpectation): Uint8Array {
  assert.equal(footer.length, 512);
  const dv = new DataView(footer.buffer, footer.byteOffset, 512);
  assert.equal(Buffer.from(footer.subarray(0, 8)).toString('latin1'), 'conectix', 'cookie');
  assert.equal(dv.getUint32(8), 2, 'features: the reserved bit only');
  assert.equal(dv.getUint32(12), 0x00010000, 'file format version 1.0');
  assert.equal(dv.getBigUint64(16), 0xffffffffffffffffn, 'data offset of a fixed disk');
  if (want.time !== undefined) assert.equal(dv.getUint32(24), want.time - VHD_EPOCH, 'timestamp');
  assert.equal(Buffer.from(footer.subarray(28, 32)).toString('latin1'), 'vhdx', 'creator application');
  assert.equal(Buffer.from(footer.subarray(36, 40)).toString('latin1'), 'Wi2k', 'creator host OS');
  assert.equal(Number(dv.getBigUint64(40)), want.size, 'original size');
  assert.equal(Number(dv.getBigUint64(48)), want.size, 'current size');
  const cylinders = dv.getUint16(56);
  const heads = footer[58]!;
  const sectors = footer[59]!;
  // The appendix's geometry when it gives the size exactly; else the largest, "use Current Size".
  const exact = cylinders * heads * sectors * 512 === want.size;
  assert.ok(exact || (cylinders === 65535 && heads === 16 && sectors === 255), `CHS geometry ${cylinders}/${heads}/${sectors}: exact or the largest`);
  assert.equal(dv.getUint32(60), 2, 'disk type fixed');
  let sum = 0;
  for (let i = 0; i < 512; i++) if (i < 64 || i >= 68) sum += footer[i]!;
  assert.equal(dv.getUint32(64), ~sum >>> 0, 'checksum');
  const uniqueId = footer.slice(68, 84);
  if (want.uniqueId) assert.deepEqual(uniqueId, want.uniqueId, 'unique ID');
  else assert.ok(uniqueId.some((b) => b !== 0), 'a unique ID');
  assert.equal(footer[84], 0, 'saved state');
  assert.ok(footer.subarray(85).every((b) => b === 0), 'reserved bytes zero');
  return uniqueId;
}

/** The whole blob must be the model zero padded to `footerSize`, then the footer. */
export function checkBlobBytes(blob: Uint8Array, model: Uint8Array, want: FooterExpectation): void {
  assert.equal(blob.length, want.size + 512, 'blob length: the size in whole MiB plus the footer');
  assert.ok(Buffer.from(blob.subarray(0, model.length)).equals(Buffer.from(model)), 'disk bytes');
  assert.ok(blob.subarray(model.length, want.size).every((b) => b === 0), 'padding zeros');
  checkFooter(blob.subarray(want.size), want);
}

/** `ranges` and the footer's page at `size`, merged where they touch. */
export function withFooterPage(ranges: { start: number; end: number }[], size: number): { start: number; end: number }[] {
  const out = ranges.map((r) => ({ ...r }));
  const last = out[out.length - 1];
  if (last && last.end === size) last.end = size + 512;
  else out.push({ start: size, end: size + 512 });
  return out;
}
