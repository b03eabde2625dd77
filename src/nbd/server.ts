/**
 * An NBD server for one open image, on TCP or a Unix socket: fixed newstyle handshake, structured
 * replies, `base:allocation` block status, many requests in flight per connection and several
 * connections sharing the image.
 *
 *   const server = await serveNbd({ image, port: 0 });   // any free port on 127.0.0.1
 *   console.log(server.uri);                              // nbd://127.0.0.1:PORT/
 *   ...
 *   await server.close();   // stop accepting, finish in-flight requests, flush the image
 *   await image.close();
 *
 * Concurrency: every connection reads requests as they arrive and starts each at once; replies go out
 * as requests finish (possibly out of order), each reply written whole. Reads run concurrently;
 * changes (write, trim, write-zeroes, flush) go through the image's own queue, so metadata changes
 * are serialized there. All connections share one `VhdxImage`, so a flush on any connection makes
 * every change acknowledged on any connection durable: that is what NBD_FLAG_CAN_MULTI_CONN
 * promises, and it is advertised whenever more than one connection is allowed.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { closeSync, openSync, readSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { NodeFileBackend } from '../io/node-file.js';
import { isVhdxError, VhdxError } from '../format/errors.js';
import type { VhdxImage } from '../image/image.js';
import * as P from './protocol.js';

export interface NbdServeOptions {
  /** The image to serve. The server never closes it; `close()` flushes it. */
  image: VhdxImage;
  /** TCP address to bind (default `127.0.0.1`: loopback only). */
  host?: string;
  /** TCP port (default 10809; 0 picks a free one). Ignored with `socketPath`. */
  port?: number;
  /** Listen on this Unix socket instead of TCP. */
  socketPath?: string;
  /** The export's name (default `''`, the default export; clients asking for it by name also get it). */
  exportName?: string;
  /** Refuse writes (EPERM) even if the image is writable. A read-only image always is. */
  readOnly?: boolean;
  /** Connections served at once (default 1, as qemu-nbd); more wait their turn. */
  maxConnections?: number;
  /** One line per connection when it ends (default: nothing). */
  log?: (line: string) => void;
}

export interface NbdServerStats {
  connections: number;
  requests: number;
  bytesRead: number;
  bytesWritten: number;
  protocolErrors: number;
}

export interface NbdServer {
  /** `nbd://HOST:PORT/NAME` or `nbd+unix:///NAME?socket=PATH`: what qemu and libnbd accept. */
  readonly uri: string;
  /** The TCP port listened on (0 for a Unix socket). */
  readonly port: number;
  readonly host: string;
  readonly socketPath: string | undefined;
  /** Connections open now (in handshake or transmission). */
  readonly activeConnections: number;
  /** Totals since the start. */
  stats(): NbdServerStats;
  /**
   * Stops accepting connections, ends handshakes in progress, lets every request already received
   * finish and its reply go out, closes the connections and flushes the image. Idempotent.
   */
  close(): Promise<void>;
}

/** Largest request (read, write payload, zero, trim, block status) a client may send; reported as the maximum block size. */
export const MAX_REQUEST = 32 * 1024 * 1024;
/** Options with more data than this end the handshake (a client sending megabytes of option data is not a client). */
const MAX_OPTION_LENGTH = 64 * 1024;
/** Options per connection before the server gives up on the client. */
const MAX_OPTIONS = 256;
/** A client has this long to finish the handshake. */
const HANDSHAKE_TIMEOUT_MS = 30_000;
/** Requests in flight per connection before the server stops reading more. */
const MAX_IN_FLIGHT = 128;
/** Reply bytes queued on a socket before the server stops reading more requests. */
const WRITE_HIGH_WATER = 64 * 1024 * 1024;
/** Received bytes buffered (not yet a whole request) before the socket is paused. */
const READ_HIGH_WATER = MAX_REQUEST + 4 * 1024 * 1024;
/** Connections waiting for a slot; more are turned away. */
const MAX_WAITING = 64;
const BASE_ALLOCATION_ID = 1;
/** Reads up to this size take the synchronous path (`readSmall`). */
const SMALL_READ = 64 * 1024;

