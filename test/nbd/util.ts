/**
 * Shared by the NBD tests: starting `vhdx serve` as a real process (on a free port, or a Unix socket in
 * a temp folder) and a small independent NBD client written from the protocol document, for the load,
 * fault and fuzz tests that need to control exactly what goes on the wire.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { VHDX_BIN } from '../helpers.js';

export interface ServedProcess {
  child: ChildProcess;
  uri: string;
  port: number;
  /** Everything the server printed on stderr so far. */
  stderr(): string;
  /** SIGTERM (or another signal), then waits for the exit; resolves to the exit code or signal. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs `vhdx serve FILE --port 0 ARGS...` and resolves once it prints the address it serves. */
export function startServe(file: string, args: string[] = [], timeoutMs = 15_000): Promise<ServedProcess> {
  const child = spawn(process.execPath, [VHDX_BIN, 'serve', file, '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`vhdx serve did not start in ${timeoutMs} ms: ${err}`));
    }, timeoutMs);
    child.stderr!.on('data', (d: Buffer) => {
      err += d.toString();
      const m = / at (nbd:\/\/[^\s]+)/.exec(err);
      if (m) {
        clearTimeout(timer);
        const uri = m[1]!;
        resolve({
          child,
          uri,
          port: Number(/:(\d+)\//.exec(uri)![1]),
          stderr: () => err,
          exited,
          async stop(signal: NodeJS.Signals = 'SIGTERM') {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            return exited;
          },
        });
      }
    });
    void exited.then(({ code, signal }) => {
      clearTimeout(timer);
      reject(new Error(`vhdx serve exited (${code ?? signal}) before serving: ${err}`));
    });
  });
}

/** Bounds a promise in time. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish in ${ms} ms`)), ms);
    }),
  ]);
}

// A minimal NBD client (fixed newstyle, structured replies, base:allocation), independent of src/nbd.
const OPTS_MAGIC = Buffer.from('IHAVEOPT');
export const CMD = { READ: 0, WRITE: 1, DISC: 2, FLUSH: 3, TRIM: 4, CACHE: 5, WRITE_ZEROES: 6, BLOCK_STATUS: 7 } as const;
export const FLAG = { FUA: 1, NO_HOLE: 2, DF: 4, REQ_ONE: 8 } as const;

export interface Reply {
  error: number;
  data?: Buffer;
  /** Block status descriptors [length, flags]. */
  extents?: [number, number][];
}

/** Bytes of a socket, read in exact amounts. */
export class SocketReader {
  private buffered: Buffer = Buffer.alloc(0);
  private waiters: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void }[] = [];
  private failure: Error | null = null;

  constructor(socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.buffered = this.buffered.length ? Buffer.concat([this.buffered, d]) : d;
      this.pump();
    });
    const end = (): void => {
      this.failure ??= new Error('connection closed');
      for (const w of this.waiters.splice(0)) w.reject(this.failure);
    };
    socket.on('close', end);
    socket.on('error', (e) => {
      this.failure = e;
      end();
    });
  }

  private pump(): void {
    while (this.waiters.length && this.buffered.length >= this.waiters[0]!.n) {
      const w = this.waiters.shift()!;
      const out = this.buffered.subarray(0, w.n);
      this.buffered = this.buffered.subarray(w.n);
      w.resolve(Buffer.from(out));
    }
  }

  read(n: number): Promise<Buffer> {
    if (this.failure && this.buffered.length < n) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      this.waiters.push({ n, resolve, reject });
      this.pump();
    });
  }
}

export function openSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

export class TestClient {
  size = 0;
  flags = 0;
  private nextHandle = 1n;
  private readonly pending = new Map<bigint, { type: number; offset: number; length: number; resolve: (r: Reply) => void; reject: (e: Error) => void; reply: Reply }>();
  private closed: Error | null = null;

  private constructor(
    readonly socket: Socket,
    private readonly reader: SocketReader,
  ) {}

  static async connect(port: number, options: { structured?: boolean; exportName?: string } = {}): Promise<TestClient> {
    const socket = await openSocket(port);
    socket.on('error', () => undefined);
    const reader = new SocketReader(socket);
    const client = new TestClient(socket, reader);
    const hello = await reader.read(18);
    if (!hello.subarray(8, 16).equals(OPTS_MAGIC)) throw new Error('not a newstyle server');
    socket.write(Buffer.from([0, 0, 0, 3])); // FIXED_NEWSTYLE | NO_ZEROES
    const structured = options.structured ?? true;
    if (structured) {
      await client.option(8, Buffer.alloc(0));
      const name = Buffer.from(options.exportName ?? '');
      const query = Buffer.from('base:allocation');
      const data = Buffer.alloc(4 + name.length + 4 + 4 + query.length);
      data.writeUInt32BE(name.length, 0);
      name.copy(data, 4);
      data.writeUInt32BE(1, 4 + name.length);
      data.writeUInt32BE(query.length, 8 + name.length);
      query.copy(data, 12 + name.length);
      await client.option(10, data);
    }
    const name = Buffer.from(options.exportName ?? '');
    const go = Buffer.alloc(4 + name.length + 2);
    go.writeUInt32BE(name.length, 0);
    name.copy(go, 4);
    const replies = await client.option(7, go);
    const info = replies.find((r) => r.type === 3 && r.data.readUInt16BE(0) === 0);
    if (!info) throw new Error(`NBD_OPT.GO failed: ${replies.map((r) => r.type.toString(16)).join(',')}`);
    client.size = Number(info.data.readBigUInt64BE(2));
    client.flags = info.data.readUInt16BE(10);
    void client.receive();
    return client;
  }

