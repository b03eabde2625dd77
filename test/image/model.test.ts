/**
 * Model-based property test of the write path: random sequences of write / read / discard /
 * writeZeroes / flush / reopen against a raw in-memory model, checked after every step, for each block
 * size class (smallest, default, largest), both logical sector sizes and both image types.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MemoryBackend } from '../../src/io/memory.js';
import { create } from '../../src/ops/create.js';
import { VhdxImage } from '../../src/image/image.js';
import { equal } from '../model.js';
import { tiledBytes } from '../helpers.js';

const MiB = 1024 * 1024;

type Step =
  | { kind: 'write'; at: number; length: number; seed: number }
  | { kind: 'read'; at: number; length: number }
  | { kind: 'discard' | 'writeZeroes'; at: number; length: number }
  | { kind: 'flush' }
  | { kind: 'reopen' };

/** Offsets biased to block boundaries, the first and the last bytes, where mistakes live. */
function offsetArb(size: number, blockSize: number): fc.Arbitrary<number> {
  const blocks = Math.ceil(size / blockSize);
  return fc.oneof(
    fc.integer({ min: 0, max: size - 1 }),
    fc.tuple(fc.integer({ min: 0, max: blocks }), fc.integer({ min: -600, max: 600 })).map(([b, d]) => Math.min(size - 1, Math.max(0, b * blockSize + d))),
    fc.integer({ min: Math.max(0, size - 5000), max: size - 1 }),
  );
}

function stepArb(size: number, blockSize: number): fc.Arbitrary<Step> {
  const len = fc.oneof(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 3 * blockSize }), fc.constant(blockSize));
  const ranged = <K extends string>(kind: K) => fc.tuple(offsetArb(size, blockSize), len).map(([at, length]) => ({ kind, at, length: Math.min(length, size - at) }));
  return fc.oneof(
    { weight: 5, arbitrary: fc.tuple(ranged('write'), fc.integer({ min: 1, max: 1 << 30 })).map(([s, seed]) => ({ ...s, seed }) as Step) },
    { weight: 3, arbitrary: ranged('read') as fc.Arbitrary<Step> },
    { weight: 2, arbitrary: ranged('discard') as fc.Arbitrary<Step> },
    { weight: 2, arbitrary: ranged('writeZeroes') as fc.Arbitrary<Step> },
    { weight: 2, arbitrary: fc.constant({ kind: 'flush' } as Step) },
    { weight: 1, arbitrary: fc.constant({ kind: 'reopen' } as Step) },
  );
}

/** Whole-disk check without reading holes: zero and unallocated extents must be zero in the model. */
async function checkAll(image: VhdxImage, model: Uint8Array): Promise<void> {
  for (const e of (await image.extents())) {
    const want = model.subarray(e.offset, e.offset + e.length);
    if (e.kind === 'data') assert.ok(equal(await image.read(e.offset, e.length), want), `data extent at ${e.offset} differs from the model`);
    else assert.ok(want.every((b) => b === 0), `${e.kind} extent at ${e.offset} should hold data per the model`);
  }
}

async function runSteps(steps: Step[], size: number, type: 'dynamic' | 'fixed', blockSize: number, logicalSectorSize: number, sparse = false): Promise<void> {
  const backend = new MemoryBackend();
  await create(backend, { virtualSize: size, type, blockSize, logicalSectorSize, sparse: true });
  const fileSizeAtCreate = await backend.size();
  const model = new Uint8Array(size);
  let image = await VhdxImage.open(backend, { readOnly: false, sparse });
  for (const step of steps) {
    switch (step.kind) {
      case 'write': {
        const data = tiledBytes(step.length, step.seed);
        await image.write(step.at, data);
        model.set(data, step.at);
        break;
      }
      case 'discard':
      case 'writeZeroes':
        await image[step.kind](step.at, step.length);
        model.fill(0, step.at, step.at + step.length);
        break;
      case 'flush':
        await image.flush();
        break;
      case 'reopen':
        await image.close();
        image = await VhdxImage.open(backend, { readOnly: false, sparse });
        assert.equal(image.info().logState, 'empty', 'a closed image has an empty log');
        await checkAll(image, model);
        break;
      case 'read':
        break;
    }
    // After every step: the step's range (widened to sector boundaries) reads as the model says.
    if (step.kind !== 'flush' && step.kind !== 'reopen') {
      const from = Math.max(0, Math.floor(step.at / logicalSectorSize) * logicalSectorSize - logicalSectorSize);
      const to = Math.min(size, Math.ceil((step.at + step.length) / logicalSectorSize) * logicalSectorSize + logicalSectorSize);
      assert.ok(equal(await image.read(from, to - from), model.subarray(from, to)), `${step.kind} at ${step.at}+${step.length}: range differs from the model`);
    }
    if (type === 'fixed') assert.equal(await backend.size(), fileSizeAtCreate, 'a fixed image never grows');
  }
  await image.close();
  const reopened = await VhdxImage.open(new MemoryBackend(backend.contents().slice(), { readOnly: true }));
  await checkAll(reopened, model);
}

describe('write path against a raw model', () => {
  const classes = [
    { blockSize: MiB, size: 6 * MiB + 3 * 4096, runs: 40 },
    { blockSize: 32 * MiB, size: 96 * MiB + 4096 * 3, runs: 8 },
    { blockSize: 256 * MiB, size: 256 * MiB + 4096 * 5, runs: 2 },
  ];
  for (const { blockSize, size, runs } of classes) {
    for (const logicalSectorSize of [512, 4096]) {
      for (const type of ['dynamic', 'fixed'] as const) {
        test(`${type}, ${blockSize / MiB} MiB blocks, ${logicalSectorSize}-byte sectors`, async () => {
          await fc.assert(
            fc.asyncProperty(fc.array(stepArb(size, blockSize), { minLength: 1, maxLength: blockSize > 32 * MiB ? 8 : 20 }), (steps) =>
              runSteps(steps, size, type, blockSize, logicalSectorSize),
            ),
            { numRuns: runs, seed: 20261125 + blockSize + logicalSectorSize + (type === 'fixed' ? 1 : 0) },
          );
        });
      }
    }
  }
  for (const logicalSectorSize of [512, 4096]) {
    test(`dynamic, 1 MiB blocks, ${logicalSectorSize}-byte sectors, sparse allocation`, async () => {
      const size = 6 * MiB + 3 * 4096;
      await fc.assert(
        fc.asyncProperty(fc.array(stepArb(size, MiB), { minLength: 1, maxLength: 20 }), (steps) => runSteps(steps, size, 'dynamic', MiB, logicalSectorSize, true)),
        { numRuns: 30, seed: 7 + logicalSectorSize },
      );
    });
  }
});
