/**
 * The NBD (Network Block Device) wire protocol: constants and codecs for the fixed newstyle handshake,
 * option haggling, requests and simple and structured replies. Pure byte handling, no Node.js module:
 * the socket side lives in `server.ts`. Every number on the wire is big-endian.
 */

/** `NBDMAGIC`, the first eight bytes the server sends. */
export const NBD_MAGIC = 0x4e42444d41474943n;
/** `IHAVEOPT`: the newstyle magic, sent by the server and in front of every client option. */
export const NBD_OPTS_MAGIC = 0x49484156454f5054n;
export const NBD_REP_MAGIC = 0x0003e889045565a9n;
export const NBD_REQUEST_MAGIC = 0x25609513;
export const NBD_SIMPLE_REPLY_MAGIC = 0x67446698;
export const NBD_STRUCTURED_REPLY_MAGIC = 0x668e33ef;

// Handshake flags (server) and client flags.
export const NBD_FLAG_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_NO_ZEROES = 1 << 1;
export const NBD_FLAG_C_FIXED_NEWSTYLE = 1 << 0;
export const NBD_FLAG_C_NO_ZEROES = 1 << 1;

// Transmission flags.
export const NBD_FLAG_HAS_FLAGS = 1 << 0;
export const NBD_FLAG_READ_ONLY = 1 << 1;
export const NBD_FLAG_SEND_FLUSH = 1 << 2;
export const NBD_FLAG_SEND_FUA = 1 << 3;
export const NBD_FLAG_ROTATIONAL = 1 << 4;
export const NBD_FLAG_SEND_TRIM = 1 << 5;
export const NBD_FLAG_SEND_WRITE_ZEROES = 1 << 6;
export const NBD_FLAG_SEND_DF = 1 << 7;
export const NBD_FLAG_CAN_MULTI_CONN = 1 << 8;
export const NBD_FLAG_SEND_CACHE = 1 << 10;

/** Options a client sends while haggling. */
export const NBD_OPT = { EXPORT_NAME: 1, ABORT: 2, LIST: 3, STARTTLS: 5, INFO: 6, GO: 7, STRUCTURED_REPLY: 8, LIST_META_CONTEXT: 9, SET_META_CONTEXT: 10 } as const;

const ERR = 0x80000000;
/** Option replies; the `ERR_` ones have the high bit set. */
export const NBD_REP = {
  ACK: 1, SERVER: 2, INFO: 3, META_CONTEXT: 4,
  ERR_UNSUP: (ERR | 1) >>> 0, ERR_POLICY: (ERR | 2) >>> 0, ERR_INVALID: (ERR | 3) >>> 0, ERR_UNKNOWN: (ERR | 6) >>> 0, ERR_SHUTDOWN: (ERR | 7) >>> 0, ERR_TOO_BIG: (ERR | 9) >>> 0,
} as const;

/** Information types of `NBD_REP.INFO`. */
export const NBD_INFO = { EXPORT: 0, NAME: 1, DESCRIPTION: 2, BLOCK_SIZE: 3 } as const;

/** Commands (transmission phase) and their flags. */
export const NBD_CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7 } as const;
export const NBD_CMD_FLAG = { FUA: 1 << 0, NO_HOLE: 1 << 1, DF: 1 << 2, REQ_ONE: 1 << 3 } as const;

/** Structured reply chunks: the one flag, and the chunk types. */
export const NBD_REPLY_FLAG_DONE = 1 << 0;
export const NBD_REPLY_TYPE = { NONE: 0, OFFSET_DATA: 1, OFFSET_HOLE: 2, BLOCK_STATUS: 5, ERROR: (1 << 15) | 1 } as const;

// base:allocation status flags.
export const NBD_STATE_HOLE = 1 << 0;
export const NBD_STATE_ZERO = 1 << 1;

/** Error values of replies (Linux errno numbers, as the protocol fixes them). */
export const NBD_ERRNO = { EPERM: 1, EIO: 5, ENOMEM: 12, EINVAL: 22, ENOSPC: 28, EOVERFLOW: 75, ENOTSUP: 95, ESHUTDOWN: 108 } as const;

