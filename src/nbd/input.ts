/** Bytes received on a socket, handed out in exact sizes; pauses the socket when too much piles up. */
import type { Socket } from 'node:net';

export class Input {
  private chunks: Buffer[] = [];
  private length = 0;
  private want = 0;
  private waiter: ((data: Buffer | null) => void) | null = null;
  private ended = false;
  private paused = false;

  /** `highWater`: buffered bytes (not yet asked for) above which the socket is paused. */
  constructor(
    private readonly socket: Socket,
    private readonly highWater: number,
  ) {
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
    if (this.length > this.highWater && !this.paused) {
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
    if (this.paused && this.length < this.highWater / 2) {
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
