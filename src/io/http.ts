/**
 * A read-only backend over HTTP Range requests, so an image is read where it lies (an S3 presigned URL,
 * an Azure SAS URL, any web server that honours `Range`) instead of being downloaded first. Only the
 * global `fetch` is used, no Node module: the inspector page reads `vhdx web FILE` through it too.
 *
 * - One request learns the object: `Range: bytes=0-…` for the first piece gives the size (from
 *   `Content-Range`), the ETag, and the bytes every open reads first (identifier, headers, region
 *   tables), which prime the cache. A server that answers 200 with the whole object ignores Range:
 *   it is refused, since reading through it would download the whole object for every read.
 * - Small reads go through a `PieceCache` (aligned pieces, LRU, adjacent misses fetched together,
 *   a piece in flight shared); large reads go straight through for exactly their bytes, split into
 *   requests of at most `maxRequestBytes` sent in parallel, never more than `maxParallel` at once.
 * - Every request is retried on what passes (5xx, 408, 429, a timeout, a reset connection, a body cut
 *   short) with exponential backoff and jitter, a bounded number of times; what will not pass (401,
 *   403, 404, a server ignoring Range) fails at once.
 * - The object is pinned: every request after the first sends `If-Match` with the first ETag (a weak
 *   ETag, which `If-Match` cannot use, is compared on each answer instead) and each answer's total size
 *   must not move, so an object replaced mid-read is a CHANGED error, never a mix of two versions.
 * - Nothing is allocated from what the server says: buffers are sized by the range asked for, and a
 *   `Content-Range` or body that disagrees with it is an error.
 * - Messages name the URL with its query string (a SAS token or presigned signature) redacted.
 */
import { VhdxError, type VhdxErrorCode } from '../format/errors.js';
import { CachedReadOnlyBackend, PieceCache } from './piece-cache.js';

export interface HttpBackendOptions {
  /** A name for messages (default: the URL, redacted by `redactUrl`). */
  name?: string;
  /** Size of a cached piece, a power of two (default 256 KiB). */
  pieceSize?: number;
  /** Most bytes kept in the piece cache (default 8 MiB; 0 disables it). */
  cacheBytes?: number;
  /** Largest byte range asked for in one request (default 1 MiB). */
  maxRequestBytes?: number;
  /** Requests in flight at once (default 6). */
  maxParallel?: number;
  /** Milliseconds one request may take, headers and body, before it is abandoned and retried (default 30 000). */
  timeoutMs?: number;
  /** Tries per request, the first included (default 6). */
  maxAttempts?: number;
  /** The first retry waits about this long (default 100 ms); each next one twice as long, with jitter, at most 10 s. */
  retryDelayMs?: number;
  /** Extra request headers (an `Authorization` header, `x-ms-version`...). */
  headers?: Record<string, string>;
}

/** Requests made and body bytes received, for tests and `--debug`. */
export interface HttpStats {
  /** HTTP requests sent (each attempt counts). */
  requests: number;
  /** Body bytes received (cut-short bodies included). */
  bytes: number;
  /** Attempts that failed in a way that passes and were tried again. */
  retries: number;
  /** Reads the piece cache answered without a request of their own. */
  hits: number;
}

const KiB = 1024;
const MiB = 1024 * KiB;
/** Longest wait between two tries, whatever the backoff or a Retry-After says. */
const MAX_RETRY_DELAY_MS = 10_000;

/** `url` fit for a message: no user name or password, the query string (a signature) replaced by `?REDACTED`, no fragment. */
export function redactUrl(url: string): string {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return url.replace(/\?.*$/s, '?REDACTED');
  }
  return `${parsed.protocol}//${parsed.host}${parsed.pathname}${parsed.search === '' ? '' : '?REDACTED'}`;
}

/** True for the `http:` and `https:` URLs `HttpBackend` reads (anything else is a path). */
export function isHttpUrl(text: string): boolean {
  return /^https?:\/\//i.test(text);
}

/** A failure that may pass on the next try; `reason` says what happened, for the final message. */
class Transient extends Error {
  constructor(
    readonly reason: string,
    /** A wait the server asked for (Retry-After), in ms. */
    readonly retryAfterMs?: number,
  ) {
    super(reason);
  }
}

