import { stat, unlink } from 'node:fs/promises';
import { NodeFileBackend } from '../../io/node-file.js';
import { create as createImage, resolveCreateOptions } from '../../ops/create.js';
import { VhdxError } from '../../format/errors.js';
import { humanSize, parseSize } from '../args.js';
import { IMAGE_OPTIONS, imageOptions } from '../image-options.js';
import { progressBar } from '../progress.js';
import { writeStdout } from '../output.js';
import type { Command } from '../command.js';

export const create: Command = {
  name: 'create',
  summary: 'create a new empty image (dynamic by default, as Hyper-V)',
  usage: 'vhdx create FILE SIZE [--type dynamic|fixed] [--block-size 32M] [--logical-sector-size 512|4096] [--physical-sector-size 512|4096] [--log-size 1M] [--sparse] [--force] [-p]',
  examples: ['vhdx create disk.vhdx 40G', 'vhdx create disk.vhdx 10G --type fixed -p', 'vhdx create 4kn.vhdx 1T --logical-sector-size 4096 --block-size 1M'],
  options: {
    ...IMAGE_OPTIONS,
    sparse: { type: 'boolean', description: 'fixed images: leave the payload area as a hole instead of writing zeros' },
    force: { type: 'boolean', description: 'overwrite FILE if it exists' },
    progress: { type: 'boolean', short: 'p', description: 'show a progress bar' },
  },
  positionals: ['FILE', 'SIZE'],
  async run({ positionals: [file, sizeText], values }) {
    const options = { ...imageOptions(values), virtualSize: parseSize(sizeText!, 'SIZE'), sparse: Boolean(values.sparse) };
    resolveCreateOptions(options); // validate before touching the file system
    if (!values.force && (await stat(file!).then(() => true, () => false))) {
      throw new VhdxError('INVALID_ARGUMENT', 'already exists (use --force to overwrite)', { file });
    }
    const backend = await NodeFileBackend.open(file!, { readOnly: false, create: true });
    const progress = await progressBar(Boolean(values.progress), 'create');
    try {
      await createImage(backend, { ...options, onProgress: (d, t) => progress.update(d, t) });
      await backend.close();
    } catch (error) {
      await backend.close();
      await unlink(file!).catch(() => undefined);
      throw error;
    } finally {
      progress.stop();
    }
    await writeStdout(`created ${file}: ${options.type ?? 'dynamic'}, ${humanSize(options.virtualSize)}\n`);
  },
};
