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
import { unlink } from 'node:fs/promises';
import { VhdxError } from '../format/errors.js';
import type { NbdImage } from './image.js';
import * as P from './protocol.js';
import { Connection } from './connection.js';
import type { NbdServerStats, Shared } from './wire.js';

export type { NbdServerStats } from './wire.js';

export interface NbdServeOptions {
  /** The image to serve (a `VhdxImage`, or a VHD through `vhdNbdImage`). The server never closes it; `close()` flushes it. */
  image: NbdImage;
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

/** Connections waiting for a slot; more are turned away. */
const MAX_WAITING = 64;

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
  const shared: Shared = {
    image,
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
        if (!image.readOnly) await image.flush();
      })();
      return closing;
    },
  };
}