/** The only metadata context this server knows. */
export const BASE_ALLOCATION = 'base:allocation';

export const OPTION_HEADER_SIZE = 16;
export const REQUEST_HEADER_SIZE = 28;
export const SIMPLE_REPLY_SIZE = 16;
export const STRUCTURED_HEADER_SIZE = 20;
/** Strings (export names, queries) longer than this are refused, as the protocol allows. */
export const MAX_STRING = 4096;

const encoder = new TextEncoder();
const decoder = new TextDecoder('utf-8', { fatal: true });

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** A 64-bit unsigned value as a number; values past 2^53 come back as Infinity (always out of range). */
export function readU64(bytes: Uint8Array, at: number): number {
  const v = view(bytes);
  const high = v.getUint32(at);
  const low = v.getUint32(at + 4);
  return high >= 0x200000 ? Infinity : high * 0x100000000 + low;
}

function writeU64(v: DataView, at: number, value: number): void {
  v.setUint32(at, Math.floor(value / 0x100000000));
  v.setUint32(at + 4, value >>> 0);
}

/** S: NBDMAGIC, IHAVEOPT, 16-bit handshake flags. */
export function encodeGreeting(handshakeFlags: number): Uint8Array {
  const out = new Uint8Array(18);
  const v = view(out);
  v.setBigUint64(0, NBD_MAGIC);
  v.setBigUint64(8, NBD_OPTS_MAGIC);
  v.setUint16(16, handshakeFlags);
  return out;
}

export interface OptionHeader {
  magicOk: boolean;
  option: number;
  length: number;
}

export function decodeOptionHeader(bytes: Uint8Array): OptionHeader {
  const v = view(bytes);
  return { magicOk: v.getBigUint64(0) === NBD_OPTS_MAGIC, option: v.getUint32(8), length: v.getUint32(12) };
}

/** S: one option reply (magic, option, type, length, data). */
export function encodeOptionReply(option: number, type: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(20 + data.length);
  const v = view(out);
  v.setBigUint64(0, NBD_REP_MAGIC);
  v.setUint32(8, option);
  v.setUint32(12, type >>> 0);
  v.setUint32(16, data.length);
  out.set(data, 20);
  return out;
}

/** An error reply carrying a message for people. */
export function encodeOptionError(option: number, type: number, message: string): Uint8Array {
  return encodeOptionReply(option, type, encoder.encode(message.slice(0, 1024)));
}

/** NBD_REP.SERVER data: 32-bit name length, name. */
export function encodeServerReplyData(name: string): Uint8Array {
  const bytes = encoder.encode(name);
  const out = new Uint8Array(4 + bytes.length);
  view(out).setUint32(0, bytes.length);
  out.set(bytes, 4);
  return out;
}

/** NBD_INFO.EXPORT: size and transmission flags. */
export function encodeInfoExport(size: number, transmissionFlags: number): Uint8Array {
  const out = new Uint8Array(12);
  const v = view(out);
  v.setUint16(0, NBD_INFO.EXPORT);
  writeU64(v, 2, size);
  v.setUint16(10, transmissionFlags);
  return out;
}

export function encodeInfoName(name: string): Uint8Array {
  const bytes = encoder.encode(name);
  const out = new Uint8Array(2 + bytes.length);
  view(out).setUint16(0, NBD_INFO.NAME);
  out.set(bytes, 2);
  return out;
}

export function encodeInfoDescription(text: string): Uint8Array {
  const bytes = encoder.encode(text);
  const out = new Uint8Array(2 + bytes.length);
  view(out).setUint16(0, NBD_INFO.DESCRIPTION);
  out.set(bytes, 2);
  return out;
}

/** NBD_INFO.BLOCK_SIZE: minimum, preferred and maximum block sizes. */
export function encodeInfoBlockSize(minimum: number, preferred: number, maximum: number): Uint8Array {
  const out = new Uint8Array(14);
  const v = view(out);
  v.setUint16(0, NBD_INFO.BLOCK_SIZE);
  v.setUint32(2, minimum);
  v.setUint32(6, preferred);
  v.setUint32(10, maximum);
  return out;
}

