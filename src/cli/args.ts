/** Shared CLI helpers: size parsing, human sizes, usage errors. */
import { VhdxError } from '../format/errors.js';

const UNITS: Record<string, number> = { '': 1, K: 2 ** 10, M: 2 ** 20, G: 2 ** 30, T: 2 ** 40, P: 2 ** 50 };

/** `4096`, `64K`, `1.5G`, `32MiB`, `1T`: powers of 1024, result must be a whole number of bytes. */
export function parseSize(text: string, what: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?)(?:i?B)?\s*$/i.exec(text);
  if (!m) throw usage(`${what}: ${JSON.stringify(text)} is not a size (examples: 4096, 64K, 32M, 10G)`);
  const value = Number(m[1]) * UNITS[m[2]!.toUpperCase()]!;
  if (!Number.isSafeInteger(value)) throw usage(`${what}: ${JSON.stringify(text)} is not a whole number of bytes`);
  return value;
}

export function usage(message: string): VhdxError {
  return new VhdxError('INVALID_ARGUMENT', message);
}

/** `1.5 GiB`, `512 B`: IEC units with up to three significant decimals. */
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
