import { openImage } from '../../node/paths.js';
import { HTTP_OPTIONS, httpOptions } from '../http-options.js';
import { PARENT_OPTIONS, parentOptions } from '../parent-options.js';
import { parseSize, usage } from '../args.js';
import { shownPath, writeStdout } from '../output.js';
import { PROGRESS_OPTION, progressBar } from '../progress.js';
import { Interrupted, interruptible } from '../interrupt.js';
import type { Command } from '../command.js';

export const read: Command = {
  name: 'read',
  usage: 'vhdx read FILE --offset N --length N [-p|--no-progress]',
  examples: `
vhdx read disk.vhdx --offset 0 --length 512 | xxd
vhdx read disk.vhdx --offset 1M --length 4K > sector.bin
vhdx read disk.vhdx --offset 0 --length 10G | sha256sum   # a bar on the terminal while it runs
`,
  options: {
    ...PARENT_OPTIONS,
    ...HTTP_OPTIONS,
    offset: { type: 'string', description: 'virtual byte offset (K, M, G, T suffixes)' },
    length: { type: 'string', description: 'number of bytes (K, M, G, T suffixes)' },
    progress: PROGRESS_OPTION,
  },
  positionals: ['FILE'],
  async run({ positionals: [file], values }) {
    if (values.offset === undefined || values.length === undefined) throw usage('read needs --offset and --length');
    const offset = parseSize(String(values.offset), '--offset');
    const length = parseSize(String(values.length), '--length');
    const image = await openImage(file!, { readOnly: true, ...parentOptions(values), ...httpOptions(values) });
    const stop = interruptible();
    const progress = await progressBar(values.progress as boolean | undefined, 'read');
    try {
      let done = 0;
      for await (const chunk of image.chunks({ offset, length, chunkSize: 1024 * 1024 })) {
        await stop.race(writeStdout(chunk)); // a reader that stopped reading does not hold Ctrl-C up
        done += chunk.length;
        progress.update(done, length);
        stop.check();
      }
    } catch (error) {
      if (error instanceof Interrupted) error.file = shownPath(file!);
      throw error;
    } finally {
      progress.stop();
      stop.dispose();
      await image.close();
    }
  },
};
