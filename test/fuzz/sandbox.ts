/**
 * The worker side of the fuzz harness: runs one hostile image at a time against the library, in a
 * worker thread so the test process survives whatever the image does.
 *
 * How each acceptance clause is checked, per case:
 *
 * - "typed error or valid reads": `VhdxImage.open(backend, { readOnly: true })` (odd read seeds add
 *   `strictLog: true`); when it opens, info(), extents() and reads (the whole disk when it is small,
 *   else every extent's head and tail or a sample of them; random unaligned ranges; out-of-range
 *   requests) must either throw a VhdxError or return bytes that agree with the map: zero/unallocated
 *   runs read as zeros, data runs read the file's bytes at the mapped offset (zeros past the end of the
 *   file), parent runs never read without a parent. Any other exception is a violation.
 * - "no case slower than 1 s": the case is timed here (open + every read); the main thread also kills
 *   the worker when a case has not answered after a hard timeout, so a hang is a failure, not a stuck run.
 * - "no allocation sized by an unchecked field", three independent guards. The bound for one buffer is
 *   the larger of 64 MiB and the file size: no structure of a file is longer than the file, so a bigger
 *   buffer can only come from a field nobody checked against it.
 *   1. every backend read request is bounded so and must sit at a safe, non-negative position;
 *   2. `globalThis.Uint8Array` is replaced, in this worker only, by a subclass that refuses (and records)
 *      any single allocation above the bound, so a buffer sized by a hostile field is caught at the
 *      `new Uint8Array(n)` that would make it, before the memory is touched;
 *   3. buffer growth is sampled at every backend call (V8's external-memory counter, where ArrayBuffer
 *      backing stores are accounted, per isolate so only this worker's) and checked at the end with
 *      `process.memoryUsage().arrayBuffers`; growth above MEMORY_LIMIT is a violation. The worker also runs
 *      with a 512 MiB heap limit, so a runaway of JS objects or strings ends as "out of memory".
 * - "read-only opens never write": the backend refuses and records any write or truncate (a plain Error,
 *   never the typed READ_ONLY error, so a write cannot pass as a typed failure), and on every third case
 *   (by read seed) the image bytes are compared with a copy taken before the case.
 */
import { isMainThread, parentPort, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { performance } from 'node:perf_hooks';
import { getHeapStatistics } from 'node:v8';
import type { Backend } from '../../src/io/backend.js';

/** One buffer (allocation or backend read) may be as large as the file, or this, whichever is larger. */
export const BUFFER_LIMIT_FLOOR = 64 * 1024 * 1024;
export const MEMORY_LIMIT = 256 * 1024 * 1024;
export const SOFT_LIMIT_MS = 1000;
/** Whole-disk reads (and their checks) only below this virtual size; above it, a bounded sample. */
const FULL_READ_LIMIT = 8 * 1024 * 1024;
const PIECE = 64 * 1024;

export interface CaseRequest {
  id: number;
  /** The image is the first `length` bytes of the shared input buffer (sent again only when replaced). */
  length: number;
  shared?: SharedArrayBuffer;
  readSeed: number;
  /** Harness self-tests: make the case misbehave on purpose, to prove each guard fires. */
  probe?: 'throw-plain' | 'hang' | 'allocate' | 'write' | 'slow' | 'mutate' | 'oom';
}

export interface CaseResult {
  /** 'opened' when open succeeded (reads may still have ended in typed errors). */
  outcome: 'opened' | 'rejected';
  /** The VhdxError code of a rejected open. */
  code: string | null;
  message: string | null;
  /** Typed errors raised by reads after a successful open, by code. */
  readErrors: Record<string, number>;
  elapsedMs: number;
  peakArrayBufferGrowth: number;
  largestAllocation: number;
  largestReadRequest: number;
  backendReads: number;
  virtualSize: number | null;
  /** info().logState of an image that opened ('empty', 'replayed-in-memory', 'uncommitted'). */
  logState: string | null;
  violations: string[];
}

// ---------------------------------------------------------------- allocation guard (worker only)

const NativeUint8Array = Uint8Array;
/** The current case's bound for one buffer. */
let bufferLimit = BUFFER_LIMIT_FLOOR;
let largestAllocation = 0;
let allocationViolation: string | null = null;

function installAllocationGuard(): void {
  class GuardedUint8Array extends NativeUint8Array {
    constructor(...args: unknown[]) {
      const first = args[0];
      if (typeof first === 'number') {
        if (first > largestAllocation) largestAllocation = first;
        if (first > bufferLimit) {
          const message = `allocation of ${first} bytes (limit ${bufferLimit})`;
          allocationViolation ??= `${message}\n${new Error('allocated here').stack ?? ''}`;
          throw new Error(`fuzz guard: ${message}`);
        }
      }
      super(...(args as []));
    }
  }
  (globalThis as { Uint8Array: unknown }).Uint8Array = GuardedUint8Array;
}

// ---------------------------------------------------------------- the case

/** xorshift32: the read plan must reproduce from the seed fast-check prints. */
function rng(seed: number): (n: number) => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return (n: number) => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return n <= 0 ? 0 : Math.floor((x / 0x1_0000_0000) * n);
  };
}

