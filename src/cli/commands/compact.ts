/**
 * `vhdx compact`: shrinks an image file in place (Optimize-VHD). The work and its crash-safety are in
 * `ops/compact.ts`; this module parses the options, shows progress and stops cleanly on a signal (the
 * moves done so far are kept: they are durable and the image is closed clean).
 */
import { compact as compactImage, type CompactReport } from '../../ops/compact.js';
import { humanSize, usage } from '../args.js';
import { CACHE_OPTION, cacheOption } from '../cache-option.js';
import { inPlace } from '../in-place.js';
import { printJson, writeStdout, JSON_OPTION } from '../output.js';
import { PROGRESS_OPTION } from '../progress.js';
import type { Command } from '../command.js';

export const compact: Command = {
  name: 'compact',
  usage: 'vhdx compact FILE [--mode quick|full] [--dry-run] [--to-dynamic] [--json] [--cache writeback|unsafe|none] [-p|--no-progress]',
  examples: `
vhdx compact disk.vhdx                 # unmap blocks that read as zeros, move blocks down, cut the file
vhdx compact disk.vhdx --mode quick    # only reuse space already discarded (after fstrim through vhdx serve)
vhdx compact disk.vhdx --dry-run       # how much would be reclaimed; nothing is written
vhdx compact fixed.vhdx --to-dynamic   # a fixed image becomes dynamic in place, then is compacted
`,
  options: {
    mode: { type: 'string', description: 'full (default: also find blocks that read as zeros) or quick (only space already free)' },
    'dry-run': { type: 'boolean', short: 'n', description: 'report what would be reclaimed without writing anything' },
    'to-dynamic': { type: 'boolean', description: 'fixed images: convert to dynamic in place first (otherwise a fixed image is only measured)' },
    json: JSON_OPTION,
    cache: CACHE_OPTION,
    progress: PROGRESS_OPTION,
  },
  positionals: ['FILE'],
  async run({ positionals: [file], values }) {
    const mode = values.mode === undefined ? 'full' : String(values.mode);
    if (mode !== 'quick' && mode !== 'full') throw usage(`--mode must be quick or full, not ${JSON.stringify(mode)}`);
    const dryRun = Boolean(values['dry-run']);
    const cache = cacheOption(values);
    if (dryRun && cache.cache) throw usage('--cache applies to a compaction that writes (not --dry-run)');
    const stopped = 'stopped at a safe point: the blocks moved so far are kept and the image is closed clean (run compact again to finish)';
    const report = await inPlace(file!, { readOnly: dryRun, ...cache }, values.progress as boolean | undefined, 'compact', stopped, ({ backend, signal, onProgress }) =>
      compactImage(backend, { mode, dryRun, toDynamic: Boolean(values['to-dynamic']), signal, onProgress }),
    );
    if (values.json) return await printJson(report);
    await writeStdout(render(report));
  },
};

function render(r: CompactReport): string {
  const lines: string[] = [];
  const what = r.dryRun || !r.changed ? 'would reclaim' : 'reclaimed';
  lines.push(`${r.file}: ${r.type} image, ${r.mode} compaction${r.dryRun ? ' (dry run: nothing written)' : ''}`);
  if (r.convertedToDynamic) lines.push('  converted from fixed to dynamic');
  if (r.mode === 'full') lines.push(`  ${r.zeroBlocks} block(s) reading as zeros${r.changed ? ' unmapped' : ''}`);
  lines.push(`  ${r.blocksMoved} block(s) ${r.changed ? 'moved' : 'to move'} down`);
  if (r.changed) lines.push(`  file ${humanSize(r.fileSizeBefore)} -> ${humanSize(r.fileSizeAfter)}`);
  lines.push(`  ${what} ${humanSize(r.bytesReclaimed)} (${r.bytesReclaimed} bytes)`);
  for (const note of r.notes) lines.push(`  note: ${note}`);
  return lines.join('\n') + '\n';
}
