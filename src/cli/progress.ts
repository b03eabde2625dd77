/**
 * A progress bar on stderr (bytes done, rate, ETA) for work that can run longer than a second.
 *
 *   options: { progress: PROGRESS_OPTION, ... }          // -p/--progress, and --no-progress
 *   const progress = await progressBar(values.progress as boolean | undefined, 'convert');
 *   try { ... progress.update(done, total) ... } finally { progress.stop(); }
 *
 * The first argument is the parsed option as it comes:
 *   undefined  (neither flag) automatic: the bar appears once the work has run for a second, so short
 *              commands never flash one
 *   true       (-p, --progress) the bar appears at once
 *   false      (--no-progress) no bar
 * In every mode nothing at all is drawn when stderr is not a terminal (a pipe, a file, a log), so no
 * carriage returns or escape sequences end up there. `total` may be undefined when the amount of work
 * is not known in advance (standard input): the bar then shows bytes and rate only.
 */
import { humanSize } from './args.js';
import type { OptionSpec } from './command.js';

export interface Progress {
  /** `note` is shown after the counts (e.g. what an upload sent and skipped). */
  update(done: number, total?: number, note?: string): void;
  stop(): void;
}

export const PROGRESS_OPTION: OptionSpec = {
  type: 'boolean',
  short: 'p',
  description: 'progress bar on stderr: by default shown when stderr is a terminal and the work takes over a second; -p shows it at once, --no-progress never',
};

/** How long automatic mode waits before drawing. */
export const AUTO_DELAY_MS = 1000;

const SILENT: Progress = { update: () => undefined, stop: () => undefined };

type CliProgress = typeof import('cli-progress');

/** The bar library loads only when a bar is shown: it costs more start-up time than a short command takes. */
export async function progressBar(mode: boolean | undefined, label: string, options: { unit?: 'bytes' | 'fraction' } = {}): Promise<Progress> {
  if (mode === false || !process.stderr.isTTY) return SILENT;
  const started = Date.now();
  let latest: { done: number; total: number | undefined; note: string } | null = null;
  let stopped = false;
  let bar: ReturnType<typeof makeBar> | null = null;

  const show = (lib: CliProgress): void => {
    if (stopped || bar) return;
    bar = makeBar(lib, label, started, options.unit ?? 'bytes');
    if (latest) bar.update(latest.done, latest.total, latest.note);
  };

  let timer: NodeJS.Timeout | null = null;
  if (mode === true) {
    show(await loadLibrary());
  } else {
    timer = setTimeout(() => {
      timer = null;
      loadLibrary().then(show, () => undefined);
    }, AUTO_DELAY_MS);
    timer.unref();
  }
  return {
    update(done, total, note = '') {
      latest = { done, total, note };
      bar?.update(done, total, note);
    },
    stop() {
      stopped = true;
      if (timer) clearTimeout(timer);
      bar?.stop();
    },
  };
}

async function loadLibrary(): Promise<CliProgress> {
  return (await import('cli-progress')).default;
}

const KNOWN_FORMAT = '{label} [{bar}] {percentage}% | {doneH} / {totalH} | {rate} | ETA {eta_formatted}{note}';
const UNKNOWN_FORMAT = '{label} {doneH} | {rate}{note}';
/** Work measured as a fraction (`update(0.25, 1)`): no byte counts or rate. */
const FRACTION_FORMAT = '{label} [{bar}] {percentage}% | ETA {eta_formatted}{note}';

function makeBar(lib: CliProgress, label: string, started: number, unit: 'bytes' | 'fraction'): { update(done: number, total: number | undefined, note: string): void; stop(): void } {
  const bar = new lib.SingleBar(
    {
      stream: process.stderr,
      // The format depends on whether the total is known; the library's formatter does the rest.
      format: (options, params, payload) => lib.Format.Formatter({ ...options, format: unit === 'fraction' ? FRACTION_FORMAT : payload.known ? KNOWN_FORMAT : UNKNOWN_FORMAT }, params, payload),
      // The cursor stays visible: a process killed mid-bar must not leave the terminal without one.
      hideCursor: false,
      etaBuffer: 50,
      fps: 10,
    },
    lib.Presets.shades_classic,
  );
  let running = false;
  return {
    update(done, total, note) {
      const seconds = Math.max((Date.now() - started) / 1000, 0.001);
      const known = total !== undefined;
      const payload = { label, known, doneH: humanSize(done), totalH: known ? humanSize(total) : '', rate: `${humanSize(Math.round(done / seconds))}/s`, note: note ? ` | ${note}` : '' };
      if (!running) {
        bar.start(known ? total : 0, done, payload);
        running = true;
      } else {
        if (known) bar.setTotal(total);
        bar.update(done, payload);
      }
    },
    stop() {
      if (running) bar.stop();
      running = false;
    },
  };
}
