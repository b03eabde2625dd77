/**
 * The metadata region has no checksum, so every edit here is "valid" as far as integrity goes: table
 * EntryCount up to 65535, item offsets and lengths out of range or overlapping, duplicated and unknown
 * required items, illegal block/sector/virtual sizes (including 2^46 and above), and differencing disks
 * whose parent locator has hostile counts, offsets and lengths.
 */
import { after, test } from 'node:test';
import fc from 'fast-check';
import { checkMutated, fuzz, Sandbox, fuzzEachBase } from './harness.js';
import { BASE_NAMES, baseImage } from './images.js';
import { metadataMutationArb, parentLocatorArb } from './mutations.js';

const sandbox = new Sandbox();
after(() => sandbox.close());

test('metadata table and items with hostile fields: typed error or valid reads', async (t) => {
  await fuzzEachBase(t, sandbox, metadataMutationArb, 'hostile metadata', 200);
});

test('virtual size, block size and sector sizes at and beyond their limits: typed error or valid reads', async (t) => {
  await fuzz(
    t,
    sandbox,
    fc.asyncProperty(
      fc.constantFrom(...BASE_NAMES),
      metadataMutationArb.map((m) => ({ ...m, count: null, edits: [], extra: [] })).filter((m) => m.values.length > 0),
      fc.nat(),
      async (name, mutation, readSeed) => {
        const base = await baseImage(name);
        await checkMutated(sandbox, base, [mutation], `${name} hostile metadata values`, readSeed);
      },
    ),
    100,
  );
});

test('differencing disks with a hostile parent locator: typed error or valid reads', async (t) => {
  await fuzzEachBase(t, sandbox, parentLocatorArb, 'hostile parent locator', 100);
});
