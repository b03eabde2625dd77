/** An in-memory backend: a growable byte array. Flush is a no-op because nothing is volatile here. */
import { VhdxError } from '../format/errors.js';
import type { Backend } from './backend.js';

export class MemoryBackend implements Backend {
  readonly name: string;
  readonly readOnly: boolean;
  private bytes: Uint8Array;
  private length: number;

  constructor(initial: Uint8Array = new Uint8Array(0), options: { name?: string; readOnly?: boolean } = {}) {
    this.bytes = initial;
    this.length = initial.length;
    this.name = options.name ?? 'memory';
    this.readOnly = options.readOnly ?? false;
  }

  /** The current content (a view; copy it to keep it). */
  contents(): Uint8Array {
    return this.bytes.subarray(0, this.length);
  }

  async read(target: Uint8Array, position: number): Promise<number> {
    if (position >= this.length) return 0;
    const n = Math.min(target.length, this.length - position);
    target.set(this.bytes.subarray(position, position + n));
    return n;
  }

  async write(data: Uint8Array, position: number): Promise<void> {
    this.writeSync(data, position);
  }

  /** `write`, done at once. */
  writeSync(data: Uint8Array, position: number): void {
    this.assertWritable();
    this.ensureCapacity(position + data.length);
    this.bytes.set(data, position);
    this.length = Math.max(this.length, position + data.length);
  }

  async writeZeros(position: number, length: number): Promise<void> {
    this.assertWritable();
    this.ensureCapacity(position + length);
    this.bytes.fill(0, position, position + length);
    this.length = Math.max(this.length, position + length);
  }

  async flush(): Promise<void> {}

  async size(): Promise<number> {
    return this.length;
  }

  async truncate(size: number): Promise<void> {
    this.assertWritable();
    if (size > this.length) {
      this.ensureCapacity(size);
    } else {
      this.bytes.fill(0, size, this.length);
    }
    this.length = size;
  }

  async close(): Promise<void> {}

  private assertWritable(): void {
    if (this.readOnly) throw new VhdxError('READ_ONLY', 'image is open read-only', { file: this.name });
  }

  private ensureCapacity(size: number): void {
    if (size <= this.bytes.length) return;
    const grown = new Uint8Array(Math.max(size, this.bytes.length * 2));
    grown.set(this.bytes.subarray(0, this.length));
    this.bytes = grown;
  }
}
