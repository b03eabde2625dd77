/**
 * `vhdx resize`: changes the virtual size of an image in place (Resize-VHD). The work and its
 * crash-safety are in `ops/resize.ts`; a shrink that would drop data is refused unless `--shrink`.
 */
import { resize as resizeImage } from '../../ops/resize.js';
import { humanSize, parseSize } from '../args.js';
import { CACHE_OPTION, cacheOption } from '../cache-option.js';
import { inPlace } from '../in-place.js';
import { printJson, writeStdout, JSON_OPTION } from '../output.js';
import { PROGRESS_OPTION } from '../progress.js';
import type { Command } from '../command.js';

export const resize: Command = {
  name: 'resize',
  usage: 'vhdx resize FILE SIZE [--shrink] [--json] [--cache writeback|unsafe|none] [-p|--no-progress]',
  examples: `
vhdx resize disk.vhdx 200G             # grow (a fixed image gets its new space allocated)
vhdx resize disk.vhdx 20G              # shrink, refused if the cut part holds data
vhdx resize disk.vhdx 20G --shrink     # shrink even so: the data past 20G is dropped and listed
`,
  options: {
    shrink: { type: 'boolean', description: 'allow a shrink to drop data past the new size (the ranges lost are reported)' },
    json: JSON_OPTION,
    cache: CACHE_OPTION,
    progress: PROGRESS_OPTION,
  },
  positionals: ['FILE', 'SIZE'],
  async run({ positionals: [file, sizeText], values }) {
    const size = parseSize(sizeText!, 'SIZE');
    const report = await inPlace(file!, { readOnly: false, ...cacheOption(values) }, values.progress as boolean | undefined, 'resize', 'the image keeps its old size', ({ backend, signal, onProgress }) =>
      resizeImage(backend, size, { shrink: Boolean(values.shrink), signal, onProgress }),
    );
    if (values.json) return await printJson(report);
    const lines = [`${file}: ${report.type} image resized from ${humanSize(report.virtualSizeBefore)} to ${humanSize(report.virtualSizeAfter)} (${report.virtualSizeAfter} bytes)`];
    if (report.bat !== 'unchanged') lines.push(`  BAT region ${report.bat === 'relocated' ? 'moved to the end of the file' : 'grown in place'}`);
    lines.push(`  file ${humanSize(report.fileSizeBefore)} -> ${humanSize(report.fileSizeAfter)}`);
    for (const l of report.lost) lines.push(`  data lost: virtual [${l.offset}, ${l.offset + l.length}) (${humanSize(l.length)})`);
    await writeStdout(lines.join('\n') + '\n');
  },
};
