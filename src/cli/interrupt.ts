/**
 * Stopping cleanly on Ctrl-C (SIGINT), SIGTERM and SIGHUP, so an interrupted command leaves nothing
 * half done: a written image is flushed and closed, a partial conversion output is removed.
 *
 *   const stop = interruptible();
 *   try {
 *     stop.onForcedExit(() => unlinkSync(out));    // optional: a second signal exits at once
 *     await someOp({ signal: stop.signal });        // library ops stop at their next safe point
 *     const chunk = await stop.race(slowPromise);   // cut a wait short (reading stdin, a slow pipe)
 *     stop.check();                                 // throws Interrupted if a signal has arrived
 *   } finally {
 *     stop.dispose();
 *   }
 *
 * The first signal aborts `signal` (its reason is an `Interrupted` error) and the command unwinds
 * through its normal error path; `main` prints the error as one line and exits 128 + the signal number
 * (130 for SIGINT, 143 for SIGTERM). A second signal while the command is still cleaning up runs the
 * forced-exit callbacks (synchronously) and exits at once with the same status.
 */
import { constants } from 'node:os';
import { unlink } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { VhdxError } from '../format/errors.js';

const SIGNALS: NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** Thrown (and used as the abort reason) when a command is stopped by a signal. */
export class Interrupted extends Error {
  readonly signalName: NodeJS.Signals;
  /** 128 + the signal number, as a shell reports a process killed by it. */
  readonly exitCode: number;
  /** The file the message is about, when there is one (set by the command). */
  file: string | undefined;

  constructor(signalName: NodeJS.Signals) {
    super(`interrupted by ${signalName}`);
    this.name = 'Interrupted';
    this.signalName = signalName;
    this.exitCode = 128 + (constants.signals[signalName] ?? 0);
  }
}

export interface Interrupt {
  /** Aborted when the first signal arrives; its reason is the `Interrupted` error. */
  readonly signal: AbortSignal;
  /** The `Interrupted` error once a signal has arrived, else null. */
  readonly interrupted: Interrupted | null;
  /** Throws the `Interrupted` error if a signal has arrived. */
  check(): void;
  /** Settles like `work`, or rejects with the `Interrupted` error as soon as a signal arrives. */
  race<T>(work: Promise<T>): Promise<T>;
  /** A synchronous cleanup for a forced exit (second signal), e.g. removing a partial output. */
  onForcedExit(cleanup: () => void): void;
  /** Removes the signal handlers (signals regain their default action). */
  dispose(): void;
}

export function interruptible(): Interrupt {
  const controller = new AbortController();
  const forced: (() => void)[] = [];
  let interrupted: Interrupted | null = null;
  const handler = (name: NodeJS.Signals): void => {
    if (interrupted) {
      for (const cleanup of forced) {
        try {
          cleanup();
        } catch {
          // Exiting anyway: nothing more can be done.
        }
      }
      process.stderr.write(`\nvhdx: ${name} again: exiting at once\n`);
      process.exit(128 + (constants.signals[name] ?? 0));
    }
    interrupted = new Interrupted(name);
    controller.abort(interrupted);
  };
  for (const s of SIGNALS) process.on(s, handler);
  const aborted = new Promise<never>((_, reject) => controller.signal.addEventListener('abort', () => reject(controller.signal.reason), { once: true }));
  aborted.catch(() => undefined); // observed only through race()
  return {
    signal: controller.signal,
    get interrupted() {
      return interrupted;
    },
    check() {
      if (interrupted) throw interrupted;
    },
    race<T>(work: Promise<T>): Promise<T> {
      if (interrupted) {
        work.catch(() => undefined);
        return Promise.reject(interrupted);
      }
      return Promise.race([work, aborted]);
    },
    onForcedExit(cleanup) {
      forced.push(cleanup);
    },
    dispose() {
      for (const s of SIGNALS) process.off(s, handler);
    },
  };
}

/**
 * The chunks of a stream (standard input or a file), each wait cut short by a signal. When the
 * iteration stops early (a signal, an error, the consumer breaking off) the stream is destroyed, so
 * a half-read standard input does not keep the process alive.
 */
export async function* interruptibleChunks(stream: Readable, stop: Interrupt): AsyncGenerator<Uint8Array> {
  const iterator = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
  let finished = false;
  try {
    for (;;) {
      const next = await stop.race(iterator.next());
      if (next.done) {
        finished = true;
        return;
      }
      const piece = next.value;
      yield new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength);
    }
  } finally {
    if (!finished) stream.destroy();
  }
}

/**
 * A new output file `out` (open as `output`) that a failure or a signal left unfinished: closed and
 * removed, so no partial image is ever left behind (unless `removable` is false: a device or other
 * non-regular OUT stays in place), and the error says so. Returns the error, to be thrown.
 */
export async function discardOutput(error: unknown, out: string, output: { close(): Promise<void> }, options: { removable?: boolean; noun?: string } = {}): Promise<unknown> {
  const removable = options.removable ?? true;
  const noun = options.noun ?? 'output';
  await output.close().catch(() => undefined);
  if (removable) await unlink(out).catch(() => undefined);
  if (error instanceof Interrupted) {
    error.file = out;
    error.message += removable ? `; the partial ${noun} was removed` : `; the ${noun} is incomplete`;
  } else if (error instanceof VhdxError && removable && error.file !== out) {
    // A failure elsewhere (the input, the network): the message names that, so add what became of OUT.
    error.message += `; ${out} was removed`;
  }
  return error;
}