let input: SharedArrayBuffer | null = null;
let readBuffer = new NativeUint8Array(0);
let pristine = new NativeUint8Array(0);
const ZEROS = Buffer.alloc(1024 * 1024);

/** ArrayBuffer backing stores are V8 external memory: this counter sees every buffer the case allocates. */
function externalMemory(): number {
  return getHeapStatistics().external_memory;
}

let library: {
  VhdxImage: typeof import('../../src/image/image.js').VhdxImage;
  VhdxError: typeof import('../../src/format/errors.js').VhdxError;
  MemoryBackend: typeof import('../../src/io/memory.js').MemoryBackend;
} | null = null;

async function runCase(request: CaseRequest | null): Promise<CaseResult | null> {
  // Imported lazily so the library is loaded after the allocation guard is installed.
  library ??= {
    VhdxImage: (await import('../../src/image/image.js')).VhdxImage,
    VhdxError: (await import('../../src/format/errors.js')).VhdxError,
    MemoryBackend: (await import('../../src/io/memory.js')).MemoryBackend,
  };
  if (request === null) return null;
  if (request.shared) input = request.shared;
  if (!input || request.length > input.byteLength) throw new Error(`no input buffer for ${request.length} bytes`);
  const bytes = new NativeUint8Array(input, 0, request.length);
  // The pristine copy lives in a reused buffer: fresh multi-MiB allocations per case are what cost most.
  if (pristine.length < request.length) pristine = new NativeUint8Array(request.length);
  const original = pristine.subarray(0, request.length);
  original.set(bytes);
  const result = await attempt(request, bytes, original);
  // Hosts shared with other work can stretch a ~100 ms case past the limit: a case that is slow but not
  // grossly so is timed once more and judged by its faster run. A truly slow case is slow twice.
  if (request.probe === undefined && result.elapsedMs > SOFT_LIMIT_MS && result.elapsedMs <= 1.5 * SOFT_LIMIT_MS) {
    const again = await attempt(request, original.slice(), original);
    result.elapsedMs = Math.min(result.elapsedMs, again.elapsedMs);
  }
  return result;
}

