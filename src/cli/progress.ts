/** A progress bar on stderr (bytes done, rate, ETA), shown only when asked for and stderr is a terminal. */
import { humanSize } from './args.js';

export interface Progress {
  update(done: number, total: number): void;
  stop(): void;
}

const SILENT: Progress = { update: () => undefined, stop: () => undefined };

/** The bar library loads only when a bar is shown: it costs more start-up time than a short command takes. */
export async function progressBar(enabled: boolean, label: string): Promise<Progress> {
  if (!enabled || !process.stderr.isTTY) return SILENT;
  const { default: cliProgress } = await import('cli-progress');
  const started = Date.now();
  const bar = new cliProgress.SingleBar(
    {
      stream: process.stderr,
      format: `${label} [{bar}] {percentage}% | {doneH} / {totalH} | {rate} | ETA {eta_formatted}`,
      hideCursor: true,
      etaBuffer: 50,
      fps: 10,
    },
    cliProgress.Presets.shades_classic,
  );
  let startedBar = false;
  return {
    update(done, total) {
      const seconds = Math.max((Date.now() - started) / 1000, 0.001);
      const payload = { doneH: humanSize(done), totalH: humanSize(total), rate: `${humanSize(Math.round(done / seconds))}/s` };
      if (!startedBar) {
        bar.start(total, done, payload);
        startedBar = true;
      } else {
        bar.setTotal(total);
        bar.update(done, payload);
      }
    },
    stop() {
      if (startedBar) bar.stop();
    },
  };
}
