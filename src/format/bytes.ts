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
  // Where Node's Buffer exists (a global, not an import: the core still runs in browsers), memcmp
  // against zeros is about 8x faster than any JavaScript loop (36 ms per GiB against 200+).
  if (NODE_BUFFER && bytes.length >= 4096) {
    for (let at = 0; at < bytes.length; at += ZERO_PAGE_SIZE) {
      const n = Math.min(ZERO_PAGE_SIZE, bytes.length - at);
      const view = NODE_BUFFER.from(bytes.buffer, bytes.byteOffset + at, n);
      if (!view.equals(n === ZERO_PAGE_SIZE ? ZERO_PAGE! : ZERO_PAGE!.subarray(0, n))) return false;
    }
    return true;
  }
  const n = bytes.length;
  let i = 0;
  if (bytes.byteOffset % 4 === 0 && n >= 64) {
    // Eight 32-bit words at a time: one branch per 32 bytes.
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, n >>> 2);
    const whole = words.length & ~7;
    for (let w = 0; w < whole; w += 8) {
      if ((words[w]! | words[w + 1]! | words[w + 2]! | words[w + 3]! | words[w + 4]! | words[w + 5]! | words[w + 6]! | words[w + 7]!) !== 0) return false;
    }
    for (let w = whole; w < words.length; w++) if (words[w] !== 0) return false;
    i = words.length * 4;
  }
  for (; i < n; i++) if (bytes[i] !== 0) return false;
  return true;
}

/** Whether two byte strings are the same (memcmp where Node's Buffer exists: 64 KiB in microseconds). */
export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  if (NODE_BUFFER) return NODE_BUFFER.from(a.buffer, a.byteOffset, a.length).equals(b);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

interface BufferLike extends Uint8Array {
  equals(other: Uint8Array): boolean;
  subarray(start?: number, end?: number): BufferLike;
}
const NODE_BUFFER = (globalThis as { Buffer?: { from(buffer: ArrayBufferLike, offset: number, length: number): BufferLike; alloc(n: number): BufferLike } }).Buffer;
const ZERO_PAGE_SIZE = 64 * 1024;
const ZERO_PAGE = NODE_BUFFER?.alloc(ZERO_PAGE_SIZE);

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

/** `1.5 GiB`, `512 B`: IEC units with up to three significant decimals (the command line and the inspector page print sizes so). */
export function humanSize(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  const text = unit === 0 ? String(value) : Number(value.toFixed(value < 10 ? 2 : value < 100 ? 1 : 0)).toString();
  return `${text} ${units[unit]}`;
}
