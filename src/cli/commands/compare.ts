import { openDisk } from '../../node/paths.js';
import { HTTP_OPTIONS, httpOptions } from '../http-options.js';
import { compareDisks } from '../../ops/compare.js';
import { rawSource, vhdSource, vhdxSource, type DiskSource } from '../../ops/source.js';
import { PROGRESS_OPTION, progressBar } from '../progress.js';
import { isHttpUrl } from '../../io/http.js';
import { printJson, shownPath, writeStdout, JSON_OPTION } from '../output.js';
import type { Command } from '../command.js';

/** A disk to compare: its source, and how to close it. */
async function openSource(path: string, http: ReturnType<typeof httpOptions>): Promise<{ source: DiskSource; close(): Promise<void> }> {
  const disk = await openDisk(path, http); // a differencing disk is compared as its chain reads
  const source = disk.kind === 'vhdx' ? vhdxSource(disk.image) : disk.kind === 'vhd' ? vhdSource(disk.image) : rawSource(disk.backend, disk.size);
  return { source, close: () => disk.close() };
}

function hex(offset: number): string {
  return `0x${offset.toString(16)}`;
}

export const compare: Command = {
  name: 'compare',
  usage: 'vhdx compare A B [--strict] [--json] [-p]',
  examples: `
vhdx compare disk.vhdx disk.raw          # exit 0 identical, 1 different, 2 error
vhdx compare disk.vhd disk.vhdx          # VHD, VHDX and raw in any pair
vhdx compare old.vhdx new.vhdx --strict  # a size mismatch is a difference
vhdx compare a.vhdx b.vhdx --json | jq .firstDifference
`,
  options: {
    ...HTTP_OPTIONS,
    strict: { type: 'boolean', short: 's', description: 'disks of different sizes differ (else the extra part must read as zeros)' },
    json: JSON_OPTION,
    progress: PROGRESS_OPTION,
  },
  positionals: ['A', 'B'],
  errorStatus: 2,
  async run({ positionals: [pathA, pathB], values }) {
    const strict = Boolean(values.strict);
    const disks: { source: DiskSource; close(): Promise<void> }[] = [];
    const progress = await progressBar(values.progress as boolean | undefined, 'compare');
    let result;
    try {
      disks.push(await openSource(pathA!, httpOptions(values)));
      disks.push(await openSource(pathB!, httpOptions(values)));
      result = await compareDisks(disks[0]!.source, disks[1]!.source, {
        strict,
        // Over HTTP each chunk is split into parallel requests: larger chunks keep more in flight.
        ...(isHttpUrl(pathA!) || isHttpUrl(pathB!) ? { chunkSize: 8 * 1024 * 1024 } : {}),
        onProgress: (done, total) => progress.update(done, total),
      });
    } finally {
      progress.stop();
      for (const disk of disks) await disk.close();
    }
    if (values.json) {
      await printJson({
        a: shownPath(pathA!),
        b: shownPath(pathB!),
        equal: result.equal,
        firstDifference: result.firstDifference ?? null,
        sizeA: result.sizeA,
        sizeB: result.sizeB,
        sizeMismatch: result.sizeMismatch,
        strict,
      });
    } else {
      const sizes = `${shownPath(pathA!)} is ${result.sizeA} bytes, ${shownPath(pathB!)} is ${result.sizeB} bytes`;
      if (result.equal) {
        await writeStdout(`disks are identical${result.sizeMismatch ? ` (sizes differ: ${sizes}; the extra bytes read as zeros)` : ''}\n`);
      } else {
        const at = result.firstDifference!;
        await writeStdout(`disks differ at offset ${at} (${hex(at)})${result.sizeMismatch ? `; sizes differ: ${sizes}` : ''}\n`);
      }
    }
    return result.equal ? 0 : 1;
  },
};
