import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { openImage } from '../../node/paths.js';
import { toVhdxError } from '../../node/file-backend.js';
import { humanSize, parseSize, usage } from '../args.js';
import { CACHE_OPTION, cacheOption } from '../cache-option.js';
import { PROGRESS_OPTION, progressBar } from '../progress.js';
import { Interrupted, interruptible, interruptibleChunks } from '../interrupt.js';
import type { Command } from '../command.js';

export const write: Command = {
  name: 'write',
  usage: 'vhdx write FILE --offset N (--pattern BYTE --length N | --from FILE|-) [--cache writeback|unsafe|none] [-p|--no-progress]',
  examples: `
vhdx write disk.vhdx --offset 1M --pattern 0xab --length 64K
vhdx write disk.vhdx --offset 0 --from mbr.bin
head -c 4096 /dev/urandom | vhdx write disk.vhdx --offset 8K --from -
`,
  options: {
    offset: { type: 'string', description: 'virtual byte offset (K, M, G, T suffixes)' },
    pattern: { type: 'string', description: 'byte value to repeat, 0-255 (decimal or 0x hex)' },
    length: { type: 'string', description: 'bytes to write with --pattern' },
    from: { type: 'string', description: 'file to copy in, or - for standard input' },
    cache: CACHE_OPTION,
    progress: PROGRESS_OPTION,
  },
  positionals: ['FILE'],
  async run({ positionals: [file], values }) {
    if (values.offset === undefined) throw usage('write needs --offset');
    const offset = parseSize(String(values.offset), '--offset');
    const hasPattern = values.pattern !== undefined;
    if (hasPattern === (values.from !== undefined)) throw usage('write needs exactly one of --pattern (with --length) or --from');
    let pattern = 0;
    let length = 0;
    if (hasPattern) {
      const text = String(values.pattern);
      pattern = /^0x[0-9a-f]+$/i.test(text) ? parseInt(text, 16) : /^\d+$/.test(text) ? Number(text) : NaN;
      if (!(pattern >= 0 && pattern <= 255)) throw usage(`--pattern must be a byte value 0-255, not ${JSON.stringify(text)}`);
      if (values.length === undefined) throw usage('--pattern needs --length');
      length = parseSize(String(values.length), '--length');
    } else if (values.length !== undefined) {
      throw usage('--length goes with --pattern (--from writes the whole input)');
    }
    const from = hasPattern ? '' : String(values.from);
    // The amount to write, for the bar: unknown for standard input and other streams.
    const total = hasPattern ? length : from === '-' ? undefined : await stat(from).then((s) => (s.isFile() ? s.size : undefined), () => undefined);

    const image = await openImage(file!, { readOnly: false, ...cacheOption(values) });
    const stop = interruptible();
    const progress = await progressBar(values.progress as boolean | undefined, 'write');
    let written = 0;
    try {
      if (hasPattern) {
        const chunk = new Uint8Array(Math.min(length, 8 * 1024 * 1024)).fill(pattern);
        while (written < length) {
          stop.check();
          const n = Math.min(chunk.length, length - written);
          await image.write(offset + written, chunk.subarray(0, n));
          written += n;
          progress.update(written, total);
        }
      } else {
        const stream = from === '-' ? process.stdin : createReadStream(from);
        const pieces = interruptibleChunks(stream, stop);
        for (;;) {
          let next: IteratorResult<Uint8Array>;
          try {
            next = await pieces.next();
          } catch (error) {
            throw error instanceof Interrupted ? error : toVhdxError(error, from);
          }
          if (next.done) break;
          // A write already started finishes: the image only ever stops between writes.
          await image.write(offset + written, next.value);
          written += next.value.length;
          progress.update(written, total);
          stop.check();
        }
      }
      stop.check();
    } catch (error) {
      if (error instanceof Interrupted) {
        progress.stop();
        await image.close(); // flushed: what was written so far is durable, the log empty
        error.file = file;
        error.message += `; ${humanSize(written)} (${written} bytes) written at offset ${offset} were kept, and the image was flushed and closed`;
      }
      throw error;
    } finally {
      progress.stop();
      await image.close();
      stop.dispose();
    }
  },
};
