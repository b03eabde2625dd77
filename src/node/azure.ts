/**
 * A virtual disk to an Azure page blob as a fixed VHD, and back. Azure attaches a fixed VHD stored in a
 * page blob as a managed disk; a page blob is sparse (pages never written read as zeros and cost
 * nothing), so only the data a disk holds needs to travel: the VHDX's allocated blocks (a raw file's
 * non-hole ranges), less every 512-byte sector that reads as zeros. The footer goes last, so a blob
 * that ends in a valid footer was completely written.
 *
 * Interrupted uploads resume: the blob's metadata names the source it is being made from (a VHDX's
 * DataWriteGuid changes with every change to its contents), and its page ranges say what is there
 * already. The storage SDK (`@azure/storage-blob`) is loaded when first needed, so programs and
 * commands that never talk to Azure do not pay for it.
 */
import { stat } from 'node:fs/promises';
import type { PageBlobClient, StoragePipelineOptions } from '@azure/storage-blob';
import { MiB, isMultipleOf, roundUp } from '../format/bytes.js';
import { VhdxError } from '../format/errors.js';
import { guidFromString } from '../format/guid.js';
import { readFully, type Backend } from '../io/backend.js';
import type { VhdxImage } from '../image/image.js';
import { convertToVhdx, type ConvertToVhdxOptions } from '../ops/convert-to-vhdx.js';
import type { DiskSource } from '../ops/source.js';
import { VHD_FOOTER_SIZE, decodeVhdFooter, encodeVhdFooter, type VhdFooter } from '../vhd/footer.js';
import { vhdFooterFor, type DiskIdentity } from '../vhd/footer-for.js';
import type { VhdImage } from '../vhd/image.js';
import { openDisk } from './paths.js';

/** The largest Put Page request Azure accepts. */
export const AZURE_MAX_PAGE_WRITE = 4 * MiB;
/** Page blobs are written in whole 512-byte pages. */
export const AZURE_PAGE_SIZE = 512;
/** Where a connection string is looked for when a target names a container and blob but gives none. */
export const AZURE_CONNECTION_STRING_ENV = 'AZURE_STORAGE_CONNECTION_STRING';

/** Blob metadata: which source the blob is made from, and whether the upload finished. */
const META_SOURCE = 'vhdxsource';
const META_STATE = 'vhdxstate';

/**
 * Where the blob is: a URL (a SAS URL: its token grants the access; needs read, create and write for
 * an upload), or a container and blob in the account of a connection string (default: the
 * `AZURE_STORAGE_CONNECTION_STRING` environment variable).
 */
export type AzureTarget = string | { container: string; blob: string; connectionString?: string };

export interface AzureRetryOptions {
  /** Attempts per request, the first included (default 6). */
  maxTries?: number;
  /** First delay before a retry, doubled each time (default 500 ms). */
  retryDelayMs?: number;
  /** Longest delay between two attempts (default 30 s). */
  maxRetryDelayMs?: number;
  /** One attempt may last this long before it is abandoned and retried (default 120 s). */
  tryTimeoutMs?: number;
}

export interface AzureTransferOptions {
  /** Requests in flight at once (default 8). */
  parallel?: number;
  retry?: AzureRetryOptions;
  /** Stops at the next safe point (the requests in flight are cut; the blob stays resumable), rejecting with its reason. */
  signal?: AbortSignal;
}

export interface UploadProgress {
  /** Bytes of the virtual disk looked at so far, of `total`. */
  scanned: number;
  total: number;
  /** Bytes sent in page writes. */
  sent: number;
  /** Bytes not sent: unallocated, zero, or (resuming) already in the blob. */
  skipped: number;
}

export interface UploadOptions extends AzureTransferOptions {
  /** Continue an upload into an existing blob made from the same source, sending only what it lacks. */
  resume?: boolean;
  /**
   * Write into a page blob that exists already, of exactly `uploadBlobSize(source)` bytes, instead of
   * creating one: the upload URL of a managed disk (`az disk create --upload-type Upload`, then
   * `az disk grant-access --access-level Write`). It is neither created nor resized, and no metadata is
   * written to it; pages it held before are cleared first. Cannot be combined with `resume`, which
   * relies on the metadata to know the source.
   */
  existing?: boolean;
  /**
   * After the page ranges are checked: `full` reads every written range back and compares it with
   * the source; `sample` (default) reads back the footer and a few ranges; `none` neither.
   */
  verify?: 'full' | 'sample' | 'none';
  /** The footer's timestamp (default: now). */
  time?: Date;
  onProgress?: (progress: UploadProgress) => void;
}

export interface UploadResult {
  /** The blob, without its query string (a SAS token is never shown). */
  blob: string;
  virtualSize: number;
  /** Bytes of the blob: the virtual size rounded up to a whole MiB, plus the 512-byte footer. */
  blobSize: number;
  footer: VhdFooter;
  /** Bytes of the disk that hold data (non-zero sectors), which the blob holds as pages. */
  dataBytes: number;
  /** Bytes sent in this run (retried requests counted once), footer included. */
  sentBytes: number;
  /** Bytes of data already in the blob when resuming. */
  presentBytes: number;
  /** The page ranges of the finished blob (data, then the footer). */
  pageRanges: number;
  resumed: boolean;
  verified: 'full' | 'sample' | 'ranges';
}

