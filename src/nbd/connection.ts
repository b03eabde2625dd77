/**
 * One client of the NBD server: the handshake (`handshake.ts`), then transmission (`transmission.ts`),
 * until it disconnects or the server shuts down; one log line when it ends.
 */
import type { Socket } from 'node:net';
import { negotiate } from './handshake.js';
import { Transmission } from './transmission.js';
import { Wire, type Shared } from './wire.js';

/** A client has this long to finish the handshake. */
const HANDSHAKE_TIMEOUT_MS = 30_000;

/** One client: handshake, then requests until it disconnects or the server shuts down. */
export class Connection {
  private readonly wire: Wire;
  private transmission = false;
  private readonly started = Date.now();
  readonly done: Promise<void>;

  constructor(
    socket: Socket,
    private readonly shared: Shared,
    private readonly peer: string,
    private readonly log: (line: string) => void,
  ) {
    this.wire = new Wire(socket, shared);
    this.done = this.run().then(
      () => this.finish(),
      (error: unknown) => {
        this.wire.reason = `internal error: ${(error as Error)?.message ?? String(error)}`;
        this.finish();
      },
    );
  }

  /** Called at server shutdown: handshakes end at once, transmission stops reading and drains. */
  shutdown(): void {
    if (!this.transmission) {
      this.wire.reason = 'server shut down during the handshake';
      this.wire.socket.destroy();
    } else {
      this.wire.reason = 'server shut down';
    }
    this.wire.input.end();
  }

  private finish(): void {
    const seconds = ((Date.now() - this.started) / 1000).toFixed(1);
    const { requests, bytesRead, bytesWritten } = this.wire.counts;
    this.log(`${this.peer}: ${this.transmission ? 'served' : 'no export'}; ${requests} requests, ${bytesRead} bytes read, ${bytesWritten} bytes written in ${seconds} s; ${this.wire.reason}`);
  }

  private async run(): Promise<void> {
    const { socket } = this.wire;
    socket.setTimeout(HANDSHAKE_TIMEOUT_MS, () => {
      if (!this.transmission) this.wire.hangUp('handshake timed out');
    });
    let negotiated;
    try {
      negotiated = await negotiate(this.wire, this.shared);
    } finally {
      socket.setTimeout(0);
    }
    if (!negotiated) return;
    this.transmission = true;
    await new Transmission(this.wire, this.shared, negotiated).serve();
  }
}
