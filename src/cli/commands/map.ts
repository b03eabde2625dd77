import { openImage } from '../../node.js';
import { humanSize } from '../args.js';
import { printJson, writeStdout } from '../output.js';
import type { Command } from '../command.js';

export const map: Command = {
  name: 'map',
  summary: 'show where each range of the virtual disk lives',
  usage: 'vhdx map FILE [--json]',
  examples: ['vhdx map disk.vhdx', "vhdx map disk.vhdx --json | jq '.[] | select(.kind == \"data\")'"],
  options: { json: { type: 'boolean', description: 'machine-readable output' } },
  positionals: ['FILE'],
  async run({ positionals: [file], values }) {
    const image = await openImage(file!, { readOnly: true });
    try {
      const extents = image.extents();
      if (values.json) return await printJson(extents);
      // Offsets and lengths exactly, in hex; the size again in IEC units for reading at a glance.
      const lines = [`${'offset'.padStart(16)} ${'length'.padStart(16)} ${'size'.padStart(10)}  ${'kind'.padEnd(11)} ${'state'.padEnd(17)} file offset`];
      for (const e of extents) {
        lines.push(
          `${hex(e.offset)} ${hex(e.length)} ${humanSize(e.length).padStart(10)}  ${e.kind.padEnd(11)} ${e.state.padEnd(17)} ${e.fileOffset === undefined ? '-' : hex(e.fileOffset).trim()}`,
        );
      }
      const data = extents.filter((e) => e.kind === 'data').reduce((n, e) => n + e.length, 0);
      lines.push(`${extents.length} extents; ${humanSize(data)} of ${humanSize(image.virtualSize)} stored in the file`);
      await writeStdout(lines.join('\n') + '\n');
    } finally {
      await image.close();
    }
  },
};

function hex(n: number): string {
  return `0x${n.toString(16)}`.padStart(16);
}