/** The reply to NBD_OPT.EXPORT_NAME: size, transmission flags, then 124 zeros unless the client said NO_ZEROES. */
export function encodeExportNameReply(size: number, transmissionFlags: number, noZeroes: boolean): Uint8Array {
  const out = new Uint8Array(noZeroes ? 10 : 134);
  const v = view(out);
  writeU64(v, 0, size);
  v.setUint16(8, transmissionFlags);
  return out;
}

/** Decodes a string field; null if it is not UTF-8 or holds a NUL. */
function decodeString(bytes: Uint8Array): string | null {
  try {
    const text = decoder.decode(bytes);
    return text.includes('\0') ? null : text;
  } catch {
    return null;
  }
}

export interface InfoRequest {
  name: string;
  /** The information types asked for, in order. */
  requests: number[];
}

/** NBD_OPT.INFO / NBD_OPT.GO data: 32-bit name length, name, 16-bit count, 16-bit types. Null if malformed. */
export function decodeInfoRequest(data: Uint8Array): InfoRequest | null {
  if (data.length < 6) return null;
  const v = view(data);
  const nameLength = v.getUint32(0);
  if (nameLength > MAX_STRING || 4 + nameLength + 2 > data.length) return null;
  const name = decodeString(data.subarray(4, 4 + nameLength));
  if (name === null) return null;
  const count = v.getUint16(4 + nameLength);
  if (data.length !== 4 + nameLength + 2 + 2 * count) return null;
  const requests: number[] = [];
  for (let i = 0; i < count; i++) requests.push(v.getUint16(4 + nameLength + 2 + 2 * i));
  return { name, requests };
}

export interface MetaContextRequest {
  exportName: string;
  queries: string[];
}

/** NBD_OPT.LIST/SET_META_CONTEXT data: name length, name, query count, then (length, query) pairs. */
export function decodeMetaContextRequest(data: Uint8Array): MetaContextRequest | null {
  const v = view(data);
  if (data.length < 8) return null;
  const nameLength = v.getUint32(0);
  if (nameLength > MAX_STRING || 8 + nameLength > data.length) return null;
  const exportName = decodeString(data.subarray(4, 4 + nameLength));
  if (exportName === null) return null;
  const count = v.getUint32(4 + nameLength);
  let at = 8 + nameLength;
  const queries: string[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 4 > data.length) return null;
    const length = v.getUint32(at);
    at += 4;
    if (length > MAX_STRING || at + length > data.length) return null;
    const query = decodeString(data.subarray(at, at + length));
    if (query === null) return null;
    queries.push(query);
    at += length;
  }
  return at === data.length ? { exportName, queries } : null;
}

/** NBD_REP.META_CONTEXT data: 32-bit context id, name. */
export function encodeMetaContextReplyData(id: number, name: string): Uint8Array {
  const bytes = encoder.encode(name);
  const out = new Uint8Array(4 + bytes.length);
  view(out).setUint32(0, id);
  out.set(bytes, 4);
  return out;
}

export interface Request {
  magicOk: boolean;
  flags: number;
  type: number;
  /** The client's opaque 8-byte handle, echoed in every reply. */
  handle: Uint8Array;
  /** Infinity when the 64-bit offset does not fit a safe integer. */
  offset: number;
  length: number;
}

/** A 28-byte request header. The handle is copied so the input buffer may be reused. */
export function decodeRequest(bytes: Uint8Array): Request {
  const v = view(bytes);
  return {
    magicOk: v.getUint32(0) === NBD_REQUEST_MAGIC,
    flags: v.getUint16(4),
    type: v.getUint16(6),
    handle: bytes.slice(8, 16),
    offset: readU64(bytes, 16),
    length: v.getUint32(24),
  };
}

