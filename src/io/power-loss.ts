/**
 * A backend that models a disk losing power. Every write and truncate lands in a volatile cache (what
 * reads see); `flush` is the only barrier that makes them durable. The backend counts operations and can
 * cut power just before operation `cutAt`: from then on every call throws `PowerCut`, and
 * `crashImage()` builds what the disk would hold: the durable state plus, per the chosen model, the
 * in-flight operation torn at 512-byte granularity (and, in the adversarial model, any subset of the
 * unflushed writes, each torn independently).
 */
import type { Backend } from './backend.js';
import { MemoryBackend } from './memory.js';

export class PowerCut extends Error {
  constructor() {
    super('power cut');
    this.name = 'PowerCut';
  }
}

type PendingOp = { kind: 'write'; data: Uint8Array; position: number } | { kind: 'truncate'; size: number };

export type CrashModel =
  /** Unflushed operations are lost; the in-flight write keeps a prefix of its 512-byte sectors. */
  | 'drop'
  /** Each unflushed operation (in order) survives in part: a random subset of its 512-byte sectors. */
  | 'reorder';

const SECTOR = 512;

export class PowerLossBackend implements Backend {
  readonly name: string;
  readonly readOnly = false;
  private readonly volatile: MemoryBackend;
  private readonly durable: MemoryBackend;
  private pending: PendingOp[] = [];
  private inFlight: PendingOp | null = null;
  private cut = false;
  /** Operations (write, truncate, flush) started so far. */
  operations = 0;
  flushes = 0;

  constructor(initial: Uint8Array = new Uint8Array(0), options: { name?: string; cutAt?: number } = {}) {
    this.name = options.name ?? 'power-loss';
    this.volatile = new MemoryBackend(initial.slice());
    this.durable = new MemoryBackend(initial.slice());
    this.cutAt = options.cutAt ?? Infinity;
  }

  /** Index of the operation that never completes (power fails as it starts). */
  cutAt: number;

  get powerCut(): boolean {
    return this.cut;
  }

  private step(op: PendingOp | null): void {
    if (this.cut) throw new PowerCut();
    if (this.operations === this.cutAt) {
      this.cut = true;
      this.inFlight = op;
      throw new PowerCut();
    }
    this.operations++;
  }

  async read(target: Uint8Array, position: number): Promise<number> {
    if (this.cut) throw new PowerCut();
    return this.volatile.read(target, position);
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    this.writeSync(data, position);
  }

  /** `write`, done at once: the same one operation. */
  writeSync(data: Uint8Array, position: number): void {
    const op: PendingOp = { kind: 'write', data: data.slice(), position };
    this.step(op);
    this.pending.push(op);
    this.volatile.writeSync(data, position);
  }

  /** One operation, recorded as a write of zeros (a torn fallocate is modelled like a torn write). */
  async writeZeros(position: number, length: number): Promise<void> {
    await this.write(new Uint8Array(length), position);
  }

  async truncate(size: number): Promise<void> {
    const op: PendingOp = { kind: 'truncate', size };
    this.step(op);
    this.pending.push(op);
    await this.volatile.truncate(size);
  }

  async flush(): Promise<void> {
    this.step(null);
    for (const op of this.pending) await apply(this.durable, op, null);
    this.pending = [];
    this.flushes++;
  }

  async size(): Promise<number> {
    if (this.cut) throw new PowerCut();
    return this.volatile.size();
  }

  async close(): Promise<void> {}

  /** The bytes on the disk now (as if power were cut at this instant), per `model`, with `random` in [0, 1). */
  async crashImage(model: CrashModel, random: () => number): Promise<Uint8Array> {
    const disk = new MemoryBackend(this.durable.contents().slice());
    if (model === 'reorder') {
      for (const op of this.pending) await apply(disk, op, (n) => randomSubset(n, random));
      if (this.inFlight) await apply(disk, this.inFlight, (n) => randomSubset(n, random));
    } else if (this.inFlight) {
      await apply(disk, this.inFlight, (n) => prefix(n, Math.floor(random() * (n + 1))));
    }
    return disk.contents().slice();
  }

  /** The current (volatile) contents, as reads see them. */
  contents(): Uint8Array {
    return this.volatile.contents();
  }
}

/** Applies `op`; for writes, `sectors` picks which 512-byte pieces land (all when null). */
async function apply(disk: MemoryBackend, op: PendingOp, sectors: ((count: number) => boolean[]) | null): Promise<void> {
  if (op.kind === 'truncate') {
    // A size change is metadata: torn models keep or lose it whole.
    if (sectors === null || sectors(1)[0]) await disk.truncate(op.size);
    return;
  }
  if (sectors === null) {
    await disk.write(op.data, op.position);
    return;
  }
  // Disks tear at their own sector boundaries: absolute 512-byte units of the file, not of the write.
  const first = Math.floor(op.position / SECTOR);
  const count = Math.ceil((op.position + op.data.length) / SECTOR) - first;
  const keep = sectors(count);
  for (let i = 0; i < count; i++) {
    if (!keep[i]) continue;
    const from = Math.max(op.position, (first + i) * SECTOR);
    const to = Math.min(op.position + op.data.length, (first + i + 1) * SECTOR);
    await disk.write(op.data.subarray(from - op.position, to - op.position), from);
  }
}

function prefix(count: number, n: number): boolean[] {
  return Array.from({ length: count }, (_, i) => i < n);
}

function randomSubset(count: number, random: () => number): boolean[] {
  return Array.from({ length: count }, () => random() < 0.5);
}
