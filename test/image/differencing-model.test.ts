/**
 * Model-based property test of differencing chains: depth 1 to 3 (a base and up to two children).
 * Each layer gets random writes, writeZeroes, discards, flushes and reopens (checked against a raw
 * model after every step) before its child is created; the child is then written the same way, and
 * every read goes through the top of the chain. Finally the top is merged into its parent, and the
 * parent (read through the rest of the chain) must equal the model; so must the child over it.
 * Sector sizes 512 and 4096; block sizes differ between layers.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { MemoryBackend } from '../../src/io/memory.js';
import { create } from '../../src/ops/create.js';
import { mergeIntoParent } from '../../src/ops/merge.js';
import { check } from '../../src/ops/check.js';
import { VhdxImage } from '../../src/image/image.js';
import { equal } from '../model.js';
import { tiledBytes } from '../helpers.js';

const MiB = 1024 * 1024;
const SIZE = 6 * MiB + 3 * 4096; // not a multiple of any block size

type Step =
  | { kind: 'write'; at: number; length: number; seed: number }
  | { kind: 'read'; at: number; length: number }
  | { kind: 'discard' | 'writeZeroes'; at: number; length: number }
  | { kind: 'flush' }
  | { kind: 'reopen' };

function stepArb(): fc.Arbitrary<Step> {
  const at = fc.oneof(
    fc.integer({ min: 0, max: SIZE - 1 }),
    fc.tuple(fc.integer({ min: 0, max: 6 }), fc.integer({ min: -700, max: 700 })).map(([b, d]) => Math.min(SIZE - 1, Math.max(0, b * MiB + d))),
  );
  const len = fc.oneof(fc.integer({ min: 1, max: 5000 }), fc.integer({ min: 1, max: 3 * MiB }), fc.constant(MiB));
  const ranged = <K extends string>(kind: K) => fc.tuple(at, len).map(([a, l]) => ({ kind, at: a, length: Math.min(l, SIZE - a) }));
  return fc.oneof(
    { weight: 6, arbitrary: fc.tuple(ranged('write'), fc.integer({ min: 1, max: 1 << 30 })).map(([s, seed]) => ({ ...s, seed }) as Step) },
    { weight: 3, arbitrary: ranged('read') as fc.Arbitrary<Step> },
    { weight: 1, arbitrary: ranged('discard') as fc.Arbitrary<Step> },
    { weight: 1, arbitrary: ranged('writeZeroes') as fc.Arbitrary<Step> },
    { weight: 1, arbitrary: fc.constant({ kind: 'flush' } as Step) },
    { weight: 1, arbitrary: fc.constant({ kind: 'reopen' } as Step) },
  );
}

interface Layer {
  backend: MemoryBackend;
  image: VhdxImage;
}

async function openLayer(backend: MemoryBackend, parent: VhdxImage | null, readOnly: boolean): Promise<VhdxImage> {
  return VhdxImage.open(backend, { readOnly, ...(parent ? { parent } : {}) });
}

async function runSteps(layer: Layer, parent: VhdxImage | null, steps: Step[], model: Uint8Array, where: string): Promise<void> {
  for (const [i, s] of steps.entries()) {
    const at = `${where} step ${i} ${JSON.stringify({ ...s, seed: undefined })}`;
    switch (s.kind) {
      case 'write': {
        const data = tiledBytes(s.length, s.seed);
        await layer.image.write(s.at, data);
        model.set(data, s.at);
        break;
      }
      case 'discard':
      case 'writeZeroes':
        await layer.image[s.kind](s.at, s.length);
        model.fill(0, s.at, s.at + s.length);
        break;
      case 'flush':
        await layer.image.flush();
        break;
      case 'reopen':
        await layer.image.close();
        layer.image = await openLayer(layer.backend, parent, false);
        break;
      case 'read':
        assert.ok(equal(await layer.image.read(s.at, s.length), model.subarray(s.at, s.at + s.length)), `${at}: read differs from the model`);
        break;
    }
  }
  assert.ok(equal(await layer.image.read(0, SIZE), model), `${where}: whole disk differs from the model`);
}

describe('differencing chains against a raw model', () => {
  for (const logicalSectorSize of [512, 4096] as const) {
    for (const depth of [1, 2, 3]) {
      test(`depth ${depth}, ${logicalSectorSize}-byte sectors`, async () => {
        let runs = 0;
        await fc.assert(
          fc.asyncProperty(
            fc.array(fc.array(stepArb(), { minLength: 3, maxLength: 12 }), { minLength: depth, maxLength: depth }),
            fc.array(fc.constantFrom(MiB, 2 * MiB, 4 * MiB), { minLength: depth, maxLength: depth }),
            async (stepsPerLayer, blockSizes) => {
              runs++;
              const model = new Uint8Array(SIZE);
              const layers: Layer[] = [];
              for (let d = 0; d < depth; d++) {
                const backend = new MemoryBackend(new Uint8Array(0), { name: `layer${d}` });
                const parent = layers[d - 1]?.image ?? null;
                if (parent) {
                  // The parent is frozen from here on: reopen it read-only under the child.
                  const parentLayer = layers[d - 1]!;
                  await parentLayer.image.close();
                  parentLayer.image = await openLayer(parentLayer.backend, layers[d - 2]?.image ?? null, true);
                  await create(backend, { virtualSize: SIZE, blockSize: blockSizes[d]!, parent: { image: parentLayer.image, relativePath: `.\\layer${d - 1}.vhdx`, absolutePath: `/layer${d - 1}.vhdx` } });
                } else {
                  await create(backend, { virtualSize: SIZE, blockSize: blockSizes[d]!, logicalSectorSize });
                }
                const image = await openLayer(backend, layers[d - 1]?.image ?? null, false);
                const layer = { backend, image };
                layers.push(layer);
                await runSteps(layer, layers[d - 1]?.image ?? null, stepsPerLayer[d]!, model, `layer ${d}`);
              }
              const top = layers[depth - 1]!;
              await top.image.close();
              // No layer has any corruption for our own check (space freed by discards may be reclaimable).
              for (const l of layers) {
                const report = await check(new MemoryBackend(l.backend.contents().slice(), { readOnly: true }));
                assert.equal(report.corruptions, 0, JSON.stringify(report.findings));
              }
              if (depth === 1) return;
              // Merge the top into its parent: the parent alone (over its own chain) now equals the model.
              const below = layers[depth - 2]!;
              await below.image.close();
              const grand = layers[depth - 3]?.image ?? null;
              const parentWritable = await openLayer(below.backend, grand, false);
              const child = await openLayer(top.backend, parentWritable, false);
              await mergeIntoParent(child);
              assert.ok(equal(await parentWritable.read(0, SIZE), model), 'the parent after the merge differs from the model');
              assert.ok(equal(await child.read(0, SIZE), model), 'the child over the merged parent differs from the model');
              await child.close();
              await parentWritable.close();
              // Both reopen with the linkage intact.
              const reopenedParent = await openLayer(below.backend, grand, true);
              const reopenedChild = await openLayer(top.backend, reopenedParent, true);
              assert.ok(equal(await reopenedChild.read(0, SIZE), model), 'the reopened chain differs from the model');
              await reopenedChild.close();
              await reopenedParent.close();
              for (const l of layers.slice(0, depth - 2)) await l.image.close();
            },
          ),
          { numRuns: depth === 1 ? 15 : 12, seed: 4242 + depth * 10 + logicalSectorSize },
        );
        assert.ok(runs > 0);
      });
    }
  }
});
