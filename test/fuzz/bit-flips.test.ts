/**
 * Byte-level corruption aimed at one structure at a time: bit flips, byte and u16/u32/u64 overwrites
 * with extreme values, fills and copies (which duplicate entries). Half the cases re-seal every CRC
 * afterwards, so the corrupted fields reach the validation behind the checksum instead of stopping at it.
 */
import { after, test } from 'node:test';
import fc from 'fast-check';
import { checkMutated, fuzz, Sandbox } from './harness.js';
import { BASE_NAMES, baseImage } from './images.js';
import { AREAS, byteMutationArb } from './mutations.js';

const sandbox = new Sandbox();
after(() => sandbox.close());

const RUNS: Record<(typeof AREAS)[number], number> = {
  fileIdentifier: 15,
  header1: 25,
  header2: 25,
  regionTable1: 30,
  regionTable2: 20,
  metadataTable: 40,
  metadataItems: 40,
  bat: 40,
  log: 40,
  payload: 10,
  anywhere: 30,
};

for (const area of AREAS) {
  test(`bit flips and overwrites in ${area}: typed error or valid reads`, async (t) => {
    await fuzz(
      t,
      sandbox,
      fc.asyncProperty(
        fc.constantFrom(...BASE_NAMES),
        fc.array(byteMutationArb([area]), { minLength: 1, maxLength: 6 }),
        fc.boolean(),
        fc.nat(),
        async (name, mutations, reseal, readSeed) => {
          const base = await baseImage(name);
          await checkMutated(sandbox, base, mutations, `${name} ${area} reseal=${reseal}`, readSeed, reseal);
        },
      ),
      RUNS[area],
    );
  });
}
