import { openDisk } from '../../node/paths.js';
import { VhdxError } from '../../format/errors.js';
import type { VhdImage } from '../../vhd/image.js';
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
vhdx read old.vhd --offset 0 --length 512 | xxd          # a VHD too
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
    const disk = await openDisk(file!, { ...parentOptions(values), ...httpOptions(values) });
    if (disk.kind === 'raw') {
      await disk.close();
      throw new VhdxError('NOT_VHDX', 'not a VHDX file (no "vhdxfile" signature at offset 0) nor a VHD (no footer): read a raw file as it is', { file: shownPath(file!), offset: 0 });
    }
    const chunks = disk.kind === 'vhdx' ? disk.image.chunks({ offset, length, chunkSize: MiB }) : vhdChunks(disk.image, offset, length);
    const stop = interruptible();
    const progress = await progressBar(values.progress as boolean | undefined, 'read');
    try {
      let done = 0;
      for await (const chunk of chunks) {
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
      await disk.close();
    }
  },
};

const MiB = 1024 * 1024;

/** A VHD's bytes in 1 MiB pieces; a range outside the disk is refused before anything is read. */
async function* vhdChunks(image: VhdImage, offset: number, length: number): AsyncGenerator<Uint8Array> {
  if (offset + length > image.virtualSize) {
    throw new VhdxError('OUT_OF_RANGE', `range [${offset}, ${offset + length}) is outside the ${image.virtualSize}-byte virtual disk`, { file: image.backend.name });
  }
  for (let at = offset; at < offset + length; at += MiB) yield await image.read(at, Math.min(MiB, offset + length - at));
}
