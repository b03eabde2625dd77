/**
 * CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, initial value and final XOR 0xFFFFFFFF:
 * the checksum of every VHDX header, region table and log entry (format reference §0).
 * Slicing-by-4 tables keep long log entries cheap.
 */
const POLY = 0x82f63b78;
const TABLES: Uint32Array[] = (() => {
  const tables = [new Uint32Array(256), new Uint32Array(256), new Uint32Array(256), new Uint32Array(256)];
  const t0 = tables[0]!;
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t0[n] = c >>> 0;
  }
  for (let n = 0; n < 256; n++) {
    let c = t0[n]!;
    for (let t = 1; t < 4; t++) {
      c = (t0[c & 0xff]! ^ (c >>> 8)) >>> 0;
      tables[t]![n] = c;
    }
  }
  return tables;
})();
const T0 = TABLES[0]!;
const T1 = TABLES[1]!;
const T2 = TABLES[2]!;
const T3 = TABLES[3]!;

/** Continue a CRC over `bytes`. Start with `crc32cInit`, finish with `crc32cFinish`. */
export function crc32cUpdate(state: number, bytes: Uint8Array): number {
  let c = state >>> 0;
  let i = 0;
  const n = bytes.length;
  const end4 = n - (n % 4);
  for (; i < end4; i += 4) {
    c ^= bytes[i]! | (bytes[i + 1]! << 8) | (bytes[i + 2]! << 16) | (bytes[i + 3]! << 24);
    c = T3[c & 0xff]! ^ T2[(c >>> 8) & 0xff]! ^ T1[(c >>> 16) & 0xff]! ^ T0[c >>> 24]!;
  }
  for (; i < n; i++) c = T0[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
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
