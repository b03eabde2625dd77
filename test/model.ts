/**
 * The raw-disk model the write tests check against, with what a power cut may legally leave: every
 * 512-byte unit reads its content as of the last completed flush, or one of the contents written to it
 * since.
 */
import { VhdxImage } from '../src/image/image.js';
import { PowerCut, PowerLossBackend } from '../src/io/power-loss.js';
import { withoutFlush } from '../src/io/backend.js';
import type { OpenOptions } from '../src/image/open.js';

export type Op =
  | { kind: 'write'; offset: number; data: Uint8Array }
  | { kind: 'writeZeroes'; offset: number; length: number }
  | { kind: 'discard'; offset: number; length: number }
  | { kind: 'flush' }
  | { kind: 'reopen' };

const UNIT = 512;

export class DiskModel {
  current: Uint8Array;
  committed: Uint8Array;
  private versions = new Map<number, Uint8Array[]>();

  constructor(readonly size: number) {
    this.current = new Uint8Array(size);
    this.committed = new Uint8Array(size);
  }

  /** Records an operation as issued (its effect may or may not survive a crash before the next flush). */
  issue(op: Op): void {
    if (op.kind === 'flush' || op.kind === 'reopen') return;
    const offset = op.offset;
    const length = op.kind === 'write' ? op.data.length : op.length;
    for (let u = Math.floor(offset / UNIT); u < Math.ceil((offset + length) / UNIT); u++) {
      if (!this.versions.has(u)) this.versions.set(u, [this.committed.slice(u * UNIT, (u + 1) * UNIT)]);
    }
    if (op.kind === 'write') this.current.set(op.data, offset);
    else this.current.fill(0, offset, offset + length);
    for (let u = Math.floor(offset / UNIT); u < Math.ceil((offset + length) / UNIT); u++) {
      this.versions.get(u)!.push(this.current.slice(u * UNIT, (u + 1) * UNIT));
    }
  }

  /** A flush (or close) returned: everything issued is durable. */
  durable(): void {
    this.committed = this.current.slice();
    this.versions.clear();
  }

  /** Describes the first unit of `disk` that no legal crash could produce, or null. */
  checkCrashed(disk: Uint8Array): string | null {
    if (this.versions.size === 0 && equal(disk, this.committed)) return null;
    for (let u = 0; u < this.size / UNIT; u++) {
      const got = disk.subarray(u * UNIT, (u + 1) * UNIT);
      const allowed = this.versions.get(u) ?? [this.committed.subarray(u * UNIT, (u + 1) * UNIT)];
      if (!allowed.some((a) => equal(a, got))) {
        return `virtual bytes [${u * UNIT}, ${(u + 1) * UNIT}) hold neither the flushed content nor anything written since (${allowed.length} candidates)`;
      }
    }
    return null;
  }
}

export function equal(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** Runs one operation against an open image; returns the image to use next (reopen replaces it). */
export async function applyOp(image: VhdxImage, op: Op, reopen: () => Promise<VhdxImage>): Promise<VhdxImage> {
  switch (op.kind) {
    case 'write':
      await image.write(op.offset, op.data);
      return image;
    case 'writeZeroes':
      await image.writeZeroes(op.offset, op.length);
      return image;
    case 'discard':
      await image.discard(op.offset, op.length);
      return image;
    case 'flush':
      await image.flush();
      return image;
    case 'reopen':
      await image.close();
      return reopen();
  }
}

/** Another seeded generator in [0, 1) (mulberry32): tests whose fixed seeds were chosen with it. */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** A small seeded generator in [0, 1) (xorshift32), so crash images reproduce. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 2 ** 32;
  };
}

/**
 * Runs `ops` on a disk that loses power before operation `cutAt`; returns the model as of the cut.
 * `open` adds options to each writable open (sparse allocation, a parent); `content` is what the
 * disk reads before the first operation (a differencing disk shows its parent's), zeros by default.
 */
export async function runUntilCut(
  initial: Uint8Array,
  ops: Op[],
  size: number,
  cutAt: number,
  sparse = false,
  extra: { open?: OpenOptions; content?: Uint8Array; cache?: 'writeback' | 'unsafe' } = {},
): Promise<{ backend: PowerLossBackend; model: DiskModel; completed: boolean }> {
  const backend = new PowerLossBackend(initial, { cutAt });
  // The unsafe cache mode: the image never reaches the disk's flush (the backend counts none).
  const image = extra.cache === 'unsafe' ? withoutFlush(backend) : backend;
  const model = new DiskModel(size);
  if (extra.content) {
    model.current = extra.content.slice();
    model.committed = extra.content.slice();
  }
  const open = (): Promise<VhdxImage> => VhdxImage.open(image, { ...extra.open, readOnly: false, sparse });
  try {
    let opened = await open();
    for (const op of ops) {
      model.issue(op);
      opened = await applyOp(opened, op, open);
      if (op.kind === 'flush' || op.kind === 'reopen') model.durable();
    }
    await opened.close();
    model.durable();
    return { backend, model, completed: true };
  } catch (error) {
    if (!(error instanceof PowerCut)) throw error;
    return { backend, model, completed: false };
  }
}
