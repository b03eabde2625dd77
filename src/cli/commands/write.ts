import { createReadStream } from 'node:fs';
import { openImage } from '../../node.js';
import { toVhdxError } from '../../io/node-file.js';
import { parseSize, usage } from '../args.js';
import type { Command } from '../command.js';

export const write: Command = {
  name: 'write',
  summary: 'write bytes into the virtual disk (a repeated byte, or the contents of a file or stdin)',
  usage: 'vhdx write FILE --offset N (--pattern BYTE --length N | --from FILE|-)',
  examples: ['vhdx write disk.vhdx --offset 1M --pattern 0xab --length 64K', 'vhdx write disk.vhdx --offset 0 --from mbr.bin', 'head -c 4096 /dev/urandom | vhdx write disk.vhdx --offset 8K --from -'],
  options: {
    offset: { type: 'string', description: 'virtual byte offset (K, M, G, T suffixes)' },
    pattern: { type: 'string', description: 'byte value to repeat, 0-255 (decimal or 0x hex)' },
    length: { type: 'string', description: 'bytes to write with --pattern' },
    from: { type: 'string', description: 'file to copy in, or - for standard input' },
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
    }
    const image = await openImage(file!, { readOnly: false });
    try {
      if (hasPattern) {
        const chunk = new Uint8Array(Math.min(length, 8 * 1024 * 1024)).fill(pattern);
        for (let done = 0; done < length; done += chunk.length) {
          await image.write(offset + done, chunk.subarray(0, Math.min(chunk.length, length - done)));
        }
      } else {
        const from = String(values.from);
        const stream = from === '-' ? process.stdin : createReadStream(from);
        let position = offset;
        const pieces = (stream as AsyncIterable<Buffer>)[Symbol.asyncIterator]();
        for (;;) {
          let next: IteratorResult<Buffer>;
          try {
            next = await pieces.next();
          } catch (error) {
            throw toVhdxError(error, from);
          }
          if (next.done) break;
          const piece = next.value;
          await image.write(position, new Uint8Array(piece.buffer, piece.byteOffset, piece.byteLength));
          position += piece.byteLength;
        }
      }
    } finally {
      await image.close();
    }
  },
};
