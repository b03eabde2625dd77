import { commitImage } from '../../node/paths.js';
import { humanSize } from '../args.js';
import { Interrupted, interruptible } from '../interrupt.js';
import { printJson, writeStdout, JSON_OPTION } from '../output.js';
import { CACHE_OPTION, cacheOption } from '../cache-option.js';
import { PROGRESS_OPTION, progressBar } from '../progress.js';
import type { Command } from '../command.js';

export const commit: Command = {
  name: 'commit',
  usage: 'vhdx commit CHILD [--parent PATH] [--remove] [--json] [--cache writeback|unsafe|none] [-p|--no-progress]',
  examples: `
vhdx commit checkpoint.avhdx            # the parent now holds what the chain showed
vhdx commit checkpoint.avhdx --remove   # and the child is deleted
`,
  options: {
    parent: { type: 'string', description: 'the parent, instead of where the locator says' },
    remove: { type: 'boolean', description: 'delete CHILD once it is merged' },
    json: JSON_OPTION,
    cache: CACHE_OPTION,
    progress: PROGRESS_OPTION,
  },
  positionals: ['CHILD'],
  async run({ positionals: [child], values }) {
    const stop = interruptible();
    const progress = await progressBar(values.progress as boolean | undefined, 'commit');
    let result;
    try {
      result = await commitImage(child!, {
        ...(values.parent === undefined ? {} : { parentPath: String(values.parent) }),
        removeChild: Boolean(values.remove),
        ...cacheOption(values),
        signal: stop.signal,
        onProgress: (d, t) => progress.update(d, t),
      });
    } catch (error) {
      if (error instanceof Interrupted) error.message += '; the merge stopped at a safe point: run commit again to finish it';
      throw error;
    } finally {
      progress.stop();
      stop.dispose();
    }
    if (values.json) return await printJson({ child, ...result, removed: Boolean(values.remove) });
    await writeStdout(
      `merged ${child} into ${result.parent}: ${humanSize(result.copied)} copied, ${humanSize(result.zeroed)} zeroed${values.remove ? `; ${child} removed` : ''}\n`,
    );
  },
};