export interface DownloadOptions extends AzureTransferOptions, Omit<ConvertToVhdxOptions, 'signal'> {}

export interface DownloadResult {
  blob: string;
  virtualSize: number;
  footer: VhdFooter;
  /** Bytes fetched: the blob's page ranges below the footer. */
  fetchedBytes: number;
}

/** A half-open byte range [start, end). */
interface Range {
  start: number;
  end: number;
}

type StorageModule = typeof import('@azure/storage-blob');

// ---------------------------------------------------------------------------------------------------
// Clients and errors

/** Hides secrets in text: SAS signatures (plain or URL-encoded) and account keys. */
export function redactSecrets(text: string): string {
  return text
    .replace(/([?&]sig=)[^&\s"'<>]+/gi, '$1REDACTED')
    .replace(/(sig%3D)[^&%\s"'<>]+/gi, '$1REDACTED')
    .replace(/(AccountKey=)[^;\s"']+/gi, '$1REDACTED');
}

/** The blob's URL without its query string, for messages. */
function displayName(client: PageBlobClient): string {
  const url = new URL(client.url);
  return `${url.origin}${url.pathname}`;
}

async function loadSdk(): Promise<StorageModule> {
  try {
    return await import('@azure/storage-blob');
  } catch (error) {
    throw new VhdxError('UNSUPPORTED', 'the Azure storage client (@azure/storage-blob) is not installed', { cause: error });
  }
}

function pipelineOptions(retry: AzureRetryOptions = {}): StoragePipelineOptions {
  return {
    retryOptions: {
      maxTries: retry.maxTries ?? 6,
      retryDelayInMs: retry.retryDelayMs ?? 500,
      maxRetryDelayInMs: retry.maxRetryDelayMs ?? 30_000,
      tryTimeoutInMs: retry.tryTimeoutMs ?? 120_000,
    },
    userAgentOptions: { userAgentPrefix: 'vhdx' },
  };
}

/** The page blob client for a target, with the retry policy. */
async function pageBlobClient(target: AzureTarget, retry: AzureRetryOptions | undefined): Promise<PageBlobClient> {
  const sdk = await loadSdk();
  const options = pipelineOptions(retry);
  if (typeof target === 'string') {
    let url: URL;
    try {
      url = new URL(target);
    } catch {
      throw new VhdxError('INVALID_ARGUMENT', `not a URL: ${JSON.stringify(redactSecrets(target))}`);
    }
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new VhdxError('INVALID_ARGUMENT', `a blob URL must be https (or http for an emulator), not ${url.protocol}`);
    if (url.pathname.split('/').filter(Boolean).length < 2) throw new VhdxError('INVALID_ARGUMENT', `the URL names no blob (expected .../CONTAINER/BLOB?SAS): ${url.origin}${url.pathname}`);
    return new sdk.PageBlobClient(url.href, new sdk.AnonymousCredential(), options);
  }
  const connectionString = target.connectionString ?? process.env[AZURE_CONNECTION_STRING_ENV];
  if (!connectionString) throw new VhdxError('INVALID_ARGUMENT', `no connection string: set ${AZURE_CONNECTION_STRING_ENV}, or give a SAS URL`);
  try {
    return new sdk.PageBlobClient(connectionString, target.container, target.blob, options);
  } catch (error) {
    throw new VhdxError('INVALID_ARGUMENT', `the connection string is not usable: ${redactSecrets(firstLine(error))}`);
  }
}

function firstLine(error: unknown): string {
  const message = (error as Error | undefined)?.message ?? String(error);
  return message.split('\n')[0]!.trim();
}

interface RestErrorLike {
  name?: string;
  statusCode?: number;
  code?: string;
  details?: { errorCode?: string };
  message?: string;
}

/** True for failures worth another attempt later: the network, timeouts, throttling, server errors. */
function isTransient(error: unknown): boolean {
  if (error instanceof VhdxError) return false;
  const e = error as RestErrorLike;
  if (e?.name === 'AbortError') return false;
  const status = e?.statusCode;
  if (status === undefined) return true; // no answer at all: a reset connection, a timeout
  return status === 408 || status === 429 || status >= 500;
}

/**
 * Runs a read again after a transient failure (a connection reset in the middle of a body is one the
 * client's own retry policy does not always take up): `maxTries` attempts, the delay doubling.
 */
async function withRetries<T>(attempt: () => Promise<T>, retry: AzureRetryOptions | undefined, signal: AbortSignal | undefined): Promise<T> {
  const tries = retry?.maxTries ?? 6;
  let delay = retry?.retryDelayMs ?? 500;
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (error) {
      const cut = (error as RestErrorLike)?.name === 'AbortError' && !signal?.aborted;
      if (n >= tries || signal?.aborted || !(cut || isTransient(error))) throw error;
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, retry?.maxRetryDelayMs ?? 30_000);
    }
  }
}

/**
 * Every failure as a typed one-line error with no secret in it: an HTTP answer (403 access denied,
 * 404 container or blob missing, 412 changed...) or a network failure is REMOTE; an abort is the
 * signal's reason.
 */
function remoteError(error: unknown, client: PageBlobClient | null, signal: AbortSignal | undefined, doing: string): unknown {
  if (signal?.aborted) return signal.reason;
  const file = client ? displayName(client) : undefined;
  if (error instanceof VhdxError) {
    error.message = redactSecrets(error.message);
    error.file ??= file;
    return error;
  }
  const e = error as RestErrorLike & { cause?: { code?: string } };
  // Only what came from the service or the network is REMOTE; anything else (a bug) goes on as it is.
  const fromNetwork = e?.name === 'RestError' || e?.name === 'AbortError' || typeof e?.statusCode === 'number' || /^E[A-Z]+$/.test(String(e?.code ?? ''));
  if (!fromNetwork) return error;
  const code = e?.details?.errorCode ?? e?.code;
  const status = e?.statusCode;
  const data = { status, code };
  let message: string;
  if (status === 403) message = `access denied (HTTP 403${code ? ` ${code}` : ''}) while ${doing}: check the SAS token (signature, permissions, expiry) or the account key`;
  else if (status === 404 && code === 'ContainerNotFound') message = `the container does not exist (HTTP 404) while ${doing}`;
  else if (status === 404 && code === 'BlobNotFound') message = `the blob does not exist (HTTP 404) while ${doing}`;
  else if (status === 412 || code === 'ConditionNotMet') return new VhdxError('CHANGED', `the blob changed while ${doing} (HTTP 412); start again`, { file, data });
  else if (status !== undefined) message = `HTTP ${status}${code ? ` ${code}` : ''} while ${doing}: ${firstLine(error)}`;
  else message = `no answer while ${doing}: ${code ?? e?.cause?.code ?? firstLine(error)}`;
  return new VhdxError('REMOTE', redactSecrets(message), { file, data, cause: error });
}

// ---------------------------------------------------------------------------------------------------
// Ranges

/** Appends [start, end) to sorted, merged `ranges` (callers append in increasing order). */
function appendRange(ranges: Range[], start: number, end: number): void {
  const last = ranges[ranges.length - 1];
  if (last && last.end >= start) last.end = Math.max(last.end, end);
  else ranges.push({ start, end });
}

/** Sorted and merged (adjacent ranges joined). */
function normalize(ranges: Range[]): Range[] {
  const out: Range[] = [];
  for (const r of [...ranges].sort((a, b) => a.start - b.start)) if (r.end > r.start) appendRange(out, r.start, r.end);
  return out;
}

function totalLength(ranges: Range[]): number {
  return ranges.reduce((sum, r) => sum + r.end - r.start, 0);
}

/** Index of the first range of sorted `ranges` ending after `offset`. */
function firstEndingAfter(ranges: Range[], offset: number): number {
  let lo = 0;
  let hi = ranges.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (ranges[mid]!.end <= offset) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** The parts of [start, end) that sorted `present` does not cover. */
function subtract(start: number, end: number, present: Range[]): Range[] {
  const out: Range[] = [];
  let at = start;
  for (let i = firstEndingAfter(present, start); i < present.length && present[i]!.start < end && at < end; i++) {
    const p = present[i]!;
    if (p.start > at) out.push({ start: at, end: p.start });
    at = Math.max(at, p.end);
  }
  if (at < end) out.push({ start: at, end });
  return out;
}

/** Index of the first element of sorted `values` that is at least `value`. */
function firstAtLeast(values: number[], value: number): number {
  let lo = 0;
  let hi = values.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (values[mid]! < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/** Page ranges are listed a window at a time: a heavily written blob can have more than one answer holds well. */
const RANGE_LIST_WINDOW = 1024 * MiB;

/** The blob's page ranges in [0, size), merged. */
async function listPageRanges(client: PageBlobClient, size: number, signal: AbortSignal | undefined, etag?: string): Promise<Range[]> {
  const out: Range[] = [];
  for (let offset = 0; offset < size; offset += RANGE_LIST_WINDOW) {
    const count = Math.min(RANGE_LIST_WINDOW, size - offset);
    const answer = await client.getPageRanges(offset, count, { abortSignal: signal, ...(etag ? { conditions: { ifMatch: etag } } : {}) });
    // The service gives inclusive ends and this client passes `count` on as end - start, one byte
    // short; pages are whole 512-byte units, so rounding up gives the length either way.
    for (const r of answer.pageRange ?? []) appendRange(out, Math.max(r.offset, offset), Math.min(r.offset + roundUp(r.count ?? 0, AZURE_PAGE_SIZE), offset + count));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------
// Sources

/** What an upload reads: where data may be, its bytes, and what identifies it for a resume. */
interface UploadSource {
  size: number;
  name: string;
  /** Stable while the source's contents are: resuming onto a blob made from another source is refused. */
  identity: string;
  /** What the footer keeps (`vhdFooterFor`): a VHDX's Virtual Disk ID, a VHD's Unique Id; none for raw. */
  footerIdentity?: DiskIdentity;
  /** Ranges that may hold data, in increasing order, none longer than `AZURE_MAX_PAGE_WRITE` nor crossing a multiple of it. */
  candidates(): AsyncIterable<Range>;
  read(target: Uint8Array, offset: number): Promise<void>;
  close(): Promise<void>;
}

/** [start, end) cut at every multiple of `unit` (default `AZURE_MAX_PAGE_WRITE`). */
function* piecesOf(start: number, end: number, unit = AZURE_MAX_PAGE_WRITE): Generator<Range> {
  for (let at = start; at < end; ) {
    const next = Math.min(end, (Math.floor(at / unit) + 1) * unit);
    yield { start: at, end: next };
    at = next;
  }
}

function vhdxUploadSource(image: VhdxImage, close: () => Promise<void>): UploadSource {
  const info = image.info();
  return {
    size: image.virtualSize,
    name: image.backend.name,
    identity: `vhdx:${info.virtualDiskId}:${info.dataWriteGuid}:${info.virtualSize}`,
    footerIdentity: { format: 'vhdx', id: guidFromString(info.virtualDiskId) },
    async *candidates() {
      // Resolved: a differencing disk is uploaded flattened, each run from the layer that serves it.
      for await (const e of image.walk(0, image.virtualSize, { resolved: true })) {
        if (e.kind === 'zero' || e.kind === 'unallocated') continue;
        yield* piecesOf(e.offset, e.offset + e.length);
      }
    },
    read: (target, offset) => image.readInto(target, offset),
    close,
  };
}

function rawUploadSource(backend: Backend, size: number, identity: string, close: () => Promise<void>): UploadSource {
  return {
    size,
    name: backend.name,
    identity,
    async *candidates() {
      // Holes the file system knows of are skipped without reading; the rest is read and zero sectors dropped.
      let at = 0;
      while (at < size) {
        const data = backend.nextData ? backend.nextData(at) : at;
        if (data >= size) return;
        const start = Math.max(at, Math.floor(data / AZURE_PAGE_SIZE) * AZURE_PAGE_SIZE);
        const end = Math.min(size, (Math.floor(start / AZURE_MAX_PAGE_WRITE) + 1) * AZURE_MAX_PAGE_WRITE);
        yield { start, end };
        at = end;
      }
    },
    async read(target, offset) {
      const got = await readFully(backend, target, offset);
      target.fill(0, got);
    },
    close,
  };
}

function vhdUploadSource(image: VhdImage, close: () => Promise<void>): UploadSource {
  const info = image.info();
  return {
    size: image.virtualSize,
    name: image.backend.name,
    identity: `vhd:${info.uniqueId}:${info.created}:${info.virtualSize}`,
    footerIdentity: { format: 'vhd', id: image.uniqueId },
    async *candidates() {
      // A differencing VHD is uploaded flattened: its parent runs are read through the chain.
      for await (const e of image.walk(0, image.virtualSize)) {
        if (e.kind === 'unallocated') continue;
        yield* piecesOf(e.offset, e.offset + e.length);
      }
    },
    read: (target, offset) => image.readInto(target, offset),
    close,
  };
}

/** The source to upload: a path (VHDX, VHD or raw, opened read-only here), or an open image (left open). */
export type UploadInput = string | VhdxImage;

async function openUploadSource(input: UploadInput): Promise<UploadSource> {
  if (typeof input !== 'string') return vhdxUploadSource(input, async () => undefined);
  const disk = await openDisk(input);
  if (disk.kind === 'vhdx') return vhdxUploadSource(disk.image, () => disk.close());
  if (disk.kind === 'vhd') return vhdUploadSource(disk.image, () => disk.close());
  // A raw file has no identifier: its size and modification time stand for its contents.
  const info = await stat(input);
  return rawUploadSource(disk.backend, disk.size, `raw:${disk.size}:${Math.floor(info.mtimeMs)}`, () => disk.close());
}

// ---------------------------------------------------------------------------------------------------
// Upload

const ZERO_SECTOR = Buffer.alloc(AZURE_PAGE_SIZE);
const ZERO_SPAN = Buffer.alloc(64 * 1024);

/** The runs of `data` (at virtual `base`) that are not all zeros, in whole 512-byte sectors. */
function nonZeroRuns(data: Buffer, base: number): Range[] {
  const out: Range[] = [];
  let at = 0;
  while (at < data.length) {
    // Whole zero spans first: most of a sparse disk's data blocks are zeros in large runs.
    const span = Math.min(ZERO_SPAN.length, data.length - at);
    if (span === ZERO_SPAN.length && data.subarray(at, at + span).equals(ZERO_SPAN)) {
      at += span;
      continue;
    }
    const end = at + span;
    for (; at < end; at += AZURE_PAGE_SIZE) {
      const sector = data.subarray(at, Math.min(at + AZURE_PAGE_SIZE, end));
      const zero = sector.length === AZURE_PAGE_SIZE ? sector.equals(ZERO_SECTOR) : sector.every((b) => b === 0);
      if (!zero) appendRange(out, base + at, base + Math.min(at + AZURE_PAGE_SIZE, data.length));
    }
  }
  return out;
}

/** Runs `work` on items from `next` with at most `parallel` at once; the first failure stops the rest and is thrown. */
async function inParallel<T>(parallel: number, items: AsyncIterator<T> | Iterator<T>, work: (item: T, buffer: Buffer) => Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  let failure: { error: unknown } | null = null;
  const worker = async (): Promise<void> => {
    const buffer = Buffer.allocUnsafe(AZURE_MAX_PAGE_WRITE);
    while (!failure && !signal?.aborted) {
      const next = await items.next();
      if (next.done) return;
      try {
        await work(next.value, buffer);
      } catch (error) {
        failure ??= { error };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, parallel) }, worker));
  if (failure) throw (failure as { error: unknown }).error;
  signal?.throwIfAborted();
}

/** Rounds of retrying page writes that failed for a transient reason after the client's own retries. */
const CONVERGE_ROUNDS = 4;

/**
 * Uploads a virtual disk into a page blob as a fixed VHD: creates the blob (`azureSize(virtual size)` +
 * 512 bytes; with `resume`, continues in an existing one made from the same source), writes the
 * non-zero sectors of the allocated ranges in Put Page requests of up to 4 MiB, `parallel` at once,
 * writes the footer last, then checks that the blob's page ranges are exactly the data written plus
 * the footer, and reads back what `verify` asks for.
 */
export async function uploadToAzure(input: UploadInput, target: AzureTarget, options: UploadOptions = {}): Promise<UploadResult> {
  const signal = options.signal;
  const parallel = options.parallel ?? 8;
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64) throw new VhdxError('INVALID_ARGUMENT', `parallel must be from 1 to 64, not ${parallel}`);
  const client = await pageBlobClient(target, options.retry);
  let doing = 'opening the source';
  const source = await openUploadSource(input);
  try {
    const footer = vhdFooterFor({ size: source.size, identity: source.footerIdentity }, { azure: true, ...(options.time ? { time: options.time } : {}) });
    const dataSize = footer.currentSize;
    const blobSize = dataSize + VHD_FOOTER_SIZE;
    const progress: UploadProgress = { scanned: 0, total: source.size, sent: 0, skipped: 0 };
    // Skipped: everything looked at and not sent (holes, zeros, pages already there).
    const report = (): void => options.onProgress?.({ ...progress, skipped: Math.max(0, progress.scanned - progress.sent) });

    doing = 'reading the blob properties';
    let present: Range[] = [];
    let resumed = false;
    if (options.existing) {
      if (options.resume) throw new VhdxError('INVALID_ARGUMENT', 'an upload into an existing blob cannot resume (it records nothing in the blob): upload again without resume');
      await requireExistingBlob(client, blobSize, signal);
      doing = 'clearing the pages already in the blob';
      for (const range of await listPageRanges(client, blobSize, signal)) {
        for (const piece of piecesOf(range.start, range.end, CLEAR_PIECE)) await client.clearPages(piece.start, piece.end - piece.start, { abortSignal: signal });
      }
    }
    const existing = options.resume ? await client.getProperties({ abortSignal: signal }).catch((error: RestErrorLike) => (error?.statusCode === 404 && error.code !== 'ContainerNotFound' && error.details?.errorCode !== 'ContainerNotFound' ? null : Promise.reject(error))) : null;
    if (existing) {
      const madeFrom = existing.metadata?.[META_SOURCE];
      if (existing.blobType !== 'PageBlob' || madeFrom === undefined) {
        throw new VhdxError('CHANGED', `the blob exists but was not made by an upload of this tool (${existing.blobType ?? 'unknown type'}, no ${META_SOURCE} metadata): upload without --resume to replace it`);
      }
      if (madeFrom !== source.identity || existing.contentLength !== blobSize) {
        throw new VhdxError('CHANGED', `the blob was made from a different source (${madeFrom}, ${existing.contentLength} bytes; this one is ${source.identity}, ${blobSize} bytes): upload without --resume to replace it`);
      }
      doing = 'listing the pages already there';
      present = await listPageRanges(client, blobSize, signal);
      resumed = true;
    } else if (!options.existing) {
      doing = 'creating the page blob';
      await client.create(blobSize, { abortSignal: signal, metadata: { [META_SOURCE]: source.identity, [META_STATE]: 'uploading' } });
    }

    // Every non-zero run found (what the blob must hold), and the writes to retry in a later round.
    const expected: Range[] = [];
    let failed: Range[] = [];
    let sentBytes = 0;
    const writePages = async (data: Buffer, offset: number): Promise<void> => {
      await client.uploadPages(data, offset, data.length, { abortSignal: signal });
      sentBytes += data.length;
    };
    const writeRange = async (range: Range, buffer: Buffer, fromSource: Buffer | null): Promise<void> => {
      const data = fromSource ?? buffer.subarray(0, range.end - range.start);
      if (!fromSource) await source.read(data, range.start);
      try {
        await writePages(data, range.start);
        progress.sent += data.length;
      } catch (error) {
        if (!isTransient(error) || signal?.aborted) throw error;
        failed.push(range);
      }
    };

    doing = 'writing pages';
    const candidates = source.candidates()[Symbol.asyncIterator]();
    await inParallel(
      parallel,
      candidates,
      async (candidate, buffer) => {
        const length = candidate.end - candidate.start;
        const data = buffer.subarray(0, length);
        await source.read(data, candidate.start);
        const runs = nonZeroRuns(data, candidate.start);
        expected.push(...runs);
        for (const run of runs) {
          for (const missing of subtract(run.start, run.end, present)) {
            await writeRange(missing, buffer, data.subarray(missing.start - candidate.start, missing.end - candidate.start));
          }
        }
        progress.scanned = Math.max(progress.scanned, candidate.end);
        report();
      },
      signal,
    );
    progress.scanned = source.size;
    report();
    const expectedRanges = normalize(expected);
    const dataBytes = totalLength(expectedRanges);

    // Convergence: what failed after the client's own retries is tried again, a few rounds, waiting longer each time.
    const retryFailed = async (): Promise<void> => {
      for (let round = 0; failed.length > 0; round++) {
        if (round >= CONVERGE_ROUNDS) throw new VhdxError('REMOTE', `${totalLength(failed)} bytes could not be written after ${CONVERGE_ROUNDS} rounds of retries; run again with --resume`);
        await new Promise((resolve) => setTimeout(resolve, 1000 * 2 ** round));
        signal?.throwIfAborted();
        const pieces = failed.flatMap((r) => [...piecesOf(r.start, r.end)]);
        failed = [];
        await inParallel(parallel, pieces[Symbol.iterator](), (r, buffer) => writeRange(r, buffer, null), signal);
      }
    };
    await retryFailed();

    // The footer last: a blob that ends in a footer holds everything before it.
    doing = 'writing the footer';
    const footerBytes = Buffer.from(encodeVhdFooter(footer));
    const footerRange = { start: dataSize, end: blobSize };
    const footerThere = subtract(footerRange.start, footerRange.end, present).length === 0;
    if (!footerThere) await writePages(footerBytes, dataSize);

    // The pages the blob holds must be exactly the data and the footer; missing ones are written again once.
    doing = 'checking the page ranges';
    const wanted = normalize([...expectedRanges, footerRange]);
    for (let attempt = 0; ; attempt++) {
      const actual = await listPageRanges(client, blobSize, signal);
      const missing = wanted.flatMap((r) => subtract(r.start, r.end, actual));
      const extra = actual.flatMap((r) => subtract(r.start, r.end, wanted));
      if (missing.length === 0 && extra.length === 0) break;
      if (extra.length > 0 || attempt > 0) {
        const what = [missing.length ? `${totalLength(missing)} bytes missing (first at ${missing[0]!.start})` : '', extra.length ? `${totalLength(extra)} bytes not expected (first at ${extra[0]!.start})` : ''].filter(Boolean).join(', ');
        throw new VhdxError('REMOTE', `the blob's page ranges are not what was written: ${what}`, { data: { missing, extra } });
      }
      failed = missing.filter((r) => r.start < dataSize);
      await retryFailed();
      if (missing.some((r) => r.end > dataSize)) await writePages(footerBytes, dataSize);
    }

    doing = 'verifying';
    const verify = options.verify ?? 'sample';
    // The footer the blob holds (a resumed upload may have written it in an earlier run).
    let stored = footer;
    if (verify !== 'none') stored = await verifyContents(client, source, expectedRanges, footerThere ? null : footerBytes, dataSize, verify, parallel, options.retry, signal);

    if (!options.existing) {
      doing = 'recording the upload as complete';
      await client.setMetadata({ [META_SOURCE]: source.identity, [META_STATE]: 'complete' }, { abortSignal: signal });
    }
    return {
      blob: displayName(client),
      virtualSize: source.size,
      blobSize,
      footer: stored,
      dataBytes,
      sentBytes,
      presentBytes: totalLength(present.filter((r) => r.start < dataSize)),
      pageRanges: wanted.length,
      resumed,
      verified: verify === 'none' ? 'ranges' : verify,
    };
  } catch (error) {
    throw remoteError(error, client, signal, doing);
  } finally {
    await source.close();
  }
}

/**
 * The blob an `existing` upload writes into must be a page blob of exactly `blobSize` bytes. (The pages
 * it holds are then cleared: a reused upload URL may hold an earlier attempt, and afterwards it must
 * hold the data and footer of this upload and nothing else.)
 */
async function requireExistingBlob(client: PageBlobClient, blobSize: number, signal: AbortSignal | undefined): Promise<void> {
  const properties = await client.getProperties({ abortSignal: signal }).catch((error: RestErrorLike) => {
    if (error?.statusCode === 404 && error.code !== 'ContainerNotFound' && error.details?.errorCode !== 'ContainerNotFound') {
      throw new VhdxError('NOT_FOUND', 'the blob does not exist: an upload into an existing blob (a managed disk\'s upload URL) needs it there, of the right size');
    }
    throw error;
  });
  if (properties.blobType !== 'PageBlob') throw new VhdxError('INVALID_ARGUMENT', `the blob is a ${properties.blobType ?? 'blob of unknown type'}, not a page blob`);
  if (properties.contentLength !== blobSize) {
    throw new VhdxError('INVALID_ARGUMENT', `the blob is ${properties.contentLength} bytes but this image needs exactly ${blobSize} (for a managed disk: az disk create --upload-type Upload --upload-size-bytes ${blobSize})`);
  }
}

/** Pages are cleared in requests of at most this many bytes. */
const CLEAR_PIECE = 1024 * MiB;

/** The bytes of the page blob an upload of a disk of `virtualSize` bytes makes: the size rounded up to a whole MiB, plus the 512-byte footer. */
export function uploadBlobSize(virtualSize: number): number {
  return vhdFooterFor({ size: virtualSize }, { azure: true }).currentSize + VHD_FOOTER_SIZE;
}

/** Ranges read back by a sampled verification (besides the footer), each at most this long. */
const SAMPLES = 4;
const SAMPLE_LENGTH = MiB;

/**
 * Reads written ranges back and compares them with the source: all of them (`full`), or the first,
 * the last and two in between (`sample`); and the footer, which must decode and describe this disk
 * (it is returned).
 */
async function verifyContents(client: PageBlobClient, source: UploadSource, ranges: Range[], footer: Buffer | null, dataSize: number, mode: 'full' | 'sample', parallel: number, retry: AzureRetryOptions | undefined, signal: AbortSignal | undefined): Promise<VhdFooter> {
  const stored = await withRetries(() => client.downloadToBuffer(Buffer.alloc(VHD_FOOTER_SIZE), dataSize, VHD_FOOTER_SIZE, { abortSignal: signal, maxRetryRequestsPerBlock: 5 }), retry, signal);
  if (footer && !stored.equals(footer)) throw new VhdxError('REMOTE', 'the footer read back differs from the one written', { data: { blobOffset: dataSize } });
  const decoded = decodeVhdFooter(stored);
  if (decoded.diskType !== 'fixed' || decoded.currentSize !== dataSize) throw new VhdxError('REMOTE', `the footer read back describes a ${decoded.diskType} disk of ${decoded.currentSize} bytes, not a fixed disk of ${dataSize}`, { data: { blobOffset: dataSize } });

  let pieces = ranges.flatMap((r) => [...piecesOf(r.start, r.end)]);
  if (mode === 'sample' && pieces.length > SAMPLES) {
    const picks = new Set([0, pieces.length - 1, Math.floor(pieces.length / 3), Math.floor((2 * pieces.length) / 3)]);
    pieces = [...picks].map((i) => pieces[i]!);
  }
  if (mode === 'sample') pieces = pieces.map((p) => ({ start: p.start, end: Math.min(p.end, p.start + SAMPLE_LENGTH) }));
  const expectedBuffer = new Map<Buffer, Buffer>();
  await inParallel(
    parallel,
    pieces[Symbol.iterator](),
    async (piece, buffer) => {
      const length = piece.end - piece.start;
      let mine = expectedBuffer.get(buffer);
      if (!mine) expectedBuffer.set(buffer, (mine = Buffer.allocUnsafe(AZURE_MAX_PAGE_WRITE)));
      const want = mine.subarray(0, length);
      await source.read(want, piece.start);
      const got = await withRetries(() => client.downloadToBuffer(buffer.subarray(0, length), piece.start, length, { abortSignal: signal, maxRetryRequestsPerBlock: 5 }), retry, signal);
      if (!got.equals(want)) {
        let at = 0;
        while (got[at] === want[at]) at++;
        throw new VhdxError('REMOTE', `the blob reads back different bytes from the source at virtual offset ${piece.start + at}`, { data: { virtualOffset: piece.start + at } });
      }
    },
    signal,
  );
  return decoded;
}

// ---------------------------------------------------------------------------------------------------
// Download

/** Bytes fetched per window (a request or a few, when the window holds several page ranges). */
const WINDOW = 4 * MiB;

/**
 * The blob's first `size` bytes as a `DiskSource` for `convertToVhdx`: only page ranges are fetched
 * (the rest is known to be zeros), a window of 4 MiB at a time, `parallel` windows ahead of the reader;
 * every request is conditional on the ETag, so a blob changed during the copy fails it (CHANGED).
 */
function pageBlobSource(client: PageBlobClient, size: number, ranges: Range[], etag: string, parallel: number, retry: AzureRetryOptions | undefined, signal: AbortSignal | undefined, onFetched: (n: number) => void): DiskSource {
  const dataWindows: number[] = [];
  for (const r of ranges) {
    for (let w = Math.floor(r.start / WINDOW); w * WINDOW < r.end; w++) if (dataWindows[dataWindows.length - 1] !== w) dataWindows.push(w);
  }
  const fetching = new Map<number, Promise<Buffer>>();
  const fetchWindow = async (w: number): Promise<Buffer> => {
    const start = w * WINDOW;
    const end = Math.min(size, start + WINDOW);
    const out = Buffer.alloc(end - start);
    for (let i = firstEndingAfter(ranges, start); i < ranges.length && ranges[i]!.start < end; i++) {
      const from = Math.max(start, ranges[i]!.start);
      const to = Math.min(end, ranges[i]!.end);
      const options = { abortSignal: signal, conditions: { ifMatch: etag }, maxRetryRequestsPerBlock: 5, blockSize: WINDOW, concurrency: 1 };
      await withRetries(() => client.downloadToBuffer(out.subarray(from - start, to - start), from, to - from, options), retry, signal);
      onFetched(to - from);
    }
    return out;
  };
  const windowAt = (w: number): Promise<Buffer> => {
    // Drop what the reader has passed, then keep `parallel` data windows in flight from here.
    for (const key of fetching.keys()) if (key < w) fetching.delete(key);
    let index = firstAtLeast(dataWindows, w);
    for (let n = 0; index < dataWindows.length && n < parallel; index++, n++) {
      const d = dataWindows[index]!;
      if (!fetching.has(d)) {
        const promise = fetchWindow(d);
        promise.catch(() => undefined); // observed when read
        fetching.set(d, promise);
      }
    }
    return fetching.get(w) ?? fetchWindow(w);
  };
  const overlaps = (offset: number, length: number): boolean => {
    const i = firstEndingAfter(ranges, offset);
    return i < ranges.length && ranges[i]!.start < offset + length;
  };
  return {
    size,
    knownZero: (offset, length) => !overlaps(offset, length),
    async read(target, offset) {
      target.fill(0);
      for (let at = offset; at < offset + target.length; ) {
        const w = Math.floor(at / WINDOW);
        const windowEnd = (w + 1) * WINDOW;
        const n = Math.min(offset + target.length, windowEnd) - at;
        if (at < size && overlaps(at, n)) {
          const window = await windowAt(w);
          const from = at - w * WINDOW;
          target.set(window.subarray(from, Math.min(from + n, window.length)), at - offset);
        }
        at += n;
      }
    },
  };
}

/**
 * Copies a page blob holding a fixed VHD into `output` as a new VHDX (dynamic unless told otherwise):
 * the footer (the blob's last 512 bytes) is checked and gives the virtual size; only the blob's page
 * ranges are fetched. Like `convertToVhdx`, the image is complete and durable when this resolves; on
 * failure the caller removes `output`.
 */
export async function downloadFromAzure(target: AzureTarget, output: Backend, options: DownloadOptions = {}): Promise<DownloadResult> {
  const signal = options.signal;
  const parallel = options.parallel ?? 8;
  if (!Number.isInteger(parallel) || parallel < 1 || parallel > 64) throw new VhdxError('INVALID_ARGUMENT', `parallel must be from 1 to 64, not ${parallel}`);
  const client = await pageBlobClient(target, options.retry);
  let doing = 'reading the blob properties';
  try {
    const properties = await client.getProperties({ abortSignal: signal });
    const length = properties.contentLength ?? 0;
    const etag = properties.etag!;
    if (properties.blobType !== 'PageBlob') throw new VhdxError('BAD_VHD', `not a VHD: a ${properties.blobType ?? 'blob'} of ${length} bytes (a VHD is stored as a page blob)`);
    if (length < VHD_FOOTER_SIZE + AZURE_PAGE_SIZE || !isMultipleOf(length, AZURE_PAGE_SIZE)) throw new VhdxError('BAD_VHD', `not a VHD: a page blob of ${length} bytes cannot hold a disk and a footer`);
    doing = 'reading the footer';
    const footerOptions = { abortSignal: signal, conditions: { ifMatch: etag }, maxRetryRequestsPerBlock: 5 };
    const footerBytes = await withRetries(() => client.downloadToBuffer(Buffer.alloc(VHD_FOOTER_SIZE), length - VHD_FOOTER_SIZE, VHD_FOOTER_SIZE, footerOptions), options.retry, signal);
    const footer = decodeVhdFooter(footerBytes);
    if (footer.diskType !== 'fixed') throw new VhdxError('UNSUPPORTED', `the blob holds a ${footer.diskType} VHD; only fixed VHDs are stored in page blobs`);
    const virtualSize = footer.currentSize;
    if (virtualSize > length - VHD_FOOTER_SIZE || virtualSize === 0 || !isMultipleOf(virtualSize, AZURE_PAGE_SIZE)) {
      throw new VhdxError('BAD_VHD', `the footer's size ${virtualSize} does not fit the blob (${length} bytes with the footer)`);
    }
    doing = 'listing the page ranges';
    const ranges = (await listPageRanges(client, roundUp(virtualSize, AZURE_PAGE_SIZE), signal, etag)).map((r) => ({ start: r.start, end: Math.min(r.end, virtualSize) }));
    doing = 'copying the pages';
    let fetchedBytes = 0;
    const source = pageBlobSource(client, virtualSize, ranges, etag, parallel, options.retry, signal, (n) => (fetchedBytes += n));
    const { parallel: _p, retry: _r, signal: _s, ...shape } = options;
    await convertToVhdx(source, output, { ...shape, ...(signal ? { signal } : {}) });
    return { blob: displayName(client), virtualSize, footer, fetchedBytes };
  } catch (error) {
    throw remoteError(error, client, signal, doing);
  }
}
