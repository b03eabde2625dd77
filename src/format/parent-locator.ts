/** Parent locator item of a differencing disk (format reference §6): a type GUID and UTF-16LE key/value pairs. */
import { decodeUtf16le, encodeUtf16le, requireLength, view } from './bytes.js';
import { VhdxError } from './errors.js';
import type { Guid } from './guid.js';

const HEADER_BYTES = 20;
const ENTRY_BYTES = 12;

export interface ParentLocator {
  locatorType: Guid;
  /** Keys in file order; keys are case-sensitive and unique (§6.1). */
  entries: { key: string; value: string }[];
}

function bad(message: string): VhdxError {
  return new VhdxError('BAD_PARENT_LOCATOR', message);
}

export function decodeParentLocator(bytes: Uint8Array): ParentLocator {
  requireLength(bytes, HEADER_BYTES, 'parent locator header');
  const dv = view(bytes);
  const count = dv.getUint16(18, true);
  if (HEADER_BYTES + count * ENTRY_BYTES > bytes.length) {
    throw bad(`parent locator claims ${count} key/value pairs but is only ${bytes.length} bytes`);
  }
  // Every string lies after the entry table and no two overlap, so the text decoded never exceeds the item.
  const tableEnd = HEADER_BYTES + count * ENTRY_BYTES;
  const spans: { start: number; end: number; what: string }[] = [];
  const slice = (offset: number, length: number, what: string): Uint8Array => {
    if (length === 0 || length % 2 !== 0 || offset < tableEnd || offset + length > bytes.length) {
      throw bad(`parent locator ${what} (offset ${offset}, length ${length}) lies outside the string area [${tableEnd}, ${bytes.length}) of the item`);
    }
    spans.push({ start: offset, end: offset + length, what });
    return bytes.subarray(offset, offset + length);
  };
  const raw: { key: Uint8Array; value: Uint8Array }[] = [];
  for (let i = 0; i < count; i++) {
    const at = HEADER_BYTES + i * ENTRY_BYTES;
    const key = slice(dv.getUint32(at, true), dv.getUint16(at + 8, true), `key ${i}`);
    const value = slice(dv.getUint32(at + 4, true), dv.getUint16(at + 10, true), `value ${i}`);
    raw.push({ key, value });
  }
  spans.sort((a, b) => a.start - b.start);
  for (let i = 1; i < spans.length; i++) {
    if (spans[i]!.start < spans[i - 1]!.end) throw bad(`parent locator ${spans[i - 1]!.what} overlaps ${spans[i]!.what}`);
  }
  const entries: { key: string; value: string }[] = [];
  const seen = new Set<string>();
  for (const { key: keyBytes, value: valueBytes } of raw) {
    const key = decodeUtf16le(keyBytes);
    if (seen.has(key)) throw bad(`parent locator key ${JSON.stringify(key.length > 40 ? `${key.slice(0, 40)}...` : key)} appears twice`);
    seen.add(key);
    entries.push({ key, value: decodeUtf16le(valueBytes) });
  }
  return { locatorType: bytes.slice(0, 16), entries };
}

export function encodeParentLocator(locator: ParentLocator): Uint8Array {
  const encoded = locator.entries.map((e) => ({ key: encodeUtf16le(e.key), value: encodeUtf16le(e.value) }));
  let size = HEADER_BYTES + encoded.length * ENTRY_BYTES;
  for (const e of encoded) size += e.key.length + e.value.length;
  const out = new Uint8Array(size);
  const dv = view(out);
  out.set(locator.locatorType, 0);
  dv.setUint16(18, encoded.length, true);
  let data = HEADER_BYTES + encoded.length * ENTRY_BYTES;
  encoded.forEach((e, i) => {
    if (e.key.length === 0 || e.value.length === 0 || e.key.length > 0xffff || e.value.length > 0xffff) {
      throw new VhdxError('INVALID_ARGUMENT', `parent locator entry ${i} has an empty or over-long key or value`);
    }
    const at = HEADER_BYTES + i * ENTRY_BYTES;
    dv.setUint32(at, data, true);
    out.set(e.key, data);
    data += e.key.length;
    dv.setUint32(at + 4, data, true);
    out.set(e.value, data);
    data += e.value.length;
    dv.setUint16(at + 8, e.key.length, true);
    dv.setUint16(at + 10, e.value.length, true);
  });
  return out;
}
