/**
 * Truncation at any point (random offsets, and every structure boundary give or take a little), plus
 * files that run on past their last structure. A short file must end in a typed error (usually TRUNCATED)
 * or, when the cut only removes bytes nothing needs, in valid reads.
 */
import { after, test } from 'node:test';
import fc from 'fast-check';
import { checkCase, fuzz, Sandbox } from './harness.js';
import { BASE_NAMES, baseImage, boundariesOf } from './images.js';
import { mutate, sizeMutationArb } from './mutations.js';

const sandbox = new Sandbox();
after(() => sandbox.close());

test('truncation at any offset or near any boundary: typed error or valid reads', async (t) => {
  await fuzz(
    t,
    sandbox,
    fc.asyncProperty(fc.constantFrom(...BASE_NAMES), sizeMutationArb, fc.boolean(), fc.nat(), async (name, cut, reseal, readSeed) => {
      const base = await baseImage(name);
      const bytes = mutate(base.bytes, base.layout, [cut], reseal);
      await checkCase(sandbox, bytes, `${name} ${JSON.stringify(cut)} -> ${bytes.length} bytes`, readSeed);
    }),
    150,
  );
});

test('truncation exactly at, one byte before and one byte after every structure boundary', async (t) => {
  let cases = 0;
  for (const name of BASE_NAMES) {
    const base = await baseImage(name);
    const cuts = new Set<number>();
    for (const b of boundariesOf(base.layout)) for (const d of [-1, 0, 1]) if (b + d >= 0 && b + d <= base.bytes.length) cuts.add(b + d);
    for (const cut of [...cuts].sort((a, b) => a - b)) {
      await checkCase(sandbox, base.bytes.subarray(0, cut), `${name} truncated to ${cut} bytes`, cut);
      cases++;
    }
  }
  t.diagnostic(`${cases} cases`);
});
