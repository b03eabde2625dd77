/** File type identifier at offset 0 (format reference §2): signature `vhdxfile` and a UTF-16LE creator. */
import { decodeUtf16le, encodeUtf16le, hasSignature, requireLength, writeSignature } from './bytes.js';
import { FILE_IDENTIFIER_SIZE } from './constants.js';
import { VhdxError } from './errors.js';

export const FILE_IDENTIFIER_SIGNATURE = 'vhdxfile';
const CREATOR_OFFSET = 8;
const CREATOR_SIZE = 512;
export const FILE_IDENTIFIER_DECODED_SIZE = CREATOR_OFFSET + CREATOR_SIZE;

export interface FileIdentifier {
  /** Diagnostic only; never changes behaviour (§2). */
  creator: string;
}

export function decodeFileIdentifier(bytes: Uint8Array): FileIdentifier {
  if (!hasSignature(bytes, 0, FILE_IDENTIFIER_SIGNATURE)) {
    throw new VhdxError('NOT_VHDX', 'not a VHDX file (no "vhdxfile" signature at offset 0)', { offset: 0 });
  }
  requireLength(bytes, FILE_IDENTIFIER_DECODED_SIZE, 'file identifier');
  const raw = decodeUtf16le(bytes.subarray(CREATOR_OFFSET, CREATOR_OFFSET + CREATOR_SIZE));
  const nul = raw.indexOf('\0');
  return { creator: nul < 0 ? raw : raw.slice(0, nul) };
}

/** The whole 64 KiB slot, reserved bytes zero. */
export function encodeFileIdentifier(id: FileIdentifier): Uint8Array {
  const out = new Uint8Array(FILE_IDENTIFIER_SIZE);
  writeSignature(out, 0, FILE_IDENTIFIER_SIGNATURE);
  const creator = encodeUtf16le(id.creator);
  if (creator.length > CREATOR_SIZE) {
    throw new VhdxError('INVALID_ARGUMENT', `creator string longer than ${CREATOR_SIZE / 2} characters`);
  }
  out.set(creator, CREATOR_OFFSET);
  return out;
}
