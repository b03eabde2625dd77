import { unlinkSync } from 'node:fs';
import { stat } from 'node:fs/promises';
import { NodeFileBackend } from '../../node/file-backend.js';
import { create as createImage, resolveCreateOptions } from '../../ops/create.js';
import { createChild, openImage } from '../../node/paths.js';
import { VhdxError } from '../../format/errors.js';
import { humanSize, parseSize } from '../args.js';
import { CACHE_OPTION, cacheOption } from '../cache-option.js';
import { IMAGE_OPTIONS, imageOptions } from '../image-options.js';
import { PROGRESS_OPTION, progressBar } from '../progress.js';
import { discardOutput, interruptible } from '../interrupt.js';
import { printJson, writeStdout } from '../output.js';
import type { Command } from '../command.js';

export const create: Command = {
  name: 'create',
  usage: 'vhdx create FILE SIZE [--type dynamic|fixed] [--block-size 32M] [--logical-sector-size 512|4096] [--physical-sector-size 512|4096] [--log-size 1M] [--sparse] [--force] [--json] [--cache writeback|unsafe|none] [-p|--no-progress]',
  examples: `
vhdx create disk.vhdx 40G
vhdx create disk.vhdx 10G --type fixed      # writes 10 GiB of zeros: a bar shows on a terminal
vhdx create 4kn.vhdx 1T --logical-sector-size 4096 --block-size 1M
vhdx create disk.vhdx 8G --json | jq .fileSize
vhdx create child.avhdx --parent base.vhdx   # differencing: size and sectors from the parent
`,
  options: {
    ...IMAGE_OPTIONS,
    sparse: { type: 'boolean', description: 'fixed images: leave the payload area as a hole instead of writing zeros' },
    force: { type: 'boolean', description: 'overwrite FILE if it exists' },
    parent: { type: 'string', description: 'make a differencing disk of PARENT (no SIZE: it is the parent\'s)' },
    json: { type: 'boolean', description: 'print the new image as `vhdx info --json` does' },
    cache: CACHE_OPTION,
    progress: PROGRESS_OPTION,
  },
  positionals: ['FILE', 'SIZE'],
  requiredPositionals: 1,
  async run({ positionals: [file, sizeText], values }) {
    if (values.parent !== undefined) return createChildCommand(file!, sizeText, values);
    if (sizeText === undefined) throw new VhdxError('INVALID_ARGUMENT', 'create takes FILE SIZE (or FILE --parent PARENT)');
    const options = { ...imageOptions(values), virtualSize: parseSize(sizeText!, 'SIZE'), sparse: Boolean(values.sparse) };
    resolveCreateOptions(options); // validate before touching the file system
    if (!values.force && (await stat(file!).then(() => true, () => false))) {
      throw new VhdxError('INVALID_ARGUMENT', 'already exists (use --force to overwrite)', { file });
    }
    const backend = await NodeFileBackend.open(file!, { readOnly: false, create: true, ...cacheOption(values) });
    const stop = interruptible();
    stop.onForcedExit(() => unlinkSync(file!));
    const progress = await progressBar(values.progress as boolean | undefined, 'create');
    try {
      await createImage(backend, { ...options, signal: stop.signal, onProgress: (d, t) => progress.update(d, t) });
      stop.check();
      await backend.close();
    } catch (error) {
      throw await discardOutput(error, file!, backend, { noun: 'image' });
    } finally {
      progress.stop();
      stop.dispose();
    }
    const image = await openImage(file!, { readOnly: true });
    try {
      const i = image.info();
      if (values.json) return await printJson({ file, ...i });
      const sectors = `${i.logicalSectorSize}-byte logical / ${i.physicalSectorSize}-byte physical sectors`;
      await writeStdout(`created ${file}: ${i.type}, ${humanSize(i.virtualSize)} virtual, ${humanSize(i.blockSize)} blocks, ${sectors}, file ${humanSize(i.fileSize)}\n`);
    } finally {
      await image.close();
    }
  },
};

async function createChildCommand(file: string, sizeText: string | undefined, values: Record<string, unknown>): Promise<void> {
  if (sizeText !== undefined) throw new VhdxError('INVALID_ARGUMENT', 'a differencing disk takes its size from the parent: give no SIZE with --parent');
  const shape = imageOptions(values as Parameters<typeof imageOptions>[0]);
  for (const key of ['type', 'logicalSectorSize', 'physicalSectorSize'] as const) {
    if (key in shape) throw new VhdxError('INVALID_ARGUMENT', `--parent: the ${key === 'type' ? 'type is differencing' : 'sector sizes are the parent\'s'}; only --block-size and --log-size apply`);
  }
  if (!values.force && (await stat(file).then(() => true, () => false))) {
    throw new VhdxError('INVALID_ARGUMENT', 'already exists (use --force to overwrite)', { file });
  }
  await createChild(file, String(values.parent), { ...shape, ...cacheOption(values as Parameters<typeof cacheOption>[0]) });
  const image = await openImage(file, { readOnly: true });
  try {
    const i = image.info();
    if (values.json) return await printJson({ file, ...i });
    await writeStdout(`created ${file}: differencing, ${humanSize(i.virtualSize)} virtual, ${humanSize(i.blockSize)} blocks, parent ${image.parent?.backend.name}\n`);
  } finally {
    await image.close();
  }
}
