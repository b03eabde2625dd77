/**
 * BAT entries (no checksum) with reserved state 4, partially present blocks in disks without a parent,
 * offsets past the end of the file or into the header section, BAT, metadata or log, duplicated offsets,
 * non-zero reserved bits, present sector-bitmap entries, and whole tables rewritten at once; half the
 * cases turn the disk into a differencing one first (reads of its parent-backed blocks must then fail
 * with the typed PARENT_REQUIRED).
 */
import { after, test } from 'node:test';
import fc from 'fast-check';
import { checkMutated, fuzz, Sandbox } from './harness.js';
import { BASE_NAMES, baseImage } from './images.js';
import { batMutationArb, type Mutation, type ParentLocatorMutation } from './mutations.js';

/** A well-formed locator: with it the disk is differencing, so PARTIALLY_PRESENT and sector bitmaps are legal. */
const DIFFERENCING: ParentLocatorMutation = {
  kind: 'parentLocator',
  itemOffset: 128 * 1024,
  itemLength: 4096,
  count: 3,
  shape: 'packed',
  keyLength: 28,
  valueLength: 76,
  fill: 'counter',
  seed: 0,
};

const sandbox = new Sandbox();
after(() => sandbox.close());

test('BAT entries with hostile states and offsets: typed error or valid reads', async (t) => {
  await fuzz(
    t,
    sandbox,
    fc.asyncProperty(fc.constantFrom(...BASE_NAMES), fc.boolean(), batMutationArb, fc.nat(), async (name, differencing, mutation, readSeed) => {
      const base = await baseImage(name);
      const mutations: Mutation[] = differencing ? [DIFFERENCING, mutation] : [mutation];
      await checkMutated(sandbox, base, mutations, `${name} hostile BAT${differencing ? ' (differencing)' : ''}`, readSeed);
    }),
    200,
  );
});