/** Command flags each command accepts (FUA is accepted everywhere: clients are known to set it). */
function allowedFlags(type: number, structured: boolean): number {
  const fua = P.NBD_CMD_FLAG_FUA;
  switch (type) {
    case P.NBD_CMD_READ:
      return fua | (structured ? P.NBD_CMD_FLAG_DF : 0);
    case P.NBD_CMD_WRITE_ZEROES:
      return fua | P.NBD_CMD_FLAG_NO_HOLE;
    case P.NBD_CMD_BLOCK_STATUS:
      return fua | P.NBD_CMD_FLAG_REQ_ONE;
    default:
      return fua;
  }
}

/** The NBD error value for a failure of the image. */
function errnoOf(error: unknown): number {
  if (isVhdxError(error)) {
    switch (error.code) {
      case 'OUT_OF_RANGE':
      case 'INVALID_ARGUMENT':
        return P.NBD_EINVAL;
      case 'READ_ONLY':
        return P.NBD_EPERM;
      case 'IO':
        return /no space/.test(error.message) ? P.NBD_ENOSPC : P.NBD_EIO;
      default:
        return P.NBD_EIO;
    }
  }
  return P.NBD_EIO;
}

class RequestError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/** Bytes received on a socket, handed out in exact sizes; pauses the socket when too much piles up. */
class Input {
  private chunks: Buffer[] = [];
  private length = 0;
  private want = 0;
  private waiter: ((data: Buffer | null) => void) | null = null;
  private ended = false;
  private paused = false;

  constructor(private readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => this.push(chunk));
    socket.on('end', () => this.end());
    socket.on('close', () => this.end());
  }

  private push(chunk: Buffer): void {
    if (this.ended) return;
    this.chunks.push(chunk);
    this.length += chunk.length;
    if (this.waiter && this.length >= this.want) {
      const resolve = this.waiter;
      this.waiter = null;
      resolve(this.take(this.want));
    }
    if (this.length > READ_HIGH_WATER && !this.paused) {
      this.paused = true;
      this.socket.pause();
    }
  }

  /** No more bytes will come (the peer closed, or the server is shutting this connection down). */
  end(): void {
    this.ended = true;
    this.chunks = [];
    this.length = 0;
    if (this.waiter) {
      const resolve = this.waiter;
      this.waiter = null;
      resolve(null);
    }
  }

  private take(n: number): Buffer {
    const first = this.chunks[0]!;
    let out: Buffer;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let done = 0;
      while (done < n) {
        const c = this.chunks[0]!;
        const k = Math.min(c.length, n - done);
        c.copy(out, done, 0, k);
        done += k;
        if (k === c.length) this.chunks.shift();
        else this.chunks[0] = c.subarray(k);
      }
    }
    this.length -= n;
    if (this.paused && this.length < READ_HIGH_WATER / 2) {
      this.paused = false;
      this.socket.resume();
    }
    return out;
  }

  /** Exactly `n` bytes if they have arrived already (no promise, no event-loop turn), else null. */
  takeIfReady(n: number): Buffer | null {
    return n > 0 && this.length >= n ? this.take(n) : null;
  }

  /** Exactly `n` bytes, or null if the stream ends first. */
  read(n: number): Promise<Buffer | null> {
    if (n === 0) return Promise.resolve(Buffer.alloc(0));
    if (this.length >= n) return Promise.resolve(this.take(n));
    if (this.ended) return Promise.resolve(null);
    if (this.paused) {
      this.paused = false;
      this.socket.resume();
    }
    return new Promise((resolve) => {
      this.want = n;
      this.waiter = resolve;
    });
  }
}

interface Shared {
  image: VhdxImage;
  /** A read-only descriptor of the image file for small reads (see `readSmall`), or null. */
  directFd: number | null;
  exportName: string;
  readOnly: boolean;
  multiConn: boolean;
  totals: NbdServerStats;
  shuttingDown: boolean;
}

/** One client: handshake, then requests until it disconnects or the server shuts down. */
class Connection {
  private readonly input: Input;
  private structured = false;
  private baseAllocation = false;
  private transmission = false;
  private readonly inFlight = new Set<Promise<void>>();
  private requests = 0;
  private bytesRead = 0;
  private bytesWritten = 0;
  private reason = 'client disconnected';
  private readonly started = Date.now();
  private drainWaiter: (() => void) | null = null;
  private corked = false;
  readonly done: Promise<void>;

