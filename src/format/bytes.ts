/** Little-endian field access shared by the codecs; every offset is explicit at the call site. */
import { VhdxError, type VhdxErrorCode } from './errors.js';

export function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * A u64 as a JS number, refusing anything above 2^53 - 1: VHDX offsets and sizes stop at 64 TiB,
 * so a larger value is corruption, not a number to round.
 */
export function readU64(dv: DataView, offset: number, code: VhdxErrorCode, what: string): number {
  const lo = dv.getUint32(offset, true);
  const hi = dv.getUint32(offset + 4, true);
  if (hi > 0x1fffff) {
    throw new VhdxError(code, `${what} is too large (${(BigInt(hi) << 32n) | BigInt(lo)})`);
  }
  return hi * 0x1_0000_0000 + lo;
}

export function writeU64(dv: DataView, offset: number, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) throw new RangeError(`not a u64: ${value}`);
  dv.setUint32(offset, value % 0x1_0000_0000, true);
  dv.setUint32(offset + 4, Math.floor(value / 0x1_0000_0000), true);
}

/** True when `bytes` starting at `offset` spell the ASCII `signature`. */
export function hasSignature(bytes: Uint8Array, offset: number, signature: string): boolean {
  if (bytes.length < offset + signature.length) return false;
  for (let i = 0; i < signature.length; i++) {
    if (bytes[offset + i] !== signature.charCodeAt(i)) return false;
  }
  return true;
}

export function writeSignature(bytes: Uint8Array, offset: number, signature: string): void {
  for (let i = 0; i < signature.length; i++) bytes[offset + i] = signature.charCodeAt(i);
}

export function requireLength(bytes: Uint8Array, length: number, what: string): void {
  if (bytes.length < length) {
    throw new VhdxError('TRUNCATED', `${what} needs ${length} bytes, got ${bytes.length}`);
  }
}

export function isAllZero(bytes: Uint8Array): boolean {
  const n = bytes.length;
  let i = 0;
  if (bytes.byteOffset % 8 === 0 && n >= 64) {
    const words = new BigUint64Array(bytes.buffer, bytes.byteOffset, Math.floor(n / 8));
    for (let w = 0; w < words.length; w++) if (words[w] !== 0n) return false;
    i = words.length * 8;
  }
  for (; i < n; i++) if (bytes[i] !== 0) return false;
  return true;
}

/**
 * UTF-16LE code units to a string, exactly (lone surrogates kept, as Windows names may hold them), in
 * chunks so long strings cost linear time.
 */
export function decodeUtf16le(bytes: Uint8Array): string {
  const units = new Uint16Array(bytes.length >>> 1);
  for (let i = 0; i < units.length; i++) units[i] = bytes[2 * i]! | (bytes[2 * i + 1]! << 8);
  const parts: string[] = [];
  for (let i = 0; i < units.length; i += 4096) parts.push(String.fromCharCode(...units.subarray(i, i + 4096)));
  return parts.join('');
}

export function encodeUtf16le(text: string): Uint8Array {
  const out = new Uint8Array(text.length * 2);
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    out[2 * i] = c & 0xff;
    out[2 * i + 1] = c >>> 8;
  }
  return out;
}

export const KiB = 1024;
export const MiB = 1024 * 1024;
export const GiB = 1024 * MiB;
export const TiB = 1024 * GiB;

export function isMultipleOf(value: number, unit: number): boolean {
  return value % unit === 0;
}

export function roundUp(value: number, unit: number): number {
  return Math.ceil(value / unit) * unit;
}
