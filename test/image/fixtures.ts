/** Building and patching in-memory images for the image-layer tests. */
import { buildImage, type BuildSpec } from '../build-image.js';
import { MemoryBackend } from '../../src/io/memory.js';
import { decodeHeader, encodeHeader, type Header } from '../../src/format/header.js';
import { decodeRegionTable, encodeRegionTable, type RegionTable } from '../../src/format/region-table.js';
import { HEADER1_OFFSET, HEADER2_OFFSET, REGION_TABLE1_OFFSET, REGION_TABLE2_OFFSET, REGION_TABLE_SIZE, HEADER_SIZE } from '../../src/format/constants.js';
import { VhdxImage } from '../../src/image/image.js';

export const MiB = 1024 * 1024;

export async function built(spec: BuildSpec): Promise<Uint8Array> {
  const backend = new MemoryBackend();
  await buildImage(backend, spec);
  return backend.contents().slice();
}

export function openBytes(bytes: Uint8Array, readOnly = true): Promise<VhdxImage> {
  return VhdxImage.open(new MemoryBackend(bytes, { readOnly, name: 'test.vhdx' }), { readOnly });
}

export function patchHeader(bytes: Uint8Array, slot: 0 | 1, change: (h: Header) => Header): void {
  const offset = slot === 0 ? HEADER1_OFFSET : HEADER2_OFFSET;
  const h = decodeHeader(bytes.subarray(offset, offset + HEADER_SIZE));
  bytes.set(encodeHeader(change(h)), offset);
}

export function readHeader(bytes: Uint8Array, slot: 0 | 1): Header {
  const offset = slot === 0 ? HEADER1_OFFSET : HEADER2_OFFSET;
  return decodeHeader(bytes.subarray(offset, offset + HEADER_SIZE));
}

export function patchRegionTables(bytes: Uint8Array, change: (t: RegionTable) => RegionTable, copies: (0 | 1)[] = [0, 1]): void {
  for (const c of copies) {
    const offset = c === 0 ? REGION_TABLE1_OFFSET : REGION_TABLE2_OFFSET;
    const t = decodeRegionTable(bytes.subarray(offset, offset + REGION_TABLE_SIZE));
    bytes.set(encodeRegionTable(change(t)), offset);
  }
}

export function regionTable(bytes: Uint8Array): RegionTable {
  return decodeRegionTable(bytes.subarray(REGION_TABLE1_OFFSET, REGION_TABLE1_OFFSET + REGION_TABLE_SIZE));
}

/** The virtual disk a list of writes produces, as a raw model. */
export function model(size: number, writes: { offset: number; data: Uint8Array }[]): Uint8Array {
  const raw = new Uint8Array(size);
  for (const w of writes) raw.set(w.data, w.offset);
  return raw;
}

export async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  const { VhdxError } = await import('../../src/format/errors.js');
  try {
    await promise;
  } catch (error) {
    if (!(error instanceof VhdxError)) throw new Error(`expected VhdxError ${code}, got ${String(error)}`);
    if (error.code !== code) throw new Error(`expected code ${code}, got ${error.code}: ${error.message}`);
    return;
  }
  throw new Error(`expected VhdxError ${code}, but it succeeded`);
}
