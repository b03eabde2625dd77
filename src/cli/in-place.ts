/**
 * The frame of a command that changes an image in place (`compact`, `resize`): the file opened (the
 * write lock taken unless read-only), a progress bar, and a signal that stops the work at its next safe
 * point. An interruption is reported naming the file, with what the stop left behind.
 */
import { NodeFileBackend } from '../node/file-backend.js';
import type { CacheMode } from '../io/backend.js';
import { Interrupted, interruptible } from './interrupt.js';
import { progressBar } from './progress.js';

export interface InPlaceWork {
  backend: NodeFileBackend;
  signal: AbortSignal;
  onProgress: (done: number, total: number) => void;
}

export async function inPlace<T>(
  file: string,
  open: { readOnly: boolean; cache?: CacheMode },
  progressMode: boolean | undefined,
  label: string,
  whenStopped: string,
  work: (w: InPlaceWork) => Promise<T>,
): Promise<T> {
  const stop = interruptible();
  const progress = await progressBar(progressMode, label);
  try {
    const backend = await NodeFileBackend.open(file, open);
    try {
      return await work({ backend, signal: stop.signal, onProgress: (done, total) => progress.update(done, total) });
    } finally {
      await backend.close();
    }
  } catch (error) {
    if (error instanceof Interrupted) {
      error.file = file;
      error.message += `; ${whenStopped}`;
    }
    throw error;
  } finally {
    progress.stop();
    stop.dispose();
  }
}