  constructor(
    private readonly socket: Socket,
    private readonly shared: Shared,
    private readonly peer: string,
    private readonly log: (line: string) => void,
  ) {
    socket.setNoDelay(true);
    socket.on('error', (error: NodeJS.ErrnoException) => {
      this.reason = `connection error: ${error.code ?? error.message}`;
    });
    socket.on('drain', () => this.wake());
    socket.on('close', () => this.wake());
    this.input = new Input(socket);
    this.done = this.run().then(
      () => this.finish(),
      (error: unknown) => {
        this.reason = `internal error: ${(error as Error)?.message ?? String(error)}`;
        this.finish();
      },
    );
  }

  private wake(): void {
    const w = this.drainWaiter;
    this.drainWaiter = null;
    w?.();
  }

  /** Called at server shutdown: handshakes end at once, transmission stops reading and drains. */
  shutdown(): void {
    if (!this.transmission) {
      this.reason = 'server shut down during the handshake';
      this.socket.destroy();
    } else {
      this.reason = 'server shut down';
    }
    this.input.end();
  }

  private finish(): void {
    const seconds = ((Date.now() - this.started) / 1000).toFixed(1);
    this.log(
      `${this.peer}: ${this.transmission ? 'served' : 'no export'}; ${this.requests} requests, ${this.bytesRead} bytes read, ${this.bytesWritten} bytes written in ${seconds} s; ${this.reason}`,
    );
  }

