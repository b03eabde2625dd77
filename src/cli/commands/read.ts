import { openImage } from '../../node.js';
import { parseSize, usage } from '../args.js';
import { writeStdout } from '../output.js';
import type { Command } from '../command.js';

export const read: Command = {
  name: 'read',
  summary: 'write bytes of the virtual disk to stdout',
  usage: 'vhdx read FILE --offset N --length N',
  examples: ['vhdx read disk.vhdx --offset 0 --length 512 | xxd', 'vhdx read disk.vhdx --offset 1M --length 4K > sector.bin'],
  options: {
    offset: { type: 'string', description: 'virtual byte offset (K, M, G, T suffixes)' },
    length: { type: 'string', description: 'number of bytes (K, M, G, T suffixes)' },
  },
  positionals: ['FILE'],
  async run({ positionals: [file], values }) {
    if (values.offset === undefined || values.length === undefined) throw usage('read needs --offset and --length');
    const offset = parseSize(String(values.offset), '--offset');
    const length = parseSize(String(values.length), '--length');
    const image = await openImage(file!, { readOnly: true });
    try {
      for await (const chunk of image.chunks({ offset, length, chunkSize: 1024 * 1024 })) await writeStdout(chunk);
    } finally {
      await image.close();
    }
  },
};