async function attempt(request: CaseRequest, bytes: Uint8Array, original: Uint8Array): Promise<CaseResult> {
  const { VhdxImage, VhdxError, MemoryBackend } = library!;
  type Image = Awaited<ReturnType<typeof VhdxImage.open>>;
  const violations: string[] = [];
  const readErrors: Record<string, number> = {};
  let largestReadRequest = 0;
  let backendReads = 0;
  let peak = 0;
  largestAllocation = 0;
  allocationViolation = null;
  const baseline = externalMemory();
  const arrayBuffersBefore = process.memoryUsage().arrayBuffers;
  const sample = (): void => {
    const growth = externalMemory() - baseline;
    if (growth > peak) peak = growth;
  };

  const inner = new MemoryBackend(bytes, { name: 'fuzz-case', readOnly: true });
  const fileSize = bytes.length;
  bufferLimit = Math.max(BUFFER_LIMIT_FLOOR, fileSize);
  const backend = {
    name: 'fuzz-case',
    readOnly: true,
    async read(target: Uint8Array, position: number): Promise<number> {
      backendReads++;
      sample();
      if (!Number.isSafeInteger(position) || position < 0) {
        violations.push(`backend read at position ${position}`);
        throw new Error(`fuzz guard: read at position ${position}`);
      }
      if (target.length > largestReadRequest) largestReadRequest = target.length;
      if (target.length > bufferLimit) {
        violations.push(`backend read of ${target.length} bytes at ${position} (limit ${bufferLimit}, file ${fileSize})`);
        throw new Error(`fuzz guard: read of ${target.length} bytes`);
      }
      return inner.read(target, position);
    },
    async write(data: Uint8Array, position: number): Promise<void> {
      violations.push(`write of ${data.length} bytes at ${position} on a read-only open`);
      throw new Error('fuzz guard: write on a read-only open');
    },
    async truncate(size: number): Promise<void> {
      violations.push(`truncate to ${size} on a read-only open`);
      throw new Error('fuzz guard: truncate on a read-only open');
    },
    async flush(): Promise<void> {},
    async size(): Promise<number> {
      return inner.size();
    },
    async close(): Promise<void> {},
  };

  const unexpected = (where: string, error: unknown): void => {
    const e = error as { name?: string; message?: string; stack?: string };
    violations.push(`${where} threw ${e?.name ?? typeof error} (not a VhdxError): ${e?.message ?? String(error)}\n${e?.stack ?? ''}`);
  };
  /** Runs `fn`; a VhdxError is counted, anything else is a violation. Returns undefined on any throw. */
  const guarded = async <T>(where: string, fn: () => Promise<T> | T): Promise<T | undefined> => {
    try {
      return await fn();
    } catch (error) {
      if (error instanceof VhdxError) {
        readErrors[error.code] = (readErrors[error.code] ?? 0) + 1;
        if (typeof error.code !== 'string' || error.message.length === 0) violations.push(`${where}: VhdxError without code or message`);
      } else {
        unexpected(where, error);
      }
      return undefined;
    }
  };

  const asBuffer = (u: Uint8Array): Buffer => Buffer.from(u.buffer, u.byteOffset, u.length);
  const isZero = (u: Uint8Array): boolean => {
    for (let at = 0; at < u.length; at += ZEROS.length) {
      const part = u.subarray(at, Math.min(u.length, at + ZEROS.length));
      if (asBuffer(part).compare(ZEROS, 0, part.length) !== 0) return false;
    }
    return true;
  };
  /**
   * What data extents must read: the file's bytes, or, when a dirty log was replayed in memory, the file
   * as a writable open leaves it after replaying that log to the file (the two paths must agree).
   */
  let reference: Uint8Array = original;
  /** Set when the writable open refuses the case for its own reason (a typed error): nothing to compare with. */
  let noReference = false;
  /** True when `piece` equals the reference bytes at `position` (zeros past the end of the file). */
  const matchesFile = (piece: Uint8Array, position: number): boolean => {
    if (noReference) return true;
    const inFile = Math.max(0, Math.min(piece.length, reference.length - position));
    if (inFile > 0 && asBuffer(piece.subarray(0, inFile)).compare(asBuffer(reference.subarray(position, position + inFile))) !== 0) return false;
    return isZero(piece.subarray(inFile));
  };

  /**
   * Reads [offset, offset + length) and checks it against the extent map and the file. Large reads go
   * through readInto with a reused buffer (fresh MiB-sized buffers per read dominate the cost of a case);
   * small ones through read(), so both entry points are exercised.
   */
  const checkedRead = async (image: Image, offset: number, length: number): Promise<void> => {
    let got: Uint8Array | undefined;
    if (length > PIECE) {
      if (readBuffer.length < length) readBuffer = new NativeUint8Array(length);
      const target = readBuffer.subarray(0, length);
      target.fill(0xa5);
      got = (await guarded(`readInto(${offset}, ${length})`, async () => (await image.readInto(target, offset), target)));
    } else {
      got = await guarded(`read(${offset}, ${length})`, () => image.read(offset, length));
    }
    if (got === undefined) return;
    if (got.length !== length) {
      violations.push(`read(${offset}, ${length}) returned ${got.length} bytes`);
      return;
    }
    const map = await guarded(`extents(${offset}, ${length})`, () => image.extents(offset, length));
    if (map === undefined) return;
    for (const e of map) {
      const piece = got.subarray(e.offset - offset, e.offset - offset + e.length);
      if (e.kind === 'data') {
        if (!matchesFile(piece, e.fileOffset!)) {
          violations.push(`read(${offset}, ${length}): data extent at ${e.offset} does not match file bytes at ${e.fileOffset}`);
          return;
        }
      } else if (e.kind === 'parent') {
        violations.push(`read(${offset}, ${length}) succeeded over a parent extent at ${e.offset} with no parent attached`);
        return;
      } else if (!isZero(piece)) {
        violations.push(`read(${offset}, ${length}): ${e.kind} extent at ${e.offset} has non-zero bytes`);
        return;
      }
    }
  };

  const exercise = async (image: Image): Promise<void> => {
    const virtualSize = image.virtualSize;
    const info = await guarded('info()', () => image.info());
    logState = info?.logState ?? null;
    if (logState === 'replayed-in-memory') {
      const copy = new MemoryBackend(original.slice(), { name: 'fuzz-replay' });
      // Growing the file (to LastFileOffset) only adds zeros, which reads past the end give anyway:
      // skip it so the copy stays the size of the case.
      // (Delegation, not a prototype wrapper: a write that grows the memory backend replaces its
      // buffer, which through a prototype wrapper would land on the wrapper and not on `copy`.)
      const noGrow: Backend = {
        name: copy.name,
        readOnly: false,
        read: (target, position) => copy.read(target, position),
        write: (data, position) => copy.write(data, position),
        flush: () => copy.flush(),
        size: () => copy.size(),
        truncate: async (size: number) => (size > (await copy.size()) ? undefined : copy.truncate(size)),
        close: () => copy.close(),
      };
      try {
        await (await VhdxImage.open(noGrow, { readOnly: false })).close();
        reference = copy.contents();
      } catch (error) {
        // A writable open may refuse what a read-only one accepts (a header whose sequence number cannot
        // grow, say): a typed refusal is allowed, and then the read-only data has no second path to match.
        if (error instanceof VhdxError) {
          noReference = true;
          readErrors[`writable:${error.code}`] = (readErrors[`writable:${error.code}`] ?? 0) + 1;
        } else {
          unexpected('writable replay', error);
        }
      }
    }
    if (info && (info.virtualSize !== virtualSize || info.blockSize !== image.blockSize)) violations.push('info() disagrees with the image getters');
    if (!Number.isSafeInteger(virtualSize) || virtualSize <= 0) violations.push(`opened with virtual size ${virtualSize}`);
    const extents = await guarded('extents()', () => image.extents());
    if (extents) {
      let position = 0;
      for (const e of extents) {
        if (e.offset !== position || !(e.length > 0)) {
          violations.push(`extents() is not a contiguous cover: extent at ${e.offset} (length ${e.length}) after ${position}`);
          break;
        }
        if (e.kind === 'data' && (e.fileOffset === undefined || !Number.isSafeInteger(e.fileOffset) || e.fileOffset < 1024 * 1024)) {
          violations.push(`data extent at ${e.offset} maps to file offset ${e.fileOffset}`);
          break;
        }
        position += e.length;
      }
      if (position !== virtualSize && violations.length === 0) violations.push(`extents() cover ${position} of ${virtualSize} bytes`);
    }
    const next = rng(request.readSeed);
    if (virtualSize <= FULL_READ_LIMIT) {
      for (let at = 0; at < virtualSize; at += 1024 * 1024) await checkedRead(image, at, Math.min(1024 * 1024, virtualSize - at));
    } else if (extents) {
      const picks = new Set<number>();
      for (let i = 0; i < Math.min(extents.length, 12); i++) picks.add(i);
      for (let i = Math.max(0, extents.length - 4); i < extents.length; i++) picks.add(i);
      for (let i = 0; i < 8; i++) picks.add(next(extents.length));
      for (const i of picks) {
        const e = extents[i]!;
        await checkedRead(image, e.offset, Math.min(PIECE, e.length));
        if (e.length > PIECE) await checkedRead(image, e.offset + e.length - PIECE, PIECE);
      }
    }
    for (let i = 0; i < 6; i++) {
      const offset = next(virtualSize);
      const length = next(Math.min(4 * PIECE, virtualSize - offset)) + 1;
      await checkedRead(image, offset, length);
    }
    for (const [offset, length] of [
      [virtualSize - 1, 2],
      [0.5, 1],
    ] as const) {
      try {
        await image.read(offset, length);
        violations.push(`read(${offset}, ${length}) outside the disk did not throw`);
      } catch (error) {
        if (!(error instanceof VhdxError)) unexpected(`read(${offset}, ${length})`, error);
      }
    }
    await guarded('close()', () => image.close());
  };

  let outcome: CaseResult['outcome'] = 'rejected';
  let code: string | null = null;
  let message: string | null = null;
  let virtualSize: number | null = null;
  let logState: string | null = null;
  const started = performance.now();
  try {
    await probe(request.probe, backend);
    // Odd seeds also ask for the strict log policy (no complete sequence is an error, not a warning).
    const image = await VhdxImage.open(backend, { readOnly: true, strictLog: (request.readSeed & 1) === 1 });
    outcome = 'opened';
    virtualSize = image.virtualSize;
    await exercise(image);
  } catch (error) {
    if (error instanceof VhdxError) {
      code = error.code;
      message = error.message;
      if (typeof error.code !== 'string' || error.message.length === 0) violations.push('open: VhdxError without code or message');
    } else {
      unexpected(outcome === 'opened' ? 'exercise' : 'VhdxImage.open', error);
    }
  }
  const elapsedMs = performance.now() - started;
  sample();
  if (request.probe === 'mutate') bytes[0] = bytes[0]! ^ 1;
  if (allocationViolation) violations.push(allocationViolation);
  const arrayBufferGrowth = process.memoryUsage().arrayBuffers - arrayBuffersBefore;
  if (arrayBufferGrowth > peak) peak = arrayBufferGrowth;
  if (peak > MEMORY_LIMIT) violations.push(`array buffers grew by ${peak} bytes (limit ${MEMORY_LIMIT})`);
  // Writes are refused by the backend above; the byte comparison is the second line, on a third of the cases.
  if ((request.readSeed % 3 === 0 || request.probe === 'mutate') && !asBuffer(bytes).equals(asBuffer(original))) {
    violations.push('the image bytes changed during a read-only open');
  }
  return {
    outcome,
    code,
    message,
    readErrors,
    elapsedMs,
    peakArrayBufferGrowth: peak,
    largestAllocation,
    largestReadRequest,
    backendReads,
    virtualSize,
    logState,
    violations,
  };
}

