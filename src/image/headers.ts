/** Choosing the current header (format reference §3.2) and the header update protocol (§3.3). */
import { HEADER1_OFFSET, HEADER2_OFFSET, HEADER_SIZE } from '../format/constants.js';
import { VhdxError } from '../format/errors.js';
import { decodeHeader, encodeHeader, sameHeaderFields, type Header } from '../format/header.js';
import { readExactly, type Backend } from '../io/backend.js';

export const HEADER_OFFSETS = [HEADER1_OFFSET, HEADER2_OFFSET] as const;

export interface HeaderCopy {
  header: Header | null;
  /** Why the copy is unusable, when it is. */
  problem: string | null;
  raw: Uint8Array;
}

export interface ChosenHeader {
  header: Header;
  /** 0 for the copy at 64 KiB, 1 for the copy at 128 KiB. */
  slot: 0 | 1;
  copies: [HeaderCopy, HeaderCopy];
  warnings: string[];
}

export async function readHeaderCopies(backend: Backend): Promise<[HeaderCopy, HeaderCopy]> {
  const read = async (offset: number): Promise<HeaderCopy> => {
    const bytes = await readExactly(backend, offset, HEADER_SIZE, 'header');
    try {
      return { header: decodeHeader(bytes), problem: null, raw: bytes };
    } catch (error) {
      if (!(error instanceof VhdxError)) throw error;
      return { header: null, problem: error.message, raw: bytes };
    }
  };
  return [await read(HEADER1_OFFSET), await read(HEADER2_OFFSET)];
}

/** §3.2: the valid copy with the larger sequence number; equal numbers only when both copies say the same. */
export function chooseHeader(copies: [HeaderCopy, HeaderCopy], file: string): ChosenHeader {
  const [a, b] = copies;
  const warnings: string[] = [];
  copies.forEach((c, i) => {
    if (c.problem !== null) warnings.push(`header copy ${i + 1} (at ${HEADER_OFFSETS[i]}) is unusable: ${c.problem}`);
  });
  let slot: 0 | 1;
  if (a.header && b.header) {
    if (a.header.sequenceNumber === b.header.sequenceNumber) {
      if (!sameHeaderFields(a.raw, b.raw)) {
        throw new VhdxError('BAD_HEADER', `both headers have sequence number ${a.header.sequenceNumber} but differ`, { file, offset: HEADER1_OFFSET });
      }
      slot = 0;
    } else {
      slot = a.header.sequenceNumber > b.header.sequenceNumber ? 0 : 1;
    }
  } else if (a.header) {
    slot = 0;
  } else if (b.header) {
    slot = 1;
  } else {
    throw new VhdxError('BAD_HEADER', `no valid header (copy 1: ${a.problem}; copy 2: ${b.problem})`, { file, offset: HEADER1_OFFSET });
  }
  return { header: copies[slot].header!, slot, copies, warnings };
}

/**
 * Keeps the current header and performs §3.3 updates: write the new header into the non-current slot,
 * flush, then once more into the other slot, so both copies end up identical but for sequence and CRC.
 */
export class HeaderWriter {
  private current: Header;
  private slot: 0 | 1;

  constructor(private readonly backend: Backend, chosen: { header: Header; slot: 0 | 1 }) {
    this.current = chosen.header;
    this.slot = chosen.slot;
  }

  get header(): Header {
    return this.current;
  }

  async update(changes: Partial<Pick<Header, 'fileWriteGuid' | 'dataWriteGuid' | 'logGuid'>>): Promise<void> {
    for (let copy = 0; copy < 2; copy++) {
      if (this.current.sequenceNumber >= 0xffffffffffffffffn) {
        throw new VhdxError('BAD_HEADER', 'header sequence number cannot be incremented', { file: this.backend.name });
      }
      const next: Header = { ...this.current, ...changes, sequenceNumber: this.current.sequenceNumber + 1n };
      const target: 0 | 1 = this.slot === 0 ? 1 : 0;
      await this.backend.write(encodeHeader(next), HEADER_OFFSETS[target]);
      await this.backend.flush();
      this.current = next;
      this.slot = target;
    }
  }
}
