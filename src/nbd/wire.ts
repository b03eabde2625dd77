/**
 * What the phases of an NBD connection share: the socket of one client (`Wire`: exact-size input, whole
 * replies out), the state every connection of a server shares, and the server's limits.
 */
import type { Socket } from 'node:net';
import type { NbdImage } from './image.js';
import { Input } from './input.js';

/** Largest request (read, write payload, zero, trim, block status) a client may send; reported as the maximum block size. */
export const MAX_REQUEST = 32 * 1024 * 1024;
/** Received bytes buffered (not yet a whole request) before the socket is paused. */
const READ_HIGH_WATER = MAX_REQUEST + 4 * 1024 * 1024;

export interface NbdServerStats {
  connections: number;
  requests: number;
  bytesRead: number;
  bytesWritten: number;
  protocolErrors: number;
}

/** What every connection of one server shares. */
export interface Shared {
  image: NbdImage;
  exportName: string;
  readOnly: boolean;
  multiConn: boolean;
  totals: NbdServerStats;
  shuttingDown: boolean;
}

/** The socket of one connection: exact-size input, whole replies out, and why it ended. */
export class Wire {
  readonly input: Input;
  /** Why the connection ended, for the log line. */
  reason = 'client disconnected';
  /** This connection's own counts. */
  readonly counts = { requests: 0, bytesRead: 0, bytesWritten: 0 };
  private corked = false;
  private drainWaiter: (() => void) | null = null;

  constructor(
    readonly socket: Socket,
    private readonly shared: Shared,
  ) {
    socket.setNoDelay(true);
    socket.on('error', (error: NodeJS.ErrnoException) => {
      this.reason = `connection error: ${error.code ?? error.message}`;
    });
    socket.on('drain', () => this.wake());
    socket.on('close', () => this.wake());
    this.input = new Input(socket, READ_HIGH_WATER);
  }

  private wake(): void {
    const w = this.drainWaiter;
    this.drainWaiter = null;
    w?.();
  }

  /** Resolves when the socket has drained its queued replies (or closed). */
  drained(): Promise<void> {
    return new Promise<void>((resolve) => (this.drainWaiter = resolve));
  }

  /**
   * Queues a whole reply. Replies finished in the same turn of the event loop leave in one system call:
   * the socket is corked at the first and uncorked once the turn's I/O callbacks have run.
   */
  send(...parts: Uint8Array[]): void {
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

  /** Ends the connection for a protocol error. */
  hangUp(reason: string): void {
    this.reason = reason;
    this.shared.totals.protocolErrors++;
    this.socket.destroy();
  }
}
