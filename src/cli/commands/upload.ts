import { humanSize } from '../args.js';
import { azureTarget, footerSummary, footerTime, nameRemoteErrors, parallelOption, targetName } from '../azure-target.js';
import { PROGRESS_OPTION, progressBar } from '../progress.js';
import { Interrupted, interruptible } from '../interrupt.js';
import { JSON_OPTION, printJson, writeStdout } from '../output.js';
import type { Command } from '../command.js';

export const upload: Command = {
  name: 'upload',
  usage: 'vhdx upload IMAGE URL [--resume] [--verify] [--parallel N] [-p|--no-progress] [--json]',
  examples: `
vhdx upload disk.vhdx 'https://ACCOUNT.blob.core.windows.net/vhds/disk.vhd?SAS'
vhdx upload disk.vhdx "$URL" --resume      # continue an interrupted upload
AZURE_STORAGE_CONNECTION_STRING=... vhdx upload disk.raw vhds/disk.vhd --verify
`,
  options: {
    resume: { type: 'boolean', description: 'continue an interrupted upload of the same image, sending only what the blob lacks' },
    verify: { type: 'boolean', description: 'read every written range back and compare it (default: the footer and a few samples)' },
    parallel: { type: 'string', description: 'page writes in flight at once, 1 to 64 (default 8)' },
    progress: PROGRESS_OPTION,
    json: JSON_OPTION,
  },
  positionals: ['IMAGE', 'URL'],
  async run({ positionals: [image, url], values }) {
    const target = azureTarget(url!);
    const parallel = parallelOption(values.parallel);
    const time = footerTime();
    // The storage client loads here only: other commands never pay for it.
    const { uploadToAzure } = await import('../../node/azure.js');
    const stop = interruptible();
    const progress = await progressBar(values.progress as boolean | undefined, 'upload');
    let result;
    try {
      result = await uploadToAzure(image!, target, {
        resume: Boolean(values.resume),
        verify: values.verify ? 'full' : 'sample',
        time,
        signal: stop.signal,
        ...(parallel ? { parallel } : {}),
        onProgress: (p) => progress.update(p.scanned, p.total, `sent ${humanSize(p.sent)}, skipped ${humanSize(p.skipped)}`),
      });
    } catch (error) {
      if (error instanceof Interrupted) {
        error.file = targetName(url!);
        error.message += '; the blob is incomplete: run the same command with --resume to continue';
      }
      throw nameRemoteErrors(error, targetName(url!));
    } finally {
      progress.stop();
      stop.dispose();
    }
    if (values.json) {
      await printJson({ image, ...result, footer: footerSummary(result.footer) });
      return;
    }
    const resumed = result.resumed ? `, ${humanSize(result.presentBytes)} already there` : '';
    await writeStdout(
      `${result.blob}: ${humanSize(result.blobSize)} fixed VHD, ${humanSize(result.dataBytes)} of data; sent ${humanSize(result.sentBytes)}${resumed}; ` +
        `${result.pageRanges} page ranges checked, contents verified (${result.verified === 'full' ? 'all' : result.verified === 'sample' ? 'sampled' : 'ranges only'})\n`,
    );
  },
};
