/**
 * The transmission phase of one NBD connection: requests are read as they arrive and each is started at
 * once; replies go out as requests finish (possibly out of order), each written whole. Reads run
 * concurrently; changes (write, trim, write-zeroes, flush) go through the image's own queue.
 */
import { isVhdxError } from '../format/errors.js';
import * as P from './protocol.js';
import { MAX_REQUEST, type Shared, type Wire } from './wire.js';
import { BASE_ALLOCATION_ID, type Negotiated } from './handshake.js';

/** Requests in flight per connection before the server stops reading more. */
const MAX_IN_FLIGHT = 128;
/** Reply bytes queued on a socket before the server stops reading more requests. */
const WRITE_HIGH_WATER = 64 * 1024 * 1024;
/** Reads up to this size take the synchronous path (`readSmall`). */
const SMALL_READ = 64 * 1024;

/** Command flags each command accepts (FUA is accepted everywhere: clients are known to set it). */
function allowedFlags(type: number, structured: boolean): number {
  const fua = P.NBD_CMD_FLAG.FUA;
  switch (type) {
    case P.NBD_CMD.READ:
      return fua | (structured ? P.NBD_CMD_FLAG.DF : 0);
    case P.NBD_CMD.WRITE_ZEROES:
      return fua | P.NBD_CMD_FLAG.NO_HOLE;
    case P.NBD_CMD.BLOCK_STATUS:
      return fua | P.NBD_CMD_FLAG.REQ_ONE;
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
        return P.NBD_ERRNO.EINVAL;
      case 'READ_ONLY':
        return P.NBD_ERRNO.EPERM;
      case 'IO':
        return /no space/.test(error.message) ? P.NBD_ERRNO.ENOSPC : P.NBD_ERRNO.EIO;
      default:
        return P.NBD_ERRNO.EIO;
    }
  }
  return P.NBD_ERRNO.EIO;
}

class RequestError extends Error {
  constructor(
    readonly errno: number,
    message: string,
  ) {
    super(message);
  }
}

/** Requests of one connection, until the client disconnects or the server shuts down. */
export class Transmission {
  private readonly inFlight = new Set<Promise<void>>();

  constructor(
    private readonly wire: Wire,
    private readonly shared: Shared,
    private readonly negotiated: Negotiated,
  ) {}

  /** Waits until another request may be started (in-flight and queued-reply limits). */
  private async room(): Promise<void> {
    while (
      !this.wire.socket.destroyed &&
      (this.inFlight.size >= MAX_IN_FLIGHT || this.wire.socket.writableLength > WRITE_HIGH_WATER)
    ) {
      if (this.inFlight.size >= MAX_IN_FLIGHT) await Promise.race(this.inFlight);
      else await this.wire.drained();
    }
  }

  async serve(): Promise<void> {
    for (;;) {
      if (this.inFlight.size >= MAX_IN_FLIGHT || this.wire.socket.writableLength > WRITE_HIGH_WATER) await this.room();
      const headerBytes = this.wire.input.takeIfReady(P.REQUEST_HEADER_SIZE) ?? (await this.wire.input.read(P.REQUEST_HEADER_SIZE));
      if (!headerBytes) break;
      const request = P.decodeRequest(headerBytes);
      if (!request.magicOk) {
        this.wire.hangUp('bad request magic');
        break;
      }
      let payload: Buffer | null = null;
      if (request.type === P.NBD_CMD.WRITE) {
        if (request.length > MAX_REQUEST) {
          // The payload cannot be taken in; nothing after it could be parsed.
          this.wire.hangUp(`write of ${request.length} bytes (the maximum is ${MAX_REQUEST})`);
          break;
        }
        payload = await this.wire.input.read(request.length);
        if (!payload) break; // the client left mid-request: nothing was written
      }
      if (request.type === P.NBD_CMD.DISC) {
        this.wire.reason = 'client disconnected (NBD_CMD.DISC)';
        break;
      }
      this.wire.counts.requests++;
      this.shared.totals.requests++;
      if (request.type === P.NBD_CMD.READ && this.readInline(request)) continue;
      const work = this.execute(request, payload).catch(() => undefined);
      this.inFlight.add(work);
      void work.then(() => this.inFlight.delete(work));
    }
    // Every request already received finishes and is answered; then the connection closes.
    await Promise.all(this.inFlight);
    if (!this.wire.socket.destroyed) this.wire.socket.end();
  }

