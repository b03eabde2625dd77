import { NodeFileBackend, toVhdxError } from '../../node/file-backend.js';
import { attachParents } from '../../node/paths.js';
import { VhdxImage } from '../../image/image.js';
import { compareDisks } from '../../ops/compare.js';
import { rawSource, vhdxSource, type DiskSource } from '../../ops/source.js';
import { hasSignature } from '../../format/bytes.js';
import { readFully } from '../../io/backend.js';
import { PROGRESS_OPTION, progressBar } from '../progress.js';
import { printJson, writeStdout, JSON_OPTION } from '../output.js';
import type { Command } from '../command.js';

interface OpenedDisk {
  source: DiskSource;
  close(): Promise<void>;
}

/** Opens `path` read-only as a VHDX image when it starts with the `vhdxfile` signature, else as a raw image. */
async function openDisk(path: string): Promise<OpenedDisk> {
  const backend = await NodeFileBackend.open(path, { readOnly: true });
  try {
    const magic = new Uint8Array(8);
    await readFully(backend, magic, 0);
    if (hasSignature(magic, 0, 'vhdxfile')) {
      const image = await VhdxImage.open(backend, { readOnly: true });
      // A differencing disk is compared as its chain reads.
      await attachParents(image, path).catch(async (error: unknown) => {
        await image.close();
        throw error;
      });
      return { source: vhdxSource(image), close: () => image.close() };
    }
    return { source: rawSource(backend, await backend.size()), close: () => backend.close() };
  } catch (error) {
    await backend.close();
    throw toVhdxError(error, path);
  }
}

function hex(offset: number): string {
  return `0x${offset.toString(16)}`;
}

export const compare: Command = {
  name: 'compare',
  usage: 'vhdx compare A B [--strict] [--json] [-p]',
  examples: [
    'vhdx compare disk.vhdx disk.raw          # exit 0 identical, 1 different, 2 error',
    'vhdx compare old.vhdx new.vhdx --strict  # a size mismatch is a difference',
    'vhdx compare a.vhdx b.vhdx --json | jq .firstDifference',
  ],
  options: {
    strict: { type: 'boolean', short: 's', description: 'disks of different sizes differ (else the extra part must read as zeros)' },
    json: JSON_OPTION,
    progress: PROGRESS_OPTION,
  },
  positionals: ['A', 'B'],
  errorStatus: 2,
  async run({ positionals: [pathA, pathB], values }) {
    const strict = Boolean(values.strict);
    const disks: OpenedDisk[] = [];
    const progress = await progressBar(values.progress as boolean | undefined, 'compare');
    let result;
    try {
      disks.push(await openDisk(pathA!));
      disks.push(await openDisk(pathB!));
      result = await compareDisks(disks[0]!.source, disks[1]!.source, {
        strict,
        onProgress: (done, total) => progress.update(done, total),
      });
    } finally {
      progress.stop();
      for (const disk of disks) await disk.close();
    }
    if (values.json) {
      await printJson({
        a: pathA,
        b: pathB,
        equal: result.equal,
        firstDifference: result.firstDifference ?? null,
        sizeA: result.sizeA,
        sizeB: result.sizeB,
        sizeMismatch: result.sizeMismatch,
        strict,
      });
    } else {
      const sizes = `${pathA} is ${result.sizeA} bytes, ${pathB} is ${result.sizeB} bytes`;
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