  /** Sends an option and collects replies up to the final one. */
  async option(option: number, data: Buffer): Promise<{ type: number; data: Buffer }[]> {
    const header = Buffer.alloc(16);
    OPTS_MAGIC.copy(header, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(data.length, 12);
    this.socket.write(Buffer.concat([header, data]));
    const out: { type: number; data: Buffer }[] = [];
    for (;;) {
      const h = await this.reader.read(20);
      const type = h.readUInt32BE(12);
      const body = await this.reader.read(h.readUInt32BE(16));
      out.push({ type, data: body });
      if (type === 1 || type >= 0x80000000) return out;
    }
  }

  private async receive(): Promise<void> {
    try {
      for (;;) {
        let head = await this.reader.read(16);
        const magic = head.readUInt32BE(0);
        if (magic === 0x668e33ef) head = Buffer.concat([head, await this.reader.read(4)]);
        const handle = head.readBigUInt64BE(8);
        const p = this.pending.get(handle);
        if (!p) throw new Error(`reply for unknown handle ${handle}`);
        if (magic === 0x67446698) {
          p.reply.error = head.readUInt32BE(4);
          if (p.type === CMD.READ && p.reply.error === 0) p.reply.data = await this.reader.read(p.length);
          this.pending.delete(handle);
          p.resolve(p.reply);
          continue;
        }
        if (magic !== 0x668e33ef) throw new Error(`bad reply magic 0x${magic.toString(16)}`);
        const flags = head.readUInt16BE(4);
        const type = head.readUInt16BE(6);
        const body = await this.reader.read(head.readUInt32BE(16));
        if (type === 1) {
          const at = Number(body.readBigUInt64BE(0));
          p.reply.data ??= Buffer.alloc(p.length);
          body.copy(p.reply.data, at - p.offset, 8);
        } else if (type === 2) {
          p.reply.data ??= Buffer.alloc(p.length);
          const at = Number(body.readBigUInt64BE(0));
          p.reply.data.fill(0, at - p.offset, at - p.offset + body.readUInt32BE(8));
        } else if (type === 5) {
          const extents: [number, number][] = [];
          for (let i = 4; i < body.length; i += 8) extents.push([body.readUInt32BE(i), body.readUInt32BE(i + 4)]);
          p.reply.extents = extents;
        } else if (type & 0x8000) {
          p.reply.error = body.readUInt32BE(0);
        }
        if (flags & 1) {
          this.pending.delete(handle);
          if (p.type === CMD.READ && p.reply.error === 0) p.reply.data ??= Buffer.alloc(p.length);
          p.resolve(p.reply);
        }
      }
    } catch (error) {
      this.closed = error as Error;
      for (const p of this.pending.values()) p.reject(this.closed);
      this.pending.clear();
    }
  }

  request(type: number, offset: number, length: number, options: { flags?: number; data?: Uint8Array } = {}): Promise<Reply> {
    if (this.closed) return Promise.reject(this.closed);
    const handle = this.nextHandle++;
    const header = Buffer.alloc(28);
    header.writeUInt32BE(0x25609513, 0);
    header.writeUInt16BE(options.flags ?? 0, 4);
    header.writeUInt16BE(type, 6);
    header.writeBigUInt64BE(handle, 8);
    header.writeBigUInt64BE(BigInt(offset), 16);
    header.writeUInt32BE(length, 24);
    const promise = new Promise<Reply>((resolve, reject) => {
      const entry = { type, length, offset, resolve, reject, reply: { error: 0 } as Reply };
      this.pending.set(handle, entry);
    });
    this.socket.cork();
    this.socket.write(header);
    if (options.data) this.socket.write(options.data);
    this.socket.uncork();
    return promise;
  }

  read(offset: number, length: number): Promise<Reply> {
    return this.request(CMD.READ, offset, length);
  }

  write(offset: number, data: Uint8Array, flags = 0): Promise<Reply> {
    return this.request(CMD.WRITE, offset, data.length, { data, flags });
  }

  flush(): Promise<Reply> {
    return this.request(CMD.FLUSH, 0, 0);
  }

  async disconnect(): Promise<void> {
    const header = Buffer.alloc(28);
    header.writeUInt32BE(0x25609513, 0);
    header.writeUInt16BE(CMD.DISC, 6);
    await new Promise<void>((resolve) => this.socket.end(header, () => resolve()));
    this.socket.destroy();
  }
}
