import { unlink } from 'node:fs/promises';
import { openImage } from '../../node.js';
import { NodeFileBackend } from '../../io/node-file.js';
import { convertToRaw } from '../../ops/convert.js';
import { writeStdout } from '../output.js';
import type { Command } from '../command.js';

export const convert: Command = {
  name: 'convert',
  summary: 'convert a VHDX image to a raw disk image (sparse where unallocated)',
  usage: 'vhdx convert FILE OUT',
  examples: ['vhdx convert disk.vhdx disk.raw', 'vhdx convert disk.vhdx - | gzip > disk.raw.gz'],
  options: {},
  positionals: ['FILE', 'OUT'],
  async run({ positionals: [file, out] }) {
    const image = await openImage(file!, { readOnly: true });
    try {
      if (out === '-') {
        await convertToRaw(image, { kind: 'stream', write: writeStdout });
        return;
      }
      const output = await NodeFileBackend.open(out!, { readOnly: false, create: true });
      try {
        await convertToRaw(image, { kind: 'file', backend: output });
        await output.flush();
        await output.close();
      } catch (error) {
        // Never leave a partial output behind.
        await output.close();
        await unlink(out!).catch(() => undefined);
        throw error;
      }
    } finally {
      await image.close();
    }
  },
};
