/**
 * Mutations from every family stacked on one image (hostile header + region table + BAT + log + bit
 * flips + truncation, in any order), with and without re-sealing every checksum afterwards.
 */
import { after, test } from 'node:test';
import fc from 'fast-check';
import { checkMutated, fuzz, Sandbox } from './harness.js';
import { BASE_NAMES, baseImage } from './images.js';
import { anyMutationArb } from './mutations.js';

const sandbox = new Sandbox();
after(() => sandbox.close());

test('several mutations from every family at once: typed error or valid reads', async (t) => {
  await fuzz(
    t,
    sandbox,
    fc.asyncProperty(
      fc.constantFrom(...BASE_NAMES),
      fc.array(anyMutationArb, { minLength: 1, maxLength: 5 }),
      fc.boolean(),
      fc.nat(),
      async (name, mutations, reseal, readSeed) => {
        const base = await baseImage(name);
        await checkMutated(sandbox, base, mutations, `${name} stacked, reseal=${reseal}`, readSeed, reseal);
      },
    ),
    200,
  );
});
