/** Shared CLI helpers: size parsing, human sizes, usage errors. */
import { VhdxError } from '../format/errors.js';

export { humanSize } from '../format/bytes.js';

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