  /**
   * Queues a whole reply. Replies finished in the same turn of the event loop leave in one system call:
   * the socket is corked at the first and uncorked once the turn's I/O callbacks have run.
   */
  private send(...parts: Uint8Array[]): void {
    if (this.socket.destroyed || !this.socket.writable) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      setImmediate(() => {
        this.corked = false;
        this.socket.uncork();
      });
    }
    for (const part of parts) this.socket.write(part);
  }

  private hangUp(reason: string): void {
    this.reason = reason;
    this.shared.totals.protocolErrors++;
    this.socket.destroy();
  }

  private async run(): Promise<void> {
    this.socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => {
      if (!this.transmission) this.hangUp('handshake timed out');
    });
    try {
      if (!(await this.handshake())) return;
    } finally {
      this.socket.setTimeout(0);
    }
    this.transmission = true;
    await this.serve();
  }

  private transmissionFlags(): number {
    let flags = P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_SEND_FUA | P.NBD_FLAG_SEND_CACHE;
    flags |= this.shared.readOnly ? P.NBD_FLAG_READ_ONLY : P.NBD_FLAG_SEND_TRIM | P.NBD_FLAG_SEND_WRITE_ZEROES;
    if (this.structured) flags |= P.NBD_FLAG_SEND_DF;
    if (this.shared.multiConn) flags |= P.NBD_FLAG_CAN_MULTI_CONN;
    return flags;
  }

  private knownExport(name: string): boolean {
    return name === this.shared.exportName || name === '';
  }

  /** Option haggling; true when the client entered transmission. */
  private async handshake(): Promise<boolean> {
    const { image } = this.shared;
    this.send(P.encodeGreeting(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES));
    const clientFlagBytes = await this.input.read(4);
    if (!clientFlagBytes) return false;
    const clientFlags = clientFlagBytes.readUInt32BE(0);
    if (clientFlags & ~(P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES)) {
      this.hangUp(`unknown client flags 0x${clientFlags.toString(16)}`);
      return false;
    }
    const noZeroes = (clientFlags & P.NBD_FLAG_C_NO_ZEROES) !== 0;
    for (let count = 0; ; count++) {
      if (count >= MAX_OPTIONS) {
        this.hangUp(`more than ${MAX_OPTIONS} options`);
        return false;
      }
      const headerBytes = await this.input.read(P.OPTION_HEADER_SIZE);
      if (!headerBytes) return false;
      const { magicOk, option, length } = P.decodeOptionHeader(headerBytes);
      if (!magicOk) {
        this.hangUp('bad option magic');
        return false;
      }
      if (length > MAX_OPTION_LENGTH) {
        this.hangUp(`option ${option} with ${length} bytes of data`);
        return false;
      }
      const data = await this.input.read(length);
      if (!data) return false;
      if (this.shared.shuttingDown && option !== P.NBD_OPT_ABORT) {
        this.send(P.encodeOptionError(option, P.NBD_REP_ERR_SHUTDOWN, 'server is shutting down'));
        continue;
      }
      const reply = (type: number, payload?: Uint8Array): void => this.send(P.encodeOptionReply(option, type, payload));
      const error = (type: number, message: string): void => this.send(P.encodeOptionError(option, type, message));
      switch (option) {
        case P.NBD_OPT_EXPORT_NAME: {
          const name = new TextDecoder().decode(data);
          if (!this.knownExport(name)) {
            this.hangUp(`unknown export ${JSON.stringify(name)}`);
            return false;
          }
          this.send(P.encodeExportNameReply(image.virtualSize, this.transmissionFlags(), noZeroes));
          return true;
        }
        case P.NBD_OPT_ABORT:
          reply(P.NBD_REP_ACK);
          this.reason = 'client aborted the handshake';
          this.socket.end();
          return false;
        case P.NBD_OPT_LIST:
          if (length !== 0) error(P.NBD_REP_ERR_INVALID, 'NBD_OPT_LIST takes no data');
          else {
            reply(P.NBD_REP_SERVER, P.encodeServerReplyData(this.shared.exportName));
            reply(P.NBD_REP_ACK);
          }
          break;
        case P.NBD_OPT_STARTTLS:
          error(P.NBD_REP_ERR_POLICY, 'TLS is not supported by this server');
          break;
        case P.NBD_OPT_INFO:
        case P.NBD_OPT_GO: {
          const request = P.decodeInfoRequest(data);
          if (!request) {
            error(P.NBD_REP_ERR_INVALID, 'malformed NBD_OPT_INFO/GO data');
            break;
          }
          if (!this.knownExport(request.name)) {
            error(P.NBD_REP_ERR_UNKNOWN, `no export named ${JSON.stringify(request.name)}`);
            break;
          }
          reply(P.NBD_REP_INFO, P.encodeInfoExport(image.virtualSize, this.transmissionFlags()));
          if (request.requests.includes(P.NBD_INFO_NAME)) reply(P.NBD_REP_INFO, P.encodeInfoName(this.shared.exportName));
          if (request.requests.includes(P.NBD_INFO_DESCRIPTION)) reply(P.NBD_REP_INFO, P.encodeInfoDescription(`VHDX ${image.type} image`));
          const minimum = image.logicalSectorSize;
          reply(P.NBD_REP_INFO, P.encodeInfoBlockSize(minimum, Math.max(minimum, image.physicalSectorSize), MAX_REQUEST));
          reply(P.NBD_REP_ACK);
          if (option === P.NBD_OPT_GO) return true;
          break;
        }
        case P.NBD_OPT_STRUCTURED_REPLY:
          if (length !== 0) error(P.NBD_REP_ERR_INVALID, 'NBD_OPT_STRUCTURED_REPLY takes no data');
          else {
            this.structured = true;
            reply(P.NBD_REP_ACK);
          }
          break;
        case P.NBD_OPT_LIST_META_CONTEXT:
        case P.NBD_OPT_SET_META_CONTEXT: {
          if (!this.structured) {
            error(P.NBD_REP_ERR_INVALID, 'negotiate structured replies first');
            break;
          }
          const request = P.decodeMetaContextRequest(data);
          if (!request) {
            error(P.NBD_REP_ERR_INVALID, 'malformed meta context request');
            break;
          }
          if (!this.knownExport(request.exportName)) {
            error(P.NBD_REP_ERR_UNKNOWN, `no export named ${JSON.stringify(request.exportName)}`);
            break;
          }
          const list = option === P.NBD_OPT_LIST_META_CONTEXT;
          const matches = list
            ? request.queries.length === 0 || request.queries.some((q) => q === 'base:' || q === P.BASE_ALLOCATION)
            : request.queries.includes(P.BASE_ALLOCATION);
          if (!list) this.baseAllocation = matches;
          if (matches) reply(P.NBD_REP_META_CONTEXT, P.encodeMetaContextReplyData(list ? 0 : BASE_ALLOCATION_ID, P.BASE_ALLOCATION));
          reply(P.NBD_REP_ACK);
          break;
        }
        default:
          error(P.NBD_REP_ERR_UNSUP, `option ${option} is not supported`);
      }
    }
  }

  /** Waits until another request may be started (in-flight and queued-reply limits). */
  private async room(): Promise<void> {
    while (
      !this.socket.destroyed &&
      (this.inFlight.size >= MAX_IN_FLIGHT || this.socket.writableLength > WRITE_HIGH_WATER)
    ) {
      if (this.inFlight.size >= MAX_IN_FLIGHT) await Promise.race(this.inFlight);
      else await new Promise<void>((resolve) => (this.drainWaiter = resolve));
    }
  }

  private async serve(): Promise<void> {
    for (;;) {
      if (this.inFlight.size >= MAX_IN_FLIGHT || this.socket.writableLength > WRITE_HIGH_WATER) await this.room();
      const headerBytes = this.input.takeIfReady(P.REQUEST_HEADER_SIZE) ?? (await this.input.read(P.REQUEST_HEADER_SIZE));
      if (!headerBytes) break;
      const request = P.decodeRequest(headerBytes);
      if (!request.magicOk) {
        this.hangUp('bad request magic');
        break;
      }
      let payload: Buffer | null = null;
      if (request.type === P.NBD_CMD_WRITE) {
        if (request.length > MAX_REQUEST) {
          // The payload cannot be taken in; nothing after it could be parsed.
          this.hangUp(`write of ${request.length} bytes (the maximum is ${MAX_REQUEST})`);
          break;
        }
        payload = await this.input.read(request.length);
        if (!payload) break; // the client left mid-request: nothing was written
      }
      if (request.type === P.NBD_CMD_DISC) {
        this.reason = 'client disconnected (NBD_CMD_DISC)';
        break;
      }
      this.requests++;
      this.shared.totals.requests++;
      if (request.type === P.NBD_CMD_READ && this.readInline(request)) continue;
      const work = this.execute(request, payload).catch(() => undefined);
      this.inFlight.add(work);
      void work.then(() => this.inFlight.delete(work));
    }
    // Every request already received finishes and is answered; then the connection closes.
    await Promise.all(this.inFlight);
    if (!this.socket.destroyed) this.socket.end();
  }

  private async execute(request: P.Request, payload: Buffer | null): Promise<void> {
    try {
      await this.perform(request, payload);
    } catch (error) {
      const errno = error instanceof RequestError ? error.errno : errnoOf(error);
      const message = error instanceof Error ? error.message : String(error);
      if (this.structured) this.send(P.encodeErrorChunk(request.handle, errno, message));
      else this.send(P.encodeSimpleReply(errno, request.handle));
    }
  }

  private ok(request: P.Request): void {
    this.send(P.encodeSimpleReply(0, request.handle));
  }

  private async perform(request: P.Request, payload: Buffer | null): Promise<void> {
    const { image, readOnly } = this.shared;
    const { type, flags, offset, length } = request;
    if (type > P.NBD_CMD_BLOCK_STATUS || type === P.NBD_CMD_DISC) throw new RequestError(P.NBD_EINVAL, `unknown command ${type}`);
    const unknown = flags & ~allowedFlags(type, this.structured);
    if (unknown) throw new RequestError(P.NBD_EINVAL, `command flags 0x${unknown.toString(16)} are not valid for command ${type}`);
    if (this.shared.shuttingDown) throw new RequestError(P.NBD_ESHUTDOWN, 'server is shutting down');
    const size = image.virtualSize;
    const inside = offset <= size && length <= size - offset;
    const changes = type === P.NBD_CMD_WRITE || type === P.NBD_CMD_TRIM || type === P.NBD_CMD_WRITE_ZEROES;
    if (changes) {
      if (readOnly) throw new RequestError(P.NBD_EPERM, 'the export is read-only');
      if (!inside) throw new RequestError(P.NBD_ENOSPC, `range [${offset}, +${length}) is past the end of the ${size}-byte export`);
    } else if (type !== P.NBD_CMD_FLUSH && !inside) {
      throw new RequestError(P.NBD_EINVAL, `range [${offset}, +${length}) is past the end of the ${size}-byte export`);
    }
    const fua = (flags & P.NBD_CMD_FLAG_FUA) !== 0;
    switch (type) {
      case P.NBD_CMD_READ:
        if (length > MAX_REQUEST) throw new RequestError(P.NBD_EINVAL, `read of ${length} bytes (the maximum is ${MAX_REQUEST})`);
        return this.read(request);
      case P.NBD_CMD_WRITE:
        await image.write(offset, payload!);
        if (fua) await image.flush();
        this.bytesWritten += length;
        this.shared.totals.bytesWritten += length;
        return this.ok(request);
      case P.NBD_CMD_FLUSH:
        await image.flush();
        return this.ok(request);
      case P.NBD_CMD_TRIM:
        await image.discard(offset, length);
        if (fua) await image.flush();
        return this.ok(request);
      case P.NBD_CMD_WRITE_ZEROES:
        if (flags & P.NBD_CMD_FLAG_NO_HOLE) await this.writeAllocatedZeros(offset, length);
        else await image.writeZeroes(offset, length);
        if (fua) await image.flush();
        return this.ok(request);
      case P.NBD_CMD_CACHE:
        await this.prefetch(offset, length);
        return this.ok(request);
      case P.NBD_CMD_BLOCK_STATUS:
        return this.blockStatus(request);
    }
  }

  /**
   * WRITE_ZEROES with NO_HOLE: the range must stay allocated, so zero bytes are written. A fixed image
   * zeroes in place anyway; on a dynamic one `writeZeroes` would turn whole blocks into ZERO blocks
   * (holes), so the zeros are written as data instead, allocating the blocks.
   */
  private async writeAllocatedZeros(offset: number, length: number): Promise<void> {
    const { image } = this.shared;
    if (image.type === 'fixed') return image.writeZeroes(offset, length);
    const zeros = new Uint8Array(Math.min(length, 4 * 1024 * 1024));
    for (let done = 0; done < length; done += zeros.length) {
      await image.write(offset + done, zeros.subarray(0, Math.min(zeros.length, length - done)));
    }
  }

  /** NBD_CMD_CACHE: read the range so later reads come from the page cache. */
  private async prefetch(offset: number, length: number): Promise<void> {
    const { image } = this.shared;
    const buffer = Buffer.allocUnsafe(Math.min(length, 4 * 1024 * 1024));
    for (let done = 0; done < length; done += buffer.length) {
      await image.readInto(buffer.subarray(0, Math.min(buffer.length, length - done)), offset + done);
    }
  }

  private async read(request: P.Request): Promise<void> {
    const { image } = this.shared;
    const { offset, length, handle } = request;
    const data = Buffer.allocUnsafe(length);
    if (!this.structured) {
      if (!this.readSmall(data, offset)) await image.readInto(data, offset);
      this.count(length);
      return this.send(P.encodeSimpleReply(0, handle), data);
    }
    if (length === 0) return this.send(P.encodeDoneChunk(handle));
    // Runs of data and of zeros (holes are sent as OFFSET_HOLE chunks unless the client said DF).
    const runs: { offset: number; length: number; hole: boolean }[] = [];
    const df = (request.flags & P.NBD_CMD_FLAG_DF) !== 0;
    for (const e of image.extents(offset, length)) {
      const hole = !df && (e.kind === 'zero' || e.kind === 'unallocated');
      const last = runs[runs.length - 1];
      if (last && last.hole === hole) last.length += e.length;
      else runs.push({ offset: e.offset, length: e.length, hole });
    }
    await Promise.all(
      runs.filter((r) => !r.hole).map((r) => {
        const piece = data.subarray(r.offset - offset, r.offset - offset + r.length);
        return this.readSmall(piece, r.offset) ? undefined : image.readInto(piece, r.offset);
      }),
    );
    this.count(length);
    const parts: Uint8Array[] = [];
    runs.forEach((r, i) => {
      const flags = i === runs.length - 1 ? P.NBD_REPLY_FLAG_DONE : 0;
      if (r.hole) parts.push(P.encodeHoleChunk(flags, handle, r.offset, r.length));
      else parts.push(P.encodeDataChunkHeader(flags, handle, r.offset, r.length), data.subarray(r.offset - offset, r.offset - offset + r.length));
    });
    this.send(...parts);
  }

  /**
   * The common small read of stored data, answered at once: one buffer holds the reply header and the
   * bytes read into it from the page cache (`readSmall`), one socket write, no promise. A simple reply
   * takes any mix of data and zeros; a structured one only a single data extent (holes and mixes go
   * the general way, as chunks). False, with nothing sent, when the request needs the general path
   * (errors included).
   */
  private readInline(request: P.Request): boolean {
    const { image, directFd, shuttingDown } = this.shared;
    const { flags, offset, length, handle } = request;
    if (directFd === null || shuttingDown || length === 0 || length > SMALL_READ) return false;
    if (flags & ~allowedFlags(P.NBD_CMD_READ, this.structured)) return false;
    if (!(offset <= image.virtualSize && length <= image.virtualSize - offset)) return false;
    const extents = image.extents(offset, length);
    if (this.structured && (extents.length !== 1 || extents[0]!.kind !== 'data')) return false;
    const header = this.structured ? P.encodeDataChunkHeader(P.NBD_REPLY_FLAG_DONE, handle, offset, length) : P.encodeSimpleReply(0, handle);
    const reply = Buffer.allocUnsafe(header.length + length);
    reply.set(header, 0);
    try {
      if (!this.readSmall(reply.subarray(header.length), offset, extents)) return false;
    } catch {
      return false; // the general path reads again and answers with the error
    }
    this.count(length);
    this.send(reply);
    return true;
  }

  /**
   * Small reads straight from the page cache: a positional read on the event loop costs a few
   * microseconds, a trip through the thread pool several times that (it decided the random 4 KiB read
   * benchmark). Same bytes as `readInto`: the extents give the file offsets, zeros elsewhere. Used only
   * when the image's bytes are all in the file (no log replayed in memory, no parent). False when the
   * caller must use `readInto`.
   */
  private readSmall(target: Buffer, offset: number, extents = this.shared.image.extents(offset, target.length)): boolean {
    const fd = this.shared.directFd;
    if (fd === null || target.length > SMALL_READ) return false;
    if (extents.some((e) => e.kind === 'parent')) return false;
    let done = 0;
    for (const e of extents) {
      if (e.kind === 'data') {
        let got = 0;
        while (got < e.length) {
          const n = readSync(fd, target, done + got, e.length - got, e.fileOffset! + got);
          if (n <= 0) break;
          got += n;
        }
        target.fill(0, done + got, done + e.length); // a block cut short by the end of the file
      } else {
        target.fill(0, done, done + e.length);
      }
      done += e.length;
    }
    return true;
  }

  private count(bytesRead: number): void {
    this.bytesRead += bytesRead;
    this.shared.totals.bytesRead += bytesRead;
  }

  private blockStatus(request: P.Request): void {
    if (!this.structured || !this.baseAllocation) throw new RequestError(P.NBD_EINVAL, 'no metadata context was negotiated');
    if (request.length === 0) throw new RequestError(P.NBD_EINVAL, 'block status of an empty range');
    const descriptors: P.StatusDescriptor[] = [];
    for (const e of this.shared.image.extents(request.offset, request.length)) {
      const flags = e.kind === 'zero' || e.kind === 'unallocated' ? P.NBD_STATE_HOLE | P.NBD_STATE_ZERO : 0;
      const last = descriptors[descriptors.length - 1];
      if (last && last.flags === flags) last.length += e.length;
      else descriptors.push({ length: e.length, flags });
    }
    if (request.flags & P.NBD_CMD_FLAG_REQ_ONE) descriptors.length = 1;
    this.send(P.encodeBlockStatusChunk(request.handle, BASE_ALLOCATION_ID, descriptors));
  }
}

