/**
 * Headers and region tables re-encoded with VALID checksums but hostile fields: LogLength/LogOffset
 * huge, unaligned, overlapping the header section or other structures, past the end of the file;
 * versions and sequence numbers at their extremes; region entries overlapping each other, the log or the
 * header section, huge or past-EOF offsets and lengths, duplicated or unknown GUIDs, EntryCount at and
 * beyond its maximum.
 */
import { after, test } from 'node:test';
import fc from 'fast-check';
import { checkMutated, fuzz, Sandbox, fuzzEachBase } from './harness.js';
import { BASE_NAMES, baseImage } from './images.js';
import { headerMutationArb, regionMutationArb } from './mutations.js';

const sandbox = new Sandbox();
after(() => sandbox.close());

test('headers with valid checksums and hostile fields: typed error or valid reads', async (t) => {
  await fuzz(
    t,
    sandbox,
    fc.asyncProperty(fc.constantFrom(...BASE_NAMES), fc.array(headerMutationArb, { minLength: 1, maxLength: 2 }), fc.nat(), async (name, mutations, readSeed) => {
      const base = await baseImage(name);
      await checkMutated(sandbox, base, mutations, `${name} hostile header`, readSeed);
    }),
    150,
  );
});

test('region tables with valid checksums and hostile entries: typed error or valid reads', async (t) => {
  await fuzzEachBase(t, sandbox, regionMutationArb, 'hostile region table', 150);
});

test('hostile header and region table together: typed error or valid reads', async (t) => {
  await fuzz(
    t,
    sandbox,
    fc.asyncProperty(fc.constantFrom(...BASE_NAMES), headerMutationArb, regionMutationArb, fc.nat(), async (name, header, regions, readSeed) => {
      const base = await baseImage(name);
      await checkMutated(sandbox, base, [header, regions], `${name} hostile header + region table`, readSeed);
    }),
    60,
  );
});