/** Encodes a request header (for clients and tests). */
export function encodeRequest(type: number, flags: number, handle: Uint8Array, offset: number, length: number): Uint8Array {
  const out = new Uint8Array(REQUEST_HEADER_SIZE);
  const v = view(out);
  v.setUint32(0, NBD_REQUEST_MAGIC);
  v.setUint16(4, flags);
  v.setUint16(6, type);
  out.set(handle.subarray(0, 8), 8);
  writeU64(v, 16, offset);
  v.setUint32(24, length);
  return out;
}

/** S: simple reply header (the read data, if any, follows). */
export function encodeSimpleReply(error: number, handle: Uint8Array): Uint8Array {
  const out = new Uint8Array(SIMPLE_REPLY_SIZE);
  const v = view(out);
  v.setUint32(0, NBD_SIMPLE_REPLY_MAGIC);
  v.setUint32(4, error);
  out.set(handle, 8);
  return out;
}

/**
 * S: a structured reply chunk header with room for `extra` bytes of payload written by the caller
 * right after it (the rest of the payload, `payloadLength - extra` bytes, is sent separately).
 */
export function encodeChunk(flags: number, type: number, handle: Uint8Array, payloadLength: number, extra = 0): Uint8Array {
  const out = new Uint8Array(STRUCTURED_HEADER_SIZE + extra);
  const v = view(out);
  v.setUint32(0, NBD_STRUCTURED_REPLY_MAGIC);
  v.setUint16(4, flags);
  v.setUint16(6, type);
  out.set(handle, 8);
  v.setUint32(16, payloadLength);
  return out;
}

/** An OFFSET_DATA chunk header including its 8-byte offset; `dataLength` bytes of data follow. */
export function encodeDataChunkHeader(flags: number, handle: Uint8Array, offset: number, dataLength: number): Uint8Array {
  const out = encodeChunk(flags, NBD_REPLY_TYPE.OFFSET_DATA, handle, 8 + dataLength, 8);
  writeU64(view(out), STRUCTURED_HEADER_SIZE, offset);
  return out;
}

/** A whole OFFSET_HOLE chunk. */
export function encodeHoleChunk(flags: number, handle: Uint8Array, offset: number, length: number): Uint8Array {
  const out = encodeChunk(flags, NBD_REPLY_TYPE.OFFSET_HOLE, handle, 12, 12);
  const v = view(out);
  writeU64(v, STRUCTURED_HEADER_SIZE, offset);
  v.setUint32(STRUCTURED_HEADER_SIZE + 8, length);
  return out;
}

/** A whole ERROR chunk (always the last: DONE is set) with a message for people. */
export function encodeErrorChunk(handle: Uint8Array, error: number, message: string): Uint8Array {
  const text = encoder.encode(message.slice(0, 512));
  const out = encodeChunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE.ERROR, handle, 6 + text.length, 6 + text.length);
  const v = view(out);
  v.setUint32(STRUCTURED_HEADER_SIZE, error);
  v.setUint16(STRUCTURED_HEADER_SIZE + 4, text.length);
  out.set(text, STRUCTURED_HEADER_SIZE + 6);
  return out;
}

/** The final NONE chunk. */
export function encodeDoneChunk(handle: Uint8Array): Uint8Array {
  return encodeChunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE.NONE, handle, 0);
}

export interface StatusDescriptor {
  length: number;
  flags: number;
}

/** A whole BLOCK_STATUS chunk (DONE set) for one context. */
export function encodeBlockStatusChunk(handle: Uint8Array, contextId: number, descriptors: readonly StatusDescriptor[]): Uint8Array {
  const payload = 4 + 8 * descriptors.length;
  const out = encodeChunk(NBD_REPLY_FLAG_DONE, NBD_REPLY_TYPE.BLOCK_STATUS, handle, payload, payload);
  const v = view(out);
  v.setUint32(STRUCTURED_HEADER_SIZE, contextId);
  descriptors.forEach((d, i) => {
    v.setUint32(STRUCTURED_HEADER_SIZE + 4 + 8 * i, d.length);
    v.setUint32(STRUCTURED_HEADER_SIZE + 8 + 8 * i, d.flags);
  });
  return out;
}