/** Deliberate misbehaviour for the harness self-tests. */
async function probe(kind: CaseRequest['probe'], backend: { write(d: Uint8Array, p: number): Promise<void> }): Promise<void> {
  switch (kind) {
    case undefined:
    case 'mutate':
      return;
    case 'throw-plain':
      throw new TypeError('probe: plain exception');
    case 'hang':
      for (;;) {
        /* busy loop: only the hard timeout ends it */
      }
    case 'slow': {
      const until = performance.now() + 1200;
      while (performance.now() < until) {
        /* spin */
      }
      return;
    }
    case 'allocate':
      new Uint8Array(bufferLimit + 1);
      return;
    case 'write':
      await backend.write(new Uint8Array(1), 0).catch(() => undefined);
      return;
    case 'oom': {
      const hoard: string[] = [];
      for (let i = 0; ; i++) hoard.push('x'.repeat((1 << 20) + i));
    }
  }
}

// ---------------------------------------------------------------- worker entry point

/**
 * Requests and results travel over a MessagePort, but the wake-ups go through Atomics on a shared
 * counter pair (requests posted, results posted): event-loop message delivery costs milliseconds per
 * round trip on some hosts, Atomics a few microseconds. The main thread blocks in Atomics.wait with
 * the hard timeout; this worker blocks in Atomics.wait between cases.
 */
