/**
 * One error class for every failure the library reports. `code` is stable and meant for programs;
 * `message` is one line meant for people. `file` names the image (set by the layer that knows it),
 * `offset` is the byte offset in that file where the problem was found, when there is one.
 */
export type VhdxErrorCode =
  | 'NOT_VHDX' // file identifier signature missing
  | 'TRUNCATED' // file shorter than a structure it must contain
  | 'BAD_HEADER' // no usable header, or header fields out of range
  | 'BAD_REGION_TABLE' // region table unreadable or its entries invalid
  | 'UNKNOWN_REQUIRED_REGION' // a region marked Required that we do not know
  | 'BAD_METADATA' // metadata table or item invalid
  | 'UNKNOWN_REQUIRED_METADATA' // a metadata item marked IsRequired that we do not know
  | 'BAD_BAT' // BAT entry with an illegal state, offset or overlap
  | 'BAD_LOG' // log present but no valid active sequence, or an entry that cannot be applied
  | 'BAD_PARENT_LOCATOR' // parent locator item invalid
  | 'OVERLAP' // two structures share bytes
  | 'OUT_OF_RANGE' // a request outside the virtual disk
  | 'PARENT_REQUIRED' // a read needs the parent of a differencing disk, which is not attached
  | 'PARENT_MISMATCH' // the parent found is not the one the child was made from (linkage, size or sector size)
  | 'PARENT_CHAIN' // the chain of parents loops back on itself or is deeper than the limit
  | 'READ_ONLY' // a write was attempted on an image opened read-only
  | 'LOCKED' // the image is already open for writing (this process or another)
  | 'INVALID_ARGUMENT' // a caller-supplied value is not acceptable
  | 'WOULD_LOSE_DATA' // an operation asked for would drop data a reader can still see (a shrink over data)
  | 'IO' // the operating system refused an operation
  | 'NOT_FOUND' // a file does not exist
  | 'UNSUPPORTED' // a legal file using something this version does not implement
  | 'BAD_VHD' // a VHD (v1) footer, dynamic header, BAT or bitmap invalid
  | 'REMOTE' // a remote store refused or failed a request (HTTP status, no Range support, retries exhausted)
  | 'CHANGED'; // a remote object changed while it was being read (its ETag moved)

export interface VhdxErrorOptions {
  file?: string;
  offset?: number;
  data?: Record<string, unknown>;
  cause?: unknown;
}

export class VhdxError extends Error {
  readonly code: VhdxErrorCode;
  file: string | undefined;
  readonly offset: number | undefined;
  readonly data: Record<string, unknown>;

  constructor(code: VhdxErrorCode, message: string, options: VhdxErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'VhdxError';
    this.code = code;
    this.file = options.file;
    this.offset = options.offset;
    this.data = options.data ?? {};
  }

  /** The one-line form the CLI prints: `FILE: message (at offset N)`. */
  describe(): string {
    const where = this.offset === undefined ? '' : ` (at file offset ${this.offset})`;
    return `${this.file === undefined ? '' : `${this.file}: `}${this.message}${where}`;
  }
}

export function isVhdxError(error: unknown): error is VhdxError {
  return error instanceof VhdxError;
}
