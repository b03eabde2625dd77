import { openImage } from '../../node/paths.js';
import { PARENT_OPTIONS, parentOptions } from '../parent-options.js';
import { humanSize } from '../args.js';
import { printJson, writeStdout, JSON_OPTION } from '../output.js';
import type { Command } from '../command.js';

export const map: Command = {
  name: 'map',
  usage: 'vhdx map FILE [--json] [--parent PATH]',
  examples: `
vhdx map disk.vhdx
vhdx map disk.vhdx --json | jq '.[] | select(.kind == "data")'
`,
  options: {
    json: JSON_OPTION,
    ...PARENT_OPTIONS,
  },
  positionals: ['FILE'],
  async run({ positionals: [file], values }) {
    const image = await openImage(file!, { readOnly: true, ...parentOptions(values) });
    try {
      // A differencing disk: which layer of the chain serves each run.
      const chain = image.chain();
      const extents = chain.length > 1 ? image.resolvedExtents() : image.extents();
      if (values.json) return await printJson(extents.map((e) => (e.layer === undefined ? e : { ...e, file: chain[e.layer]!.backend.name })));
      // Offsets and lengths exactly, in hex; the size again in IEC units for reading at a glance.
      const layered = chain.length > 1;
      const lines = [`${'offset'.padStart(16)} ${'length'.padStart(16)} ${'size'.padStart(10)}  ${'kind'.padEnd(11)} ${'state'.padEnd(17)} ${layered ? 'file offset'.padEnd(12) + ' layer' : 'file offset'}`];
      for (const e of extents) {
        const at = e.fileOffset === undefined ? '-' : hex(e.fileOffset).trim();
        lines.push(
          `${hex(e.offset)} ${hex(e.length)} ${humanSize(e.length).padStart(10)}  ${e.kind.padEnd(11)} ${e.state.padEnd(17)} ${layered ? `${at.padEnd(12)} ${e.layer}: ${chain[e.layer!]!.backend.name}` : at}`,
        );
      }
      const data = extents.filter((e) => e.kind === 'data' && (e.layer ?? 0) === 0).reduce((n, e) => n + e.length, 0);
      lines.push(`${extents.length} extents; ${humanSize(data)} of ${humanSize(image.virtualSize)} stored in the file${layered ? ` (${file}), the rest from ${chain.length - 1} parent layer(s)` : ''}`);
      await writeStdout(lines.join('\n') + '\n');
    } finally {
      await image.close();
    }
  },
};

function hex(n: number): string {
  return `0x${n.toString(16)}`.padStart(16);
}
