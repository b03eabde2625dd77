/**
 * GUIDs in Microsoft's mixed-endian layout (format reference §0): Data1 u32 LE, Data2 and Data3 u16 LE,
 * Data4 as written. A Guid is the 16 on-disk bytes; text is for people and the parent locator.
 */
import { VhdxError } from './errors.js';

export type Guid = Uint8Array;

const TEXT = /^([0-9a-fA-F]{8})-([0-9a-fA-F]{4})-([0-9a-fA-F]{4})-([0-9a-fA-F]{4})-([0-9a-fA-F]{12})$/;

function hex(bytes: Uint8Array, order: number[]): string {
  return order.map((i) => bytes[i]!.toString(16).padStart(2, '0')).join('');
}

/** Upper-case canonical text without braces, e.g. `2DC27766-F623-4200-9D64-115E9BFD4A08`. */
export function guidToString(guid: Guid): string {
  return [
    hex(guid, [3, 2, 1, 0]),
    hex(guid, [5, 4]),
    hex(guid, [7, 6]),
    hex(guid, [8, 9]),
    hex(guid, [10, 11, 12, 13, 14, 15]),
  ]
    .join('-')
    .toUpperCase();
}

/** Parses text with both braces or neither, any case. */
export function guidFromString(text: string): Guid {
  const trimmed = text.trim();
  // Braces come in pairs or not at all.
  const bare = trimmed.startsWith('{') && trimmed.endsWith('}') ? trimmed.slice(1, -1) : trimmed;
  const m = TEXT.exec(bare);
  if (!m) throw new VhdxError('INVALID_ARGUMENT', `not a GUID: ${JSON.stringify(text)}`);
  const digits = m.slice(1).join('');
  const raw = new Uint8Array(16);
  for (let i = 0; i < 16; i++) raw[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  const out = new Uint8Array(16);
  const order = [3, 2, 1, 0, 5, 4, 7, 6, 8, 9, 10, 11, 12, 13, 14, 15];
  for (let i = 0; i < 16; i++) out[i] = raw[order[i]!]!;
  return out;
}

export function guidEquals(a: Guid, b: Guid): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

export function guidIsZero(guid: Guid): boolean {
  for (let i = 0; i < 16; i++) if (guid[i] !== 0) return false;
  return true;
}

/** A fresh random GUID (RFC 4122 version 4 bits set, which VHDX does not require but tools expect). */
export function randomGuid(): Guid {
  const g = new Uint8Array(16);
  globalThis.crypto.getRandomValues(g);
  g[7] = (g[7]! & 0x0f) | 0x40; // Data3 high nibble holds the version
  g[8] = (g[8]! & 0x3f) | 0x80;
  return g;
}

export const ZERO_GUID: Guid = new Uint8Array(16);
