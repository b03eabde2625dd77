/** Text forms shared by the page: sizes, offsets, hex dumps. */
import { humanSize } from '../src/format/bytes.js';

export { humanSize };

/** `1.5 GiB (1610612736 bytes)`; exact bytes only when they add something. */
export function sizeAndBytes(bytes: number): string {
  return bytes < 1024 ? `${bytes} bytes` : `${humanSize(bytes)} (${bytes.toLocaleString('en-US')} bytes)`;
}

export function hex(n: number, digits = 0): string {
  return `0x${n.toString(16).padStart(digits, '0')}`;
}

/** `0x100000 (1 MiB)`: a file offset both ways. */
export function offsetText(n: number): string {
  return `${hex(n)} (${humanSize(n)})`;
}

export function checksumText(n: number): string {
  return hex(n >>> 0, 8);
}

/**
 * A classic hex dump: 16 bytes a row, the row's offset (`base` + its position) in hex, the bytes in two
 * groups of eight, then the printable ASCII (anything else as a dot).
 */
export function hexDump(bytes: Uint8Array, base: number, offsetDigits: number): string {
  const rows: string[] = [];
  for (let at = 0; at < bytes.length; at += 16) {
    const row = bytes.subarray(at, Math.min(at + 16, bytes.length));
    let hexPart = '';
    let ascii = '';
    for (let i = 0; i < 16; i++) {
      if (i === 8) hexPart += ' ';
      const b = row[i];
      hexPart += b === undefined ? '   ' : `${b.toString(16).padStart(2, '0')} `;
      if (b !== undefined) ascii += b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '.';
    }
    rows.push(`${(base + at).toString(16).padStart(offsetDigits, '0')}  ${hexPart} |${ascii}|`);
  }
  return rows.join('\n');
}
