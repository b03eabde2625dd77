import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { NodeFileBackend } from '../../node/file-backend.js';
import { create } from '../../ops/create.js';
import { openImage } from '../../node/paths.js';
import { VhdxError } from '../../format/errors.js';
import { writeStdout } from '../output.js';
import type { Command } from '../command.js';
import { info } from './info.js';
import { map } from './map.js';

const MiB = 1024 * 1024;

/** A recognizable pattern: every 4-byte word holds its own virtual offset / 4, salted. */
export function demoPattern(offset: number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) {
    const at = offset + i;
    out[i] = (Math.floor(at / 4) * 2654435761 + (at % 4) * 97) & 0xff;
  }
  return out;
}

export const demo: Command = {
  name: 'demo',
  usage: 'vhdx demo [--keep]',
  examples: `
vhdx demo
vhdx demo --keep
`,
  options: { keep: { type: 'boolean', description: 'keep the sample image and print its path' } },
  positionals: [],
  async run({ values }) {
    const dir = await mkdtemp(join(tmpdir(), 'vhdx-demo-'));
    const path = join(dir, 'sample.vhdx');
    try {
      const writes = [
        { offset: 0, data: demoPattern(0, 64 * 1024) },
        { offset: 5 * MiB + 123, data: demoPattern(5 * MiB + 123, 300_001) },
        { offset: 63 * MiB - 4096, data: demoPattern(63 * MiB - 4096, 4096) },
      ];
      const backend = await NodeFileBackend.open(path, { readOnly: false, create: true });
      await create(backend, { virtualSize: 63 * MiB, blockSize: 2 * MiB, creator: 'vhdx demo' });
      await backend.close();
      await writeStdout(`created ${path}: 63 MiB dynamic image, 2 MiB blocks\n`);

      const writable = await openImage(path, { readOnly: false });
      for (const w of writes) await writable.write(w.offset, w.data);
      await writable.flush();
      await writable.close();
      await writeStdout(`wrote a pattern in ${writes.length} ranges (${writes.reduce((n, w) => n + w.data.length, 0)} bytes), flushed and closed\n`);

      const image = await openImage(path, { readOnly: true });
      try {
        for (const w of writes) {
          const got = await image.read(w.offset, w.data.length);
          if (!got.every((b, i) => b === w.data[i])) {
            throw new VhdxError('BAD_BAT', `demo read at ${w.offset} did not return the written pattern`, { file: path });
          }
        }
        const hole = await image.read(20 * MiB, MiB);
        if (!hole.every((b) => b === 0)) throw new VhdxError('BAD_BAT', 'demo read of an unallocated block was not zeros', { file: path });
      } finally {
        await image.close();
      }
      await writeStdout('reopened and verified: every written range reads back exactly; unallocated blocks read as zeros\n\n');
      await info.run({ positionals: [path], values: {} });
      await writeStdout('\n');
      await map.run({ positionals: [path], values: {} });
      if (values.keep) await writeStdout(`\nsample image kept at ${path}\n`);
    } finally {
      if (!values.keep) await rm(dir, { recursive: true, force: true });
    }
  },
};
