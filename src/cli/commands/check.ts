import { openBackend, sniffFormat } from '../../node/paths.js';
import { checkVhd } from '../../ops/check-vhd.js';
import { HTTP_OPTIONS, httpOptions } from '../http-options.js';
import { check as checkImage, type CheckReport, type Finding } from '../../ops/check.js';
import { CACHE_OPTION, cacheOption } from '../cache-option.js';
import { humanSize, usage } from '../args.js';
import { printJson, writeStdout, JSON_OPTION } from '../output.js';
import { PROGRESS_OPTION, progressBar } from '../progress.js';
import type { Command } from '../command.js';

export const check: Command = {
  name: 'check',
  usage: 'vhdx check FILE [--repair [--cache writeback|unsafe|none]] [--json] [-p|--no-progress]',
  examples: `
vhdx check disk.vhdx                 # report only: nothing is written
vhdx check disk.vhdx --repair        # replay the log, fix copies and bad BAT entries, reclaim space
vhdx check disk.vhdx --json | jq .verdict
vhdx check old.vhd                   # a VHD: its structures, overlapping blocks, unreferenced space (no repair)
`,
  options: {
    ...HTTP_OPTIONS,
    repair: { type: 'boolean', short: 'r', description: 'fix what can be fixed without losing reachable data (default: report only)' },
    json: JSON_OPTION,
    cache: CACHE_OPTION,
    progress: PROGRESS_OPTION,
  },
  positionals: ['FILE'],
  // Like qemu-img check: 0 clean, 2 corruption, 3 leaks only, 1 when the check could not be done.
  async run({ positionals: [file], values }) {
    const repair = Boolean(values.repair);
    const cache = cacheOption(values);
    if (cache.cache && !repair) throw usage('--cache applies to --repair (a check alone writes nothing)');
    const backend = await openBackend(file!, { readOnly: !repair, ...cache, ...httpOptions(values) }); // a URL is read over HTTP (no --repair)
    // The block table scan is what grows with the disk: a 64 TiB image's table is 512 MiB.
    const progress = await progressBar(values.progress as boolean | undefined, 'check', { unit: 'fraction' });
    let report: CheckReport;
    try {
      if ((await sniffFormat(backend)) === 'vhd') {
        if (repair) throw usage('--repair works on VHDX images; a VHD is checked only (vhdx convert makes a VHDX of it)');
        report = await checkVhd(backend);
      } else {
        report = await checkImage(backend, { repair, onProgress: (fraction) => progress.update(fraction, 1) });
      }
    } finally {
      progress.stop();
      await backend.close();
    }
    if (values.json) {
      await printJson(report);
    } else {
      await writeStdout(render(report));
    }
    return report.exitCode;
  },
};

function describe(f: Finding): string {
  const where: string[] = [];
  if (f.offset !== undefined) where.push(`file offset ${f.offset}`);
  if (f.virtualOffset !== undefined) where.push(`virtual [${f.virtualOffset}, ${f.virtualOffset + f.virtualLength!})`);
  return `${f.severity.padEnd(10)} ${f.code}: ${f.message}${where.length ? ` (${where.join('; ')})` : ''}`;
}

function render(r: CheckReport): string {
  const lines: string[] = [];
  if (r.repairs) {
    if (r.before!.length) lines.push('found:', ...r.before!.map((f) => `  ${describe(f)}`));
    if (r.repairs.length) lines.push('repaired:', ...r.repairs.map((x) => `  ${x.message}`));
    if (r.lost!.length) lines.push('data lost (now reads as zeros):', ...r.lost!.map((l) => `  virtual [${l.offset}, ${l.offset + l.length}) (${humanSize(l.length)})`));
    if (r.repairs.length) lines.push('after repair:');
  }
  const indent = r.repairs?.length ? '  ' : '';
  for (const f of r.findings) lines.push(indent + describe(f));
  const parts: string[] = [];
  if (r.corruptions) parts.push(`${r.corruptions} corruption(s)`);
  if (r.leaks) parts.push(`${r.leaks} leak(s), ${humanSize(r.leakedBytes)} reclaimable`);
  if (r.warnings) parts.push(`${r.warnings} warning(s)`);
  const fixable = r.findings.filter((f) => f.repairable).length;
  const hint = !r.repairs && fixable > 0 ? `; --repair can fix ${fixable === r.findings.filter((f) => f.severity !== 'warning' || f.repairable).length ? 'all of them' : `${fixable} of them`}` : '';
  lines.push(`${r.file}: ${r.verdict}${parts.length ? ` (${parts.join(', ')})` : ''}${hint}`);
  return lines.join('\n') + '\n';
}
