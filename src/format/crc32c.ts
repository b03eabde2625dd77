/**
 * CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF:
 * the checksum of every VHDX header, region table and log entry (format reference §0).
 * Slicing-by-8: eight bytes a step, read as two 32-bit words where the bytes are 4-byte aligned on a
 * little-endian host (every engine the core runs on), about twice the speed of slicing-by-4.
 */
const POLY = 0x82f63b78;
/** Table t at [t * 256, t * 256 + 256): the CRC of byte n followed by t zero bytes. */
const T = (() => {
  const t = new Uint32Array(8 * 256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t[n]!;
    for (let k = 1; k < 8; k++) {
      c = (t[c & 0xff]! ^ (c >>> 8)) >>> 0;
      t[k * 256 + n] = c;
    }
  }
  return t;
})();
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Continue a CRC over `bytes`. Start with `crc32cInit`, finish with `crc32cFinish`. */
export function crc32cUpdate(state: number, bytes: Uint8Array): number {
  let c = state >>> 0;
  let i = 0;
  const n = bytes.length;
  if (LITTLE_ENDIAN) {
    for (; i < n && (bytes.byteOffset + i) % 4 !== 0; i++) c = T[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
    const steps = (n - i) >>> 3;
    if (steps > 0) {
      const w = new Uint32Array(bytes.buffer, bytes.byteOffset + i, steps * 2);
      for (let j = 0; j < w.length; j += 2) {
        const a = c ^ w[j]!;
        const b = w[j + 1]!;
        c =
          T[1792 + (a & 0xff)]! ^ T[1536 + ((a >>> 8) & 0xff)]! ^ T[1280 + ((a >>> 16) & 0xff)]! ^ T[1024 + (a >>> 24)]! ^
          T[768 + (b & 0xff)]! ^ T[512 + ((b >>> 8) & 0xff)]! ^ T[256 + ((b >>> 16) & 0xff)]! ^ T[b >>> 24]!;
      }
      i += steps * 8;
    }
  }
  for (; i < n; i++) c = T[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return c >>> 0;
}

export const crc32cInit = 0xffffffff;

export function crc32cFinish(state: number): number {
  return (state ^ 0xffffffff) >>> 0;
}

export function crc32c(bytes: Uint8Array): number {
  return crc32cFinish(crc32cUpdate(crc32cInit, bytes));
}

/**
 * The VHDX checksum of a structure: CRC-32C over all of `bytes` with the 4-byte field at
 * `checksumOffset` (always 4 in VHDX) taken as zero. `bytes` is not modified.
 */
export function structureChecksum(bytes: Uint8Array, checksumOffset = 4): number {
  let state = crc32cUpdate(crc32cInit, bytes.subarray(0, checksumOffset));
  state = crc32cUpdate(state, ZERO4);
  state = crc32cUpdate(state, bytes.subarray(checksumOffset + 4));
  return crc32cFinish(state);
}

const ZERO4 = new Uint8Array(4);
