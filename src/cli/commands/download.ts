import { unlinkSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { NodeFileBackend } from '../../node/file-backend.js';
import { humanSize, usage } from '../args.js';
import { azureTarget, footerSummary, nameRemoteErrors, parallelOption, targetName } from '../azure-target.js';
import { IMAGE_OPTIONS, imageOptions } from '../image-options.js';
import { PROGRESS_OPTION, progressBar } from '../progress.js';
import { discardOutput, interruptible } from '../interrupt.js';
import { JSON_OPTION, printJson, writeStdout } from '../output.js';
import type { Command } from '../command.js';

export const download: Command = {
  name: 'download',
  usage: 'vhdx download URL OUT.vhdx [--parallel N] [--type dynamic|fixed] [--block-size N] [-p|--no-progress] [--json]',
  examples: `
vhdx download 'https://ACCOUNT.blob.core.windows.net/vhds/disk.vhd?SAS' disk.vhdx
AZURE_STORAGE_CONNECTION_STRING=... vhdx download vhds/disk.vhd disk.vhdx
`,
  options: {
    parallel: { type: 'string', description: 'requests in flight at once, 1 to 64 (default 8)' },
    ...IMAGE_OPTIONS,
    progress: PROGRESS_OPTION,
    json: JSON_OPTION,
  },
  positionals: ['URL', 'OUT'],
  async run({ positionals: [url, out], values }) {
    const target = azureTarget(url!);
    const name = targetName(url!);
    const parallel = parallelOption(values.parallel);
    const shape = imageOptions(values);
    // An existing file is never replaced: a failed download would otherwise have destroyed it.
    if (await stat(out!).catch(() => null)) throw usage(`${out} exists; give a new file name`);
    const { downloadFromAzure } = await import('../../node/azure.js');
    const stop = interruptible();
    const progress = await progressBar(values.progress as boolean | undefined, 'download');
    let result;
    try {
      const output = await NodeFileBackend.open(out!, { readOnly: false, create: true });
      stop.onForcedExit(() => unlinkSync(out!));
      try {
        result = await downloadFromAzure(target, output, { ...shape, signal: stop.signal, ...(parallel ? { parallel } : {}), onProgress: (done, total) => progress.update(done, total) });
        stop.check();
        await output.close();
      } catch (error) {
        throw await discardOutput(error, out!, output);
      }
    } catch (error) {
      throw nameRemoteErrors(error, name);
    } finally {
      progress.stop();
      stop.dispose();
    }
    if (values.json) {
      await printJson({ out, ...result, footer: footerSummary(result.footer) });
      return;
    }
    await writeStdout(`${out}: ${humanSize(result.virtualSize)} virtual disk from ${result.blob} (${humanSize(result.fetchedBytes)} fetched)\n`);
  },
};
