/**
 * The main-thread side of the fuzz harness: ships each mutated image to a worker (sandbox.ts), waits
 * for its verdict with a hard timeout, and turns every violation into a thrown Error so fast-check
 * reports the counterexample with its seed and path.
 *
 * A case passes only when all of these hold (see sandbox.ts for how each is measured):
 * - open ended in a VhdxError, or it opened and every read either returned bytes consistent with the
 *   extent map or threw a VhdxError; no other exception anywhere;
 * - open + reads took at most SOFT_LIMIT_MS (and the worker answered before HARD_LIMIT_MS);
 * - no single allocation or backend read larger than both the file and 64 MiB, no more than 256 MiB
 *   of buffer growth, and the worker did not run out of its 512 MiB heap;
 * - nothing was written or truncated and the image bytes are unchanged.
 *
 * Replaying a failure: FUZZ_SEED=<seed> FUZZ_PATH=<path> (both printed by fast-check) with
 * --test-name-pattern selecting the property. FUZZ_SCALE multiplies every property's runs (and budget).
 */
import type { TestContext } from 'node:test';
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import fc from 'fast-check';
import { BASE_NAMES, baseImage, type BaseImage } from './images.js';
import { mutate, type Mutation } from './mutations.js';
import { SOFT_LIMIT_MS, type CaseRequest, type CaseResult, type SandboxData } from './sandbox.js';

export { SOFT_LIMIT_MS };
/** A worker that has not answered by then is hung: it is killed and replaced. */
export const HARD_LIMIT_MS = 3500;
const HEAP_LIMIT_MB = 512;

export type Probe = CaseRequest['probe'];

function hungResult(violation: string): CaseResult {
  return {
    outcome: 'rejected',
    code: null,
    message: null,
    readErrors: {},
    elapsedMs: Number.NaN,
    peakArrayBufferGrowth: 0,
    largestAllocation: 0,
    largestReadRequest: 0,
    backendReads: 0,
    virtualSize: null,
    logState: null,
    violations: [violation],
  };
}

export class Sandbox {
  private worker: { thread: Worker; counters: Int32Array; port: MessagePort; errors: string[]; hasInput: boolean } | null = null;
  private nextId = 1;
  /** Images travel through one shared, reused buffer: no multi-MiB allocation or copy per message. */
  private input = new SharedArrayBuffer(0);
  /** Cases run by this sandbox, and their outcomes ('opened' or the error code), since the last reset. */
  cases = 0;
  tally = new Map<string, number>();
  slowestMs = 0;

  private spawn(): NonNullable<Sandbox['worker']> {
    const control = new SharedArrayBuffer(8);
    const { port1, port2 } = new MessageChannel();
    const data: SandboxData = { control, port: port2 };
    const thread = new Worker(new URL('./sandbox.js', import.meta.url), {
      workerData: data,
      transferList: [port2],
      resourceLimits: { maxOldGenerationSizeMb: HEAP_LIMIT_MB },
    });
    const errors: string[] = [];
    thread.on('error', (error: Error & { code?: string }) => {
      errors.push(error.code === 'ERR_WORKER_OUT_OF_MEMORY' ? `ran out of its ${HEAP_LIMIT_MB} MiB heap` : `crashed: ${error.stack ?? error.message}`);
    });
    thread.unref();
    port1.unref();
    return { thread, counters: new Int32Array(control), port: port1, errors, hasInput: false };
  }

  /**
   * A view of `length` bytes of the shared input buffer, to build the next case in place (mutate's
   * `into`); `run` then sends it without copying. Valid until the next call.
   */
  stage(length: number): Uint8Array {
    if (this.input.byteLength < length) {
      this.input = new SharedArrayBuffer(Math.max(length, 2 * this.input.byteLength));
      if (this.worker) this.worker.hasInput = false;
    }
    return new Uint8Array(this.input, 0, length);
  }

  /** Runs one case, blocking this thread until the worker answers or HARD_LIMIT_MS passes. */
  async run(bytes: Uint8Array, readSeed: number, probe?: Probe): Promise<CaseResult> {
    if (bytes.buffer !== this.input || bytes.byteOffset !== 0) this.stage(bytes.length).set(bytes);
    const worker = (this.worker ??= this.spawn());
    const id = this.nextId++;
    const request: CaseRequest = { id, length: bytes.length, readSeed };
    if (!worker.hasInput) {
      request.shared = this.input;
      worker.hasInput = true;
    }
    if (probe !== undefined) request.probe = probe;
    const answered = Atomics.load(worker.counters, 1);
    worker.port.postMessage(request);
    Atomics.add(worker.counters, 0, 1);
    Atomics.notify(worker.counters, 0);
    const deadline = Date.now() + HARD_LIMIT_MS;
    while (Atomics.load(worker.counters, 1) === answered && Date.now() < deadline) {
      Atomics.wait(worker.counters, 1, answered, Math.max(1, deadline - Date.now()));
    }
    for (let m = receiveMessageOnPort(worker.port); m; m = receiveMessageOnPort(worker.port)) {
      const reply = m.message as { id: number; result?: CaseResult; error?: string };
      if (reply.id !== id) continue;
      if (reply.result) return reply.result;
      throw new Error(reply.error ?? 'harness failure');
    }
    // No answer: hung, or the worker died (let its 'error' event arrive before saying which).
    this.worker = null;
    await worker.thread.terminate();
    await new Promise((resolve) => setImmediate(resolve));
    const why = worker.errors.length > 0 ? `the case ${worker.errors.join('; ')}` : `no answer after ${HARD_LIMIT_MS} ms: hung (worker killed)`;
    return hungResult(why);
  }

