/**
 * Logs whose entries carry VALID checksums but absurd fields: EntryLength zero, unaligned, longer than
 * the log; DescriptorCount up to 2^32-1; descriptors aimed at offset 0, the headers, 2^46 or 2^60; zero
 * descriptors with huge ZeroLength; Tail outside the log or outside the sequence; FlushedFileOffset
 * and LastFileOffset beyond the file; sequence numbers that wrap; entries that wrap around the ring;
 * data sectors that rewrite the region table, metadata or BAT with hostile values.
 */
import { after, test } from 'node:test';
import fc from 'fast-check';
import { checkMutated, fuzz, Sandbox, fuzzEachBase } from './harness.js';
import { BASE_NAMES, baseImage, BIG_LOG_BASE, DIRTY_BASES, type BaseName } from './images.js';
import { byteMutationArb, extendMutationArb, logFloodArb, logMutationArb, metadataMutationArb, regionMutationArb, type Mutation } from './mutations.js';

const sandbox = new Sandbox();
after(() => sandbox.close());

test('log entries with valid checksums and absurd fields: typed error or valid reads', async (t) => {
  await fuzzEachBase(t, sandbox, logMutationArb, 'hostile log', 200);
});

test('bit flips in real dirty logs, re-sealed: typed error or valid reads', async (t) => {
  await fuzz(
    t,
    sandbox,
    fc.asyncProperty(fc.constantFrom(...DIRTY_BASES), fc.array(byteMutationArb(['log']), { minLength: 1, maxLength: 4 }), fc.nat(), async (name, mutations, readSeed) => {
      const base = await baseImage(name);
      await checkMutated(sandbox, base, mutations, `${name} re-sealed log corruption`, readSeed, true);
    }),
    80,
  );
});

/**
 * A dirty log may say the file is longer than it is (LastFileOffset, or a descriptor past the end), and
 * the region table and metadata may then place structures in that space. Each arbitrary is biased
 * towards such combinations: the log extends the file, the regions move into or past the extension,
 * the metadata claims a large disk.
 */
test('a log that extends the file, with structures placed past the real end: typed error or valid reads', async (t) => {
  const extendingLog = logMutationArb.map((m) => ({
    ...m,
    entries: m.entries.map((e, i) => (i === m.entries.length - 1 ? { ...e, sequence: 'next' as const, tail: 'first' as const, patches: [], reseal: true } : { ...e, sequence: 'next' as const, patches: [], reseal: true })),
  }));
  await fuzz(
    t,
    sandbox,
    fc.asyncProperty(
      fc.constantFrom(...BASE_NAMES),
      extendingLog,
      fc.option(regionMutationArb, { nil: undefined }),
      fc.option(metadataMutationArb.map((m) => ({ ...m, count: null, edits: [], extra: [] })), { nil: undefined }),
      fc.nat(),
      async (name, log, regions, metadata, readSeed) => {
        const base = await baseImage(name);
        const mutations: Mutation[] = [log];
        if (regions) mutations.push(regions);
        if (metadata) mutations.push(metadata);
        await checkMutated(sandbox, base, mutations, `${name} extending log + structures`, readSeed);
      },
    ),
    150,
  );
});

test('a log that extends the file, with the BAT and metadata moved into the extension: typed error or valid reads', async (t) => {
  await fuzzEachBase(t, sandbox, extendMutationArb, 'log-extended file', 100);
});

/**
 * The ring filled with many entries that are each valid (correct CRC, LogGuid, sequence numbers), back
 * to back or nested inside each other's padding, with tails that do or do not close a sequence. Finding
 * the active sequence must stay fast however the entries are arranged.
 */
test('a log ring full of valid entries: typed error or valid reads within the time limit', async (t) => {
  await fuzz(
    t,
    sandbox,
    fc.asyncProperty(
      fc.constantFrom<BaseName>(BIG_LOG_BASE, BIG_LOG_BASE, BIG_LOG_BASE, 'dynamic-windows-512', 'dirty-qemu-4k-wrap'),
      logFloodArb,
      fc.constantFrom(1n, 1000n, 2n ** 64n - 100n),
      fc.nat(),
      async (name, flood, firstSequence, readSeed) => {
        const base = await baseImage(name);
        const mutation: Mutation = { kind: 'log', flood, clear: true, start: { at: 'zero' }, firstSequence, entries: [] };
        await checkMutated(sandbox, base, [mutation], `${name} log flood`, readSeed);
      },
    ),
    30,
  );
});