  private async execute(request: P.Request, payload: Buffer | null): Promise<void> {
    try {
      await this.perform(request, payload);
    } catch (error) {
      const errno = error instanceof RequestError ? error.errno : errnoOf(error);
      const message = error instanceof Error ? error.message : String(error);
      if (this.negotiated.structured) this.wire.send(P.encodeErrorChunk(request.handle, errno, message));
      else this.wire.send(P.encodeSimpleReply(errno, request.handle));
    }
  }

  private ok(request: P.Request): void {
    this.wire.send(P.encodeSimpleReply(0, request.handle));
  }

  private async perform(request: P.Request, payload: Buffer | null): Promise<void> {
    const { image, readOnly } = this.shared;
    const { type, flags, offset, length } = request;
    if (type > P.NBD_CMD.BLOCK_STATUS || type === P.NBD_CMD.DISC) throw new RequestError(P.NBD_ERRNO.EINVAL, `unknown command ${type}`);
    const unknown = flags & ~allowedFlags(type, this.negotiated.structured);
    if (unknown) throw new RequestError(P.NBD_ERRNO.EINVAL, `command flags 0x${unknown.toString(16)} are not valid for command ${type}`);
    if (this.shared.shuttingDown) throw new RequestError(P.NBD_ERRNO.ESHUTDOWN, 'server is shutting down');
    const size = image.virtualSize;
    const inside = offset <= size && length <= size - offset;
    const changes = type === P.NBD_CMD.WRITE || type === P.NBD_CMD.TRIM || type === P.NBD_CMD.WRITE_ZEROES;
    if (changes) {
      if (readOnly) throw new RequestError(P.NBD_ERRNO.EPERM, 'the export is read-only');
      if (!inside) throw new RequestError(P.NBD_ERRNO.ENOSPC, `range [${offset}, +${length}) is past the end of the ${size}-byte export`);
    } else if (type !== P.NBD_CMD.FLUSH && !inside) {
      throw new RequestError(P.NBD_ERRNO.EINVAL, `range [${offset}, +${length}) is past the end of the ${size}-byte export`);
    }
    const fua = (flags & P.NBD_CMD_FLAG.FUA) !== 0;
    switch (type) {
      case P.NBD_CMD.READ:
        if (length > MAX_REQUEST) throw new RequestError(P.NBD_ERRNO.EINVAL, `read of ${length} bytes (the maximum is ${MAX_REQUEST})`);
        return this.read(request);
      case P.NBD_CMD.WRITE:
        await image.write(offset, payload!);
        if (fua) await image.flush();
        this.wire.counts.bytesWritten += length;
        this.shared.totals.bytesWritten += length;
        return this.ok(request);
      case P.NBD_CMD.FLUSH:
        await image.flush();
        return this.ok(request);
      case P.NBD_CMD.TRIM:
        await image.discard(offset, length);
        if (fua) await image.flush();
        return this.ok(request);
      case P.NBD_CMD.WRITE_ZEROES:
        if (flags & P.NBD_CMD_FLAG.NO_HOLE) await this.writeAllocatedZeros(offset, length);
        else await image.writeZeroes(offset, length);
        if (fua) await image.flush();
        return this.ok(request);
      case P.NBD_CMD.CACHE:
        await this.prefetch(offset, length);
        return this.ok(request);
      case P.NBD_CMD.BLOCK_STATUS:
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

  /** NBD_CMD.CACHE: read the range so later reads come from the page cache. */
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
    if (!this.negotiated.structured) {
      if (!this.readSmall(data, offset)) await image.readInto(data, offset);
      this.count(length);
      return this.wire.send(P.encodeSimpleReply(0, handle), data);
    }
    if (length === 0) return this.wire.send(P.encodeDoneChunk(handle));
    // Runs of data and of zeros (holes are sent as OFFSET_HOLE chunks unless the client said DF).
    const runs: { offset: number; length: number; hole: boolean }[] = [];
    const df = (request.flags & P.NBD_CMD_FLAG.DF) !== 0;
    for (const e of await image.extents(offset, length)) {
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
    this.wire.send(...parts);
  }

  /**
   * The common small read of stored data, answered at once: one buffer holds the reply header and the
   * bytes read into it from the page cache (`readSmall`), one socket write, no promise. A simple reply
   * takes any mix of data and zeros; a structured one only a single data extent (holes and mixes go
   * the general way, as chunks). False, with nothing sent, when the request needs the general path
   * (errors included).
   */
  private readInline(request: P.Request): boolean {
    const { image, shuttingDown } = this.shared;
    const { flags, offset, length, handle } = request;
    if (shuttingDown || length === 0 || length > SMALL_READ) return false;
    if (flags & ~allowedFlags(P.NBD_CMD.READ, this.negotiated.structured)) return false;
    if (!(offset <= image.virtualSize && length <= image.virtualSize - offset)) return false;
    if (this.negotiated.structured) {
      const extents = image.extentsIfResident(offset, length);
      if (!extents || extents.length !== 1 || extents[0]!.kind !== 'data') return false;
    }
    const header = this.negotiated.structured ? P.encodeDataChunkHeader(P.NBD_REPLY_FLAG_DONE, handle, offset, length) : P.encodeSimpleReply(0, handle);
    const reply = Buffer.allocUnsafe(header.length + length);
    reply.set(header, 0);
    try {
      if (!this.readSmall(reply.subarray(header.length), offset)) return false;
    } catch {
      return false; // the general path reads again and answers with the error
    }
    this.count(length);
    this.wire.send(reply);
    return true;
  }

  /**
   * Small reads straight from the page cache: a positional read on the event loop costs a few
   * microseconds, a trip through the thread pool several times that (it decided the random 4 KiB read
   * benchmark). The image's read plan says where the bytes are (`readIntoSync`); false when the caller
   * must use `readInto` (a log applied in memory changes them, or the backend cannot read synchronously).
   */
  private readSmall(target: Buffer, offset: number): boolean {
    return target.length <= SMALL_READ && this.shared.image.readIntoSync(target, offset);
  }

  private count(bytesRead: number): void {
    this.wire.counts.bytesRead += bytesRead;
    this.shared.totals.bytesRead += bytesRead;
  }

  private async blockStatus(request: P.Request): Promise<void> {
    if (!this.negotiated.structured || !this.negotiated.baseAllocation) throw new RequestError(P.NBD_ERRNO.EINVAL, 'no metadata context was negotiated');
    if (request.length === 0) throw new RequestError(P.NBD_ERRNO.EINVAL, 'block status of an empty range');
    const descriptors: P.StatusDescriptor[] = [];
    for (const e of await this.shared.image.extents(request.offset, request.length)) {
      const flags = e.kind === 'zero' || e.kind === 'unallocated' ? P.NBD_STATE_HOLE | P.NBD_STATE_ZERO : 0;
      const last = descriptors[descriptors.length - 1];
      if (last && last.flags === flags) last.length += e.length;
      else descriptors.push({ length: e.length, flags });
    }
    if (request.flags & P.NBD_CMD_FLAG.REQ_ONE) descriptors.length = 1;
    this.wire.send(P.encodeBlockStatusChunk(request.handle, BASE_ALLOCATION_ID, descriptors));
  }
}
