import { humanSize, usage } from '../args.js';
import { openDisk } from '../../node/paths.js';
import { azureTarget, footerSummary, footerTime, nameRemoteErrors, parallelOption, targetName } from '../azure-target.js';
import { PROGRESS_OPTION, progressBar } from '../progress.js';
import { Interrupted, interruptible } from '../interrupt.js';
import { JSON_OPTION, printJson, writeStdout } from '../output.js';
import type { Command } from '../command.js';

export const upload: Command = {
  name: 'upload',
  usage: 'vhdx upload IMAGE URL [--resume | --existing] [--verify] [--parallel N] [-p|--no-progress] [--json]\n       vhdx upload IMAGE --print-size',
  examples: `
vhdx upload disk.vhdx 'https://ACCOUNT.blob.core.windows.net/vhds/disk.vhd?SAS'
vhdx upload disk.vhdx "$URL" --resume      # continue an interrupted upload
AZURE_STORAGE_CONNECTION_STRING=... vhdx upload disk.raw vhds/disk.vhd --verify
az disk create -g RG -n mydisk --upload-type Upload --upload-size-bytes $(vhdx upload disk.vhdx --print-size)
vhdx upload disk.vhdx "$(az disk grant-access -g RG -n mydisk --access-level Write --duration-in-seconds 86400 --query accessSas -o tsv)" --existing
`,
  options: {
    resume: { type: 'boolean', description: 'continue an interrupted upload of the same image, sending only what the blob lacks' },
    existing: { type: 'boolean', description: 'write into a page blob that exists already, of exactly the right size (a managed disk\'s upload URL); its old pages are cleared, nothing else of it is changed' },
    'print-size': { type: 'boolean', description: 'print the size in bytes of the blob the upload makes (for az disk create --upload-size-bytes) and exit' },
    verify: { type: 'boolean', description: 'read every written range back and compare it (default: the footer and a few samples)' },
    parallel: { type: 'string', description: 'page writes in flight at once, 1 to 64 (default 8)' },
    progress: PROGRESS_OPTION,
    json: JSON_OPTION,
  },
  positionals: ['IMAGE', 'URL'],
  requiredPositionals: 1,
  async run({ positionals: [image, url], values }) {
    if (values['print-size']) {
      if (url !== undefined) throw usage('--print-size takes only IMAGE: nothing is uploaded');
      const { uploadBlobSize } = await import('../../node/azure.js');
      const disk = await openDisk(image!);
      const size = disk.kind === 'raw' ? disk.size : disk.image.virtualSize;
      await disk.close();
      await writeStdout(`${uploadBlobSize(size)}\n`);
      return;
    }
    if (url === undefined) throw usage('upload needs IMAGE and URL');
    if (values.resume && values.existing) throw usage('--resume cannot be combined with --existing: an upload into an existing blob records nothing in it to resume from');
    const target = azureTarget(url);
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
        existing: Boolean(values.existing),
        verify: values.verify ? 'full' : 'sample',
        time,
        signal: stop.signal,
        ...(parallel ? { parallel } : {}),
        onProgress: (p) => progress.update(p.scanned, p.total, `sent ${humanSize(p.sent)}, skipped ${humanSize(p.skipped)}`),
      });
    } catch (error) {
      if (error instanceof Interrupted) {
        error.file = targetName(url!);
        error.message += values.existing ? '; the blob is incomplete: run the same command again' : '; the blob is incomplete: run the same command with --resume to continue';
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