  async close(): Promise<void> {
    const worker = this.worker;
    this.worker = null;
    if (worker) await worker.thread.terminate();
  }

  resetStats(): void {
    this.cases = 0;
    this.tally.clear();
    this.slowestMs = 0;
  }
}

/** Everything wrong with a result, empty when the case passed. */
export function problemsOf(result: CaseResult): string[] {
  const problems = [...result.violations];
  if (result.elapsedMs > SOFT_LIMIT_MS) problems.push(`took ${result.elapsedMs.toFixed(0)} ms (limit ${SOFT_LIMIT_MS} ms)`);
  return problems;
}

/**
 * Runs one mutated image and throws (with `label`, normally the mutation's description) unless it
 * ended in a typed error or valid reads within every limit.
 */
export async function checkCase(sandbox: Sandbox, bytes: Uint8Array, label: string, readSeed = 1): Promise<CaseResult> {
  const result = await sandbox.run(bytes, readSeed);
  sandbox.cases++;
  const key = result.outcome === 'opened' ? `opened(${result.logState ?? '?'})` : (result.code ?? 'failed');
  sandbox.tally.set(key, (sandbox.tally.get(key) ?? 0) + 1);
  if (result.elapsedMs > sandbox.slowestMs) sandbox.slowestMs = result.elapsedMs;
  const problems = problemsOf(result);
  if (problems.length > 0) {
    const outcome = result.outcome === 'opened' ? 'opened' : result.code ? `rejected with ${result.code}: ${result.message}` : 'no verdict';
    throw new Error(`${label}\n  outcome: ${outcome}\n  ${problems.join('\n  ')}`);
  }
  return result;
}

/** Applies `mutations` to a copy of the base image (built in the sandbox's shared buffer) and checks it. */
export function checkMutated(sandbox: Sandbox, base: BaseImage, mutations: Mutation[], label: string, readSeed: number, reseal = false): Promise<CaseResult> {
  const bytes = mutate(base.bytes, base.layout, mutations, reseal, sandbox.stage(base.bytes.length));
  return checkCase(sandbox, bytes, label, readSeed);
}

const SCALE = Number(process.env.FUZZ_SCALE ?? '1') || 1;
const SEED = process.env.FUZZ_SEED === undefined ? undefined : Number(process.env.FUZZ_SEED);
const PATH = process.env.FUZZ_PATH;

/**
 * fc.assert with the suite's settings, reporting how many cases ran and how they ended. A property that
 * cannot finish its runs within `budgetMs` fails (markInterruptAsFailure), which also caps the time
 * spent shrinking a counterexample.
 */
export async function fuzz<Ts extends [unknown, ...unknown[]]>(
  t: TestContext,
  sandbox: Sandbox,
  property: fc.IAsyncProperty<Ts>,
  numRuns: number,
  budgetMs = 20_000,
): Promise<void> {
  sandbox.resetStats();
  const started = Date.now();
  const params: fc.Parameters<Ts> = {
    numRuns: Math.max(1, Math.round(numRuns * SCALE)),
    interruptAfterTimeLimit: budgetMs * SCALE,
    markInterruptAsFailure: true,
    includeErrorInReport: true,
  };
  if (SEED !== undefined) params.seed = SEED;
  if (PATH !== undefined) params.path = PATH;
  try {
    await fc.assert(property, params);
  } finally {
    const outcomes = [...sandbox.tally.entries()].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
    t.diagnostic(`${sandbox.cases} cases in ${Date.now() - started} ms (slowest ${sandbox.slowestMs.toFixed(0)} ms); ${outcomes}`);
  }
}

/**
 * The common property: one hostile mutation from `mutation` applied to each base image in turn; every
 * case ends in the typed error or in valid reads (`checkMutated`), `label` naming the kind of damage.
 */
export function fuzzEachBase(t: TestContext, sandbox: Sandbox, mutation: fc.Arbitrary<Mutation>, label: string, numRuns: number): Promise<void> {
  return fuzz(
    t,
    sandbox,
    fc.asyncProperty(fc.constantFrom(...BASE_NAMES), mutation, fc.nat(), async (name, m, readSeed) => {
      await checkMutated(sandbox, await baseImage(name), [m], `${name} ${label}`, readSeed);
    }),
    numRuns,
  );
}
