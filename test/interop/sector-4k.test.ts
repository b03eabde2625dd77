/**
 * 4096-byte logical sectors, which QEMU cannot create (and refuses to open). Images come from our
 * fixture generator with known writes; libvhdi must report 4096 bytes per sector and read exactly the
 * written content, and so must our reader. The expectation is the data given to the generator.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openImage } from '../../src/node/paths.js';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { buildImage, type BuildSpec } from '../build-image.js';
import { patternBytes, tempDir } from '../helpers.js';
import { LIBVHDI_DISK_TYPES, MiB, describeDifference, libvhdiRead, modelBytes, requirePyvhdi, sameBytes, writeModelRaw, type Write } from './util.js';

/** 33 MiB + 3 sectors of 4 KiB: two 32 MiB blocks (the second partial), 34 blocks of 1 MiB (the last partial). */
const SIZE = 33 * MiB + 3 * 4096;

function writesFor(blockSize: number): Write[] {
  return [
    { offset: 123, data: patternBytes(10_000, 1) }, // unaligned, inside block 0
    { offset: 5 * MiB + 4097, data: patternBytes(MiB + 3, 2) }, // spans 1 MiB blocks 5 and 6
    { offset: blockSize - 1000, data: patternBytes(3000, 3) }, // crosses the first block boundary
    { offset: SIZE - 5000, data: patternBytes(5000, 4) }, // the end of the last, partial block
    { offset: 200, data: patternBytes(50, 5) }, // overwrites part of the first write
  ];
}

interface Case {
  physicalSectorSize: 512 | 4096;
  type: 'dynamic' | 'fixed';
  blockSize: number;
  layout: 'windows' | 'qemu';
}

const cases: Case[] = [];
for (const physicalSectorSize of [512, 4096] as const)
  for (const type of ['dynamic', 'fixed'] as const)
    for (const blockSize of [MiB, 32 * MiB])
      for (const layout of ['windows', 'qemu'] as const) cases.push({ physicalSectorSize, type, blockSize, layout });

describe('4096-byte logical sectors (fixture generator) read by libvhdi and by us', () => {
  let tmp: { path: string; cleanup: () => void } | undefined;
  before(() => {
    requirePyvhdi();
    tmp = tempDir('vhdx-interop-4k-');
  });
  after(() => tmp?.cleanup());

  for (const c of cases) {
    const name = `${c.type}-${c.blockSize / MiB}M-${c.layout}-phys${c.physicalSectorSize}`;
    it(`${c.type}, ${c.blockSize / MiB} MiB blocks, ${c.layout} layout, physical ${c.physicalSectorSize}`, async () => {
      const image = join(tmp!.path, `${name}.vhdx`);
      const model = join(tmp!.path, `${name}.model.raw`);
      try {
        const writes = writesFor(c.blockSize);
        const spec: BuildSpec = { virtualSize: SIZE, blockSize: c.blockSize, logicalSectorSize: 4096, physicalSectorSize: c.physicalSectorSize, type: c.type, layout: c.layout, writes };
        const backend = await NodeFileBackend.open(image, { readOnly: false, create: true });
        try {
          await buildImage(backend, spec);
        } finally {
          await backend.close();
        }
        writeModelRaw(model, SIZE, writes);

        // libvhdi against the written content.
        const view = libvhdiRead(image, model);
        assert.equal(view.bytesPerSector, 4096, 'libvhdi bytes per sector');
        assert.equal(view.mediaSize, SIZE);
        assert.equal(LIBVHDI_DISK_TYPES[view.diskType], c.type);
        assert.equal(view.firstDifference, null, `libvhdi vs written data: ${JSON.stringify(view.firstDifference)}`);

        // Our reader against the written content, and against libvhdi's hash.
        const img = await openImage(image, { readOnly: true });
        try {
          const info = img.info();
          assert.equal(info.logicalSectorSize, 4096);
          assert.equal(info.physicalSectorSize, c.physicalSectorSize);
          assert.equal(info.virtualSize, SIZE);
          assert.equal(info.blockSize, c.blockSize);
          assert.equal(info.type, c.type);
          const hash = createHash('sha256');
          for (let offset = 0; offset < SIZE; offset += 4 * MiB) {
            const got = await img.read(offset, Math.min(4 * MiB, SIZE - offset));
            const expected = modelBytes(writes, offset, got.length);
            if (!sameBytes(got, expected)) assert.fail(`our reader: ${describeDifference(got, expected, offset, 'ours', 'written')}`);
            hash.update(got);
          }
          assert.equal(hash.digest('hex'), view.sha256, 'our read hashes like libvhdi\'s');
          // Unaligned reads crossing the block boundary and the end of the disk.
          for (const [offset, length] of [[c.blockSize - 1001, 3002], [SIZE - 5001, 5001], [124, 9998]] as const) {
            assert.deepEqual(await img.read(offset, length), modelBytes(writes, offset, length), `read(${offset}, ${length})`);
          }
        } finally {
          await img.close();
        }
      } finally {
        rmSync(image, { force: true });
        rmSync(model, { force: true });
      }
    });
  }
});