/** At most `limit` tasks at once; the others wait in order. */
class Limiter {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly limit: number) {}

  async run<T>(task: () => Promise<T>): Promise<T> {
    if (this.active >= this.limit) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await task();
    } finally {
      // The slot passes straight to the next task waiting, if any.
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** What the first answer said about the object; later answers must agree. */
interface Pin {
  size: number;
  etag: string | null;
  lastModified: string | null;
}

export class HttpBackend extends CachedReadOnlyBackend {
  readonly name: string;
  /** A convert chunk arrives whole and is split into parallel requests here (see `Backend.readPiece`). */
  readonly readPiece = 64 * MiB;
  readonly stats: HttpStats = { requests: 0, bytes: 0, retries: 0, hits: 0 };
  private readonly limiter: Limiter;
  private readonly maxRequestBytes: number;
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly retryDelayMs: number;
  private readonly pieceSize: number;
  private readonly cacheBytes: number;
  private pin: Pin | null = null;

  private constructor(
    /** The URL requests go to, secrets included: never put in a message (`name` is the redacted form). */
    private readonly url: string,
    private readonly options: HttpBackendOptions,
  ) {
    super('an image read over HTTP');
    this.name = options.name ?? redactUrl(url);
    this.pieceSize = options.pieceSize ?? 256 * KiB;
    this.cacheBytes = options.cacheBytes ?? 8 * MiB;
    this.maxRequestBytes = positive(options.maxRequestBytes ?? MiB, 'maxRequestBytes');
    this.limiter = new Limiter(positive(options.maxParallel ?? 6, 'maxParallel'));
    this.timeoutMs = positive(options.timeoutMs ?? 30_000, 'timeoutMs');
    this.maxAttempts = positive(options.maxAttempts ?? 6, 'maxAttempts');
    this.retryDelayMs = Math.max(0, options.retryDelayMs ?? 100);
  }

  /**
   * Opens `url` (http or https) for reading with one request: size, ETag and the first piece. REMOTE
   * when the server refuses, ignores Range or keeps failing; NOT_FOUND for 404 and 410.
   */
  static async open(url: string, options: HttpBackendOptions = {}): Promise<HttpBackend> {
    if (!isHttpUrl(url)) throw new VhdxError('INVALID_ARGUMENT', `not an http or https URL: ${redactUrl(url)}`);
    try {
      new URL(url);
    } catch {
      throw new VhdxError('INVALID_ARGUMENT', `not a valid URL: ${redactUrl(url)}`);
    }
    const backend = new HttpBackend(url, options);
    const first = await backend.withRetries(0, () => backend.attempt(0, backend.pieceSize, null));
    backend.cache = new PieceCache((target, start) => backend.fetchInto(target, start), backend.pin!.size, {
      pieceSize: backend.pieceSize,
      cacheBytes: backend.cacheBytes,
    });
    if (first.length > 0) backend.cache.prime(0, first);
    return backend;
  }

  async size(): Promise<number> {
    return this.pin!.size;
  }

  /** Fills `target` from `start`: requests of at most `maxRequestBytes`, in parallel up to the limit. */
  private async fetchInto(target: Uint8Array, start: number): Promise<void> {
    const parts: Promise<void>[] = [];
    for (let done = 0; done < target.length; done += this.maxRequestBytes) {
      const part = target.subarray(done, Math.min(done + this.maxRequestBytes, target.length));
      parts.push(
        this.limiter.run(async () => {
          await this.withRetries(start + done, () => this.attempt(start + done, part.length, part));
        }),
      );
    }
    // Every part settles before the first failure is reported: no request outlives the read.
    const results = await Promise.allSettled(parts);
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Runs `attempt` until it succeeds, fails for good, or `maxAttempts` tries failed in ways that pass. */
  private async withRetries(start: number, attempt: () => Promise<Uint8Array>): Promise<Uint8Array> {
    for (let tries = 1; ; tries++) {
      try {
        return await attempt();
      } catch (error) {
        if (!(error instanceof Transient)) throw error;
        if (tries >= this.maxAttempts) {
          throw this.fail('REMOTE', `gave up after ${tries} ${tries === 1 ? 'try' : 'tries'}: ${error.reason}`, start);
        }
        this.stats.retries++;
        // Full jitter over an exponential ceiling: clients retrying together spread out.
        const ceiling = Math.min(MAX_RETRY_DELAY_MS, this.retryDelayMs * 2 ** (tries - 1));
        const delay = Math.min(MAX_RETRY_DELAY_MS, Math.max(error.retryAfterMs ?? 0, ceiling / 2 + (Math.random() * ceiling) / 2));
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  /**
   * One request for `length` bytes at `start`, into `target` (allocated here, at most `length`, while
   * the object is not yet known). Throws `Transient` for what may pass, VhdxError for what will not.
   */
  private async attempt(start: number, length: number, target: Uint8Array | null): Promise<Uint8Array> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(), this.timeoutMs);
    const headers: Record<string, string> = { ...this.options.headers, Range: `bytes=${start}-${start + length - 1}` };
    if (this.pin?.etag && !this.pin.etag.startsWith('W/')) headers['If-Match'] = this.pin.etag;
    else if (this.pin?.lastModified) headers['If-Unmodified-Since'] = this.pin.lastModified;
    try {
      let response: Response;
      try {
        this.stats.requests++;
        response = await fetch(this.url, { headers, signal: controller.signal, redirect: 'follow' });
      } catch (error) {
        throw new Transient(controller.signal.aborted ? `no answer within ${this.timeoutMs} ms` : `connection failed (${causeOf(error)})`);
      }
      const expected = this.checkAnswer(response, start, length);
      if (expected === null) {
        await response.body?.cancel();
        return new Uint8Array(0);
      }
      const into = target ?? new Uint8Array(expected);
      await this.readBody(response, into, controller);
      return into;
    } catch (error) {
      // Whatever went wrong, the connection must not stay busy with a body nobody reads.
      controller.abort();
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Judges status and headers; returns the body length to expect (null: the object is empty). On the
   * first answer, records the object's size and validators.
   */
  private checkAnswer(response: Response, start: number, length: number): number | null {
    const status = response.status;
    const contentRange = response.headers.get('Content-Range');
    if (status === 206) {
      const m = /^bytes (\d{1,16})-(\d{1,16})\/(\d{1,16})$/.exec(contentRange?.trim() ?? '');
      const [first, last, total] = m ? [Number(m[1]), Number(m[2]), Number(m[3])] : [NaN, NaN, NaN];
      if (!m || !Number.isSafeInteger(total) || last < first || last >= total) {
        throw this.fail('REMOTE', `the server answered a range request with a bad Content-Range (${JSON.stringify(contentRange)})`, start);
      }
      this.checkSame(response, total, start);
      const expectedLast = Math.min(start + length, total) - 1;
      if (first !== start || last !== expectedLast) {
        throw this.fail('REMOTE', `asked for bytes ${start}-${start + length - 1}, the server sent ${first}-${last}`, start);
      }
      return last - first + 1;
    }
    if (status === 416 && this.pin === null) {
      // bytes=0-… of an empty object cannot be satisfied: the answer gives its size, 0.
      const total = /^bytes \*\/(\d{1,16})$/.exec(contentRange?.trim() ?? '')?.[1];
      if (total === '0') {
        this.checkSame(response, 0, start);
        return null;
      }
    }
    if (status === 200) {
      throw this.fail('REMOTE', 'the server ignores HTTP Range requests (it answered 200 with the whole object); it must answer 206 Partial Content', start);
    }
    if (status === 412 && this.pin) throw this.changed(start, 'the server answered 412 Precondition Failed to If-Match');
    if (status === 401 || status === 403) {
      throw this.fail('REMOTE', `access denied (HTTP ${status}): the URL's signature or token may be wrong or expired, or lack read permission`, start, status);
    }
    if (status === 404 || status === 410) throw this.fail('NOT_FOUND', `no such object (HTTP ${status})`, start, status);
    if (status === 416 && this.pin) throw this.changed(start, `the server answered 416 Range Not Satisfiable (${contentRange ?? 'no Content-Range'})`);
    if (status === 408 || status === 429 || status >= 500) {
      throw new Transient(`HTTP ${status}${response.statusText ? ` ${response.statusText}` : ''}`, retryAfter(response.headers.get('Retry-After')));
    }
    throw this.fail('REMOTE', `the server answered HTTP ${status}${response.statusText ? ` ${response.statusText}` : ''} to a range request`, start, status);
  }

  /** The first answer pins the object; every later one must name the same size and validators. */
  private checkSame(response: Response, total: number, start: number): void {
    const etag = response.headers.get('ETag');
    const lastModified = response.headers.get('Last-Modified');
    if (this.pin === null) {
      this.pin = { size: total, etag, lastModified };
      return;
    }
    if (total !== this.pin.size) throw this.changed(start, `its size went from ${this.pin.size} to ${total} bytes`);
    if (this.pin.etag !== null && etag !== null && weakTag(etag) !== weakTag(this.pin.etag)) {
      throw this.changed(start, `its ETag went from ${this.pin.etag} to ${etag}`);
    }
    if (this.pin.etag === null && this.pin.lastModified !== null && lastModified !== null && lastModified !== this.pin.lastModified) {
      throw this.changed(start, `its Last-Modified went from ${this.pin.lastModified} to ${lastModified}`);
    }
  }

  /** Reads exactly `target.length` body bytes: more is an error, fewer (a cut connection) may pass. */
  private async readBody(response: Response, target: Uint8Array, controller: AbortController): Promise<void> {
    if (!response.body) throw new Transient('the answer had no body');
    const reader = response.body.getReader();
    let got = 0;
    try {
      for (;;) {
        let chunk: Awaited<ReturnType<typeof reader.read>>;
        try {
          chunk = await reader.read();
        } catch (error) {
          throw new Transient(controller.signal.aborted ? `the body did not arrive within ${this.timeoutMs} ms (${got} of ${target.length} bytes)` : `the connection broke after ${got} of ${target.length} bytes (${causeOf(error)})`);
        }
        if (chunk.done) break;
        this.stats.bytes += chunk.value.length;
        if (got + chunk.value.length > target.length) {
          throw this.fail('REMOTE', `the server sent more than the ${target.length} bytes asked for`, 0);
        }
        target.set(chunk.value, got);
        got += chunk.value.length;
      }
    } finally {
      reader.releaseLock();
    }
    if (got !== target.length) throw new Transient(`the body ended after ${got} of ${target.length} bytes`);
  }

  /** A failure for good; the offset is named once the object is open (at open, there is only the first request). */
  private fail(code: VhdxErrorCode, message: string, offset: number, status?: number): VhdxError {
    return new VhdxError(code, message, { file: this.name, ...(this.pin ? { offset } : {}), data: status === undefined ? {} : { status } });
  }

  private changed(offset: number, why: string): VhdxError {
    return new VhdxError('CHANGED', `the object changed while it was being read (${why}); open it again`, { file: this.name, offset });
  }
}

function positive(value: number, what: string): number {
  if (!Number.isSafeInteger(value) || value < 1) throw new VhdxError('INVALID_ARGUMENT', `${what} must be a positive integer, not ${value}`);
  return value;
}

/** An ETag without its weakness mark (weak comparison, RFC 9110 §8.8.3.2). */
function weakTag(etag: string): string {
  return etag.startsWith('W/') ? etag.slice(2) : etag;
}

/** Retry-After in ms (seconds or an HTTP date), or undefined. */
function retryAfter(value: string | null): number | undefined {
  if (value === null) return undefined;
  if (/^\d+$/.test(value.trim())) return Number(value.trim()) * 1000;
  const at = Date.parse(value);
  return Number.isNaN(at) ? undefined : Math.max(0, at - Date.now());
}

/** The innermost reason of a fetch failure (`fetch failed` hides `ECONNRESET` in its cause). */
function causeOf(error: unknown): string {
  let e: unknown = error;
  while (e instanceof Error && e.cause instanceof Error) e = e.cause;
  const code = (e as { code?: unknown } | null)?.code;
  const message = e instanceof Error ? e.message : String(e);
  return typeof code === 'string' && !message.includes(code) ? `${code}: ${message}` : message;
}
