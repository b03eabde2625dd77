import { unlink } from 'node:fs/promises';
import { NodeFileBackend } from '../../io/node-file.js';
import { VhdxImage } from '../../image/image.js';
import { convertToRaw } from '../../ops/convert.js';
import { convertToVhdx } from '../../ops/convert-to-vhdx.js';
import { rawSource, streamSource, vhdxSource, type DiskSource } from '../../ops/source.js';
import { hasSignature } from '../../format/bytes.js';
import { readFully } from '../../io/backend.js';
import { parseSize, usage } from '../args.js';
import { IMAGE_OPTIONS, imageOptions } from '../image-options.js';
import { progressBar } from '../progress.js';
import { writeStdout } from '../output.js';
import type { Command } from '../command.js';

export const convert: Command = {
  name: 'convert',
  summary: 'convert between VHDX and raw (either way, or VHDX to VHDX with a new shape)',
  usage: 'vhdx convert IN OUT [-O raw|vhdx] [--type dynamic|fixed] [--block-size N] [--logical-sector-size N] [--physical-sector-size N] [--size N] [-p]',
  examples: [
    'vhdx convert disk.vhdx disk.raw            # VHDX to raw, sparse where unallocated',
    'vhdx convert disk.raw disk.vhdx -p         # raw to dynamic VHDX, zero blocks skipped',
    'vhdx convert disk.vhdx - | gzip > disk.gz  # raw to standard output',
    'dd if=/dev/sdb | vhdx convert - disk.vhdx --size 64G --type fixed',
  ],
  options: {
    'output-format': { type: 'string', short: 'O', description: 'raw or vhdx (default: vhdx when OUT ends in .vhdx, else raw)' },
    ...IMAGE_OPTIONS,
    size: { type: 'string', description: 'size of the disk on standard input (IN is -)' },
    progress: { type: 'boolean', short: 'p', description: 'show a progress bar' },
  },
  positionals: ['IN', 'OUT'],
  async run({ positionals: [input, out], values }) {
    const format = values['output-format'] === undefined ? (/\.a?vhdx$/i.test(out!) ? 'vhdx' : 'raw') : String(values['output-format']);
    if (format !== 'raw' && format !== 'vhdx') throw usage(`-O must be raw or vhdx, not ${JSON.stringify(format)}`);
    if (out === '-' && format !== 'raw') throw usage('only raw output can go to standard output');
    const shape = imageOptions(values);
    if (format === 'raw' && Object.keys(shape).length > 0) throw usage('--type, --block-size and sector-size options apply to VHDX output only');

    const progress = await progressBar(Boolean(values.progress), 'convert');
    const onProgress = (done: number, total: number): void => progress.update(done, total);
    let inputBackend: NodeFileBackend | null = null;
    let image: VhdxImage | null = null;
    try {
      let source: DiskSource;
      if (input === '-') {
        if (values.size === undefined) throw usage('reading standard input needs --size');
        source = streamSource(process.stdin as AsyncIterable<Uint8Array>, parseSize(String(values.size), '--size'));
      } else {
        inputBackend = await NodeFileBackend.open(input!, { readOnly: true });
        const magic = new Uint8Array(8);
        await readFully(inputBackend, magic, 0);
        if (hasSignature(magic, 0, 'vhdxfile')) {
          image = await VhdxImage.open(inputBackend, { readOnly: true });
          source = vhdxSource(image);
        } else {
          source = rawSource(inputBackend, await inputBackend.size());
        }
      }
      if (out === '-') {
        if (!image) throw usage('raw to raw conversion is a copy: use cp');
        await convertToRaw(image, { kind: 'stream', write: writeStdout }, { onProgress });
        return;
      }
      if (format === 'raw' && !image) throw usage('raw to raw conversion is a copy: use cp');
      const output = await NodeFileBackend.open(out!, { readOnly: false, create: true });
      try {
        if (format === 'raw') {
          // Like qemu-img convert and cp, a raw output is left to the page cache (no fsync): it is a
          // plain copy, with no metadata whose ordering matters. `sync` makes it durable when needed.
          await convertToRaw(image!, { kind: 'file', backend: output }, { onProgress });
        } else {
          await convertToVhdx(source, output, { ...shape, onProgress }); // closes the image it made, durably
        }
        await output.close();
      } catch (error) {
        // Never leave a partial output behind.
        await output.close();
        await unlink(out!).catch(() => undefined);
        throw error;
      }
    } finally {
      progress.stop();
      if (image) await image.close();
      else await inputBackend?.close();
    }
  },
};