/** Starts serving `options.image`; resolves once the server is listening. */
export async function serveNbd(options: NbdServeOptions): Promise<NbdServer> {
  const { image } = options;
  const maxConnections = options.maxConnections ?? 1;
  if (!Number.isInteger(maxConnections) || maxConnections < 1) {
    throw new VhdxError('INVALID_ARGUMENT', `maxConnections must be a whole number >= 1, not ${maxConnections}`);
  }
  const exportName = options.exportName ?? '';
  if (new TextEncoder().encode(exportName).length > P.MAX_STRING || exportName.includes('\0')) {
    throw new VhdxError('INVALID_ARGUMENT', 'the export name must be at most 4096 bytes of UTF-8 without NUL');
  }
  const log = options.log ?? (() => undefined);
  // Small reads bypass the thread pool through a descriptor of our own, when the image is a plain file
  // whose every byte is in the file as it is (a log replayed only in memory would be missed).
  let directFd: number | null = null;
  if (image.backend instanceof NodeFileBackend && image.info().logState !== 'replayed-in-memory' && image.type !== 'differencing') {
    try {
      directFd = openSync(image.backend.name, 'r');
    } catch {
      directFd = null;
    }
  }
  const shared: Shared = {
    image,
    directFd,
    exportName,
    readOnly: image.readOnly || (options.readOnly ?? false),
    multiConn: maxConnections > 1,
    totals: { connections: 0, requests: 0, bytesRead: 0, bytesWritten: 0, protocolErrors: 0 },
    shuttingDown: false,
  };
  const active = new Set<Connection>();
  const waiting: { socket: Socket; peer: string }[] = [];
  let closing: Promise<void> | null = null;

  const start = (socket: Socket, peer: string): void => {
    shared.totals.connections++;
    const connection = new Connection(socket, shared, peer, log);
    active.add(connection);
    void connection.done.then(() => {
      active.delete(connection);
      socket.destroy();
      const next = waiting.shift();
      if (next && !shared.shuttingDown) {
        next.socket.resume();
        start(next.socket, next.peer);
      }
    });
  };

  let sequence = 0;
  const server: Server = createServer({ pauseOnConnect: true }, (socket) => {
    sequence++;
    const peer = options.socketPath ? `client ${sequence}` : `${socket.remoteAddress}:${socket.remotePort}`;
    if (shared.shuttingDown) {
      socket.destroy();
      return;
    }
    socket.on('error', () => undefined);
    if (active.size < maxConnections) {
      socket.resume();
      start(socket, peer);
    } else if (waiting.length < MAX_WAITING) {
      // Like a listen backlog: served when a connection ends.
      waiting.push({ socket, peer });
      socket.on('close', () => {
        const i = waiting.findIndex((w) => w.socket === socket);
        if (i >= 0) waiting.splice(i, 1);
      });
    } else {
      log(`${peer}: refused, ${maxConnections} connections busy and ${MAX_WAITING} waiting`);
      socket.destroy();
    }
  });

  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    const fail = (error: NodeJS.ErrnoException): void => {
      const where = options.socketPath ?? `${host}:${options.port ?? 10809}`;
      reject(new VhdxError('IO', `cannot listen on ${where}: ${error.code === 'EADDRINUSE' ? 'address already in use' : error.message}`, { cause: error }));
    };
    server.once('error', fail);
    const done = (): void => {
      server.off('error', fail);
      resolve();
    };
    if (options.socketPath) server.listen(options.socketPath, done);
    else server.listen(options.port ?? 10809, host, done);
  });
  server.on('error', () => undefined);
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const name = encodeURIComponent(exportName);
  const uri = options.socketPath
    ? `nbd+unix:///${name}?socket=${options.socketPath}`
    : `nbd://${host.includes(':') ? `[${host}]` : host}:${port}/${name}`;

  return {
    uri,
    port,
    host: options.socketPath ? '' : host,
    socketPath: options.socketPath,
    get activeConnections() {
      return active.size;
    },
    stats: () => ({ ...shared.totals }),
    close(): Promise<void> {
      closing ??= (async () => {
        shared.shuttingDown = true;
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const w of waiting.splice(0)) w.socket.destroy();
        const connections = [...active];
        for (const c of connections) c.shutdown();
        await Promise.all(connections.map((c) => c.done));
        await stopped;
        if (options.socketPath) await unlink(options.socketPath).catch(() => undefined);
        if (directFd !== null) closeSync(directFd);
        if (!image.readOnly) await image.flush();
      })();
      return closing;
    },
  };
}