export interface SandboxData {
  control: SharedArrayBuffer;
  port: MessagePort;
}

const unhandled: string[] = [];
if (!isMainThread && parentPort) {
  installAllocationGuard();
  process.on('unhandledRejection', (reason) => {
    const e = reason as { stack?: string };
    unhandled.push(`unhandled rejection: ${e?.stack ?? String(reason)}`);
  });
  const { control, port } = workerData as SandboxData;
  const counters = new Int32Array(control);
  void (async () => {
    // Load the library once, after the allocation guard is in place.
    await runCase(null);
    let seen = 0;
    for (;;) {
      Atomics.wait(counters, 0, seen);
      seen = Atomics.load(counters, 0);
      for (let m = receiveMessageOnPort(port); m; m = receiveMessageOnPort(port)) {
        const request = m.message as CaseRequest;
        let reply: { id: number; result?: CaseResult; error?: string };
        try {
          const result = (await runCase(request))!;
          // One event-loop turn so pending rejections are reported against this case.
          await new Promise((resolve) => setImmediate(resolve));
          result.violations.push(...unhandled.splice(0));
          reply = { id: request.id, result };
        } catch (error) {
          const e = error as { stack?: string };
          reply = { id: request.id, error: `harness failure: ${e?.stack ?? String(error)}` };
        }
        port.postMessage(reply);
        Atomics.add(counters, 1, 1);
        Atomics.notify(counters, 1);
      }
    }
  })();
}
