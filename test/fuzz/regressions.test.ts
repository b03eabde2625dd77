/**
 * Deterministic companions of the fuzz properties:
 * - the unmutated base images pass the very checks the fuzz cases must pass, and read back their data;
 * - the harness itself catches each kind of violation it claims to (plain exception, hang, slowness,
 *   oversized allocation, write, changed bytes, heap exhaustion), so a green property means something;
 * - the counterexamples the properties found, pinned as plain tests (they fail until the library is fixed).
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { MemoryBackend } from '../../src/io/memory.js';
import { VhdxImage } from '../../src/image/image.js';
import { checkCase, checkMutated, problemsOf, Sandbox, type Probe } from './harness.js';
import { BASE_NAMES, baseImage, BIG_LOG_BASE, HUGE_LOG_BASE, knownContent, MiB } from './images.js';
import type { Mutation } from './mutations.js';

const sandbox = new Sandbox();
after(() => sandbox.close());

test('every base image opens read-only and reads back what it was built with', async () => {
  for (const name of [...BASE_NAMES, BIG_LOG_BASE, HUGE_LOG_BASE]) {
    const base = await baseImage(name);
    const image = await VhdxImage.open(new MemoryBackend(base.bytes.slice(), { readOnly: true }), { readOnly: true });
    assert.equal(image.info().logState, name.startsWith('dirty') ? 'replayed-in-memory' : 'empty', name);
    for (const { offset, data } of knownContent(name)) {
      assert.deepEqual(await image.read(offset, data.length), data, `${name} at ${offset}`);
    }
    await image.close();
  }
});

test('every base image passes the fuzz checks unmutated', async () => {
  for (const name of [...BASE_NAMES, BIG_LOG_BASE]) {
    const base = await baseImage(name);
    for (const seed of [1, 2, 3]) {
      const result = await checkCase(sandbox, base.bytes, `${name} unmutated`, seed);
      assert.equal(result.outcome, 'opened', name);
    }
  }
});

const PROBES: { probe: Probe; expect: RegExp }[] = [
  { probe: 'throw-plain', expect: /threw TypeError \(not a VhdxError\)/ },
  { probe: 'hang', expect: /hung/ },
  { probe: 'slow', expect: /took \d+ ms \(limit 1000 ms\)/ },
  { probe: 'allocate', expect: /allocation of \d+ bytes/ },
  { probe: 'write', expect: /write of 1 bytes at 0 on a read-only open/ },
  { probe: 'mutate', expect: /image bytes changed/ },
  { probe: 'oom', expect: /ran out of its 512 MiB heap|hung/ },
];

for (const { probe, expect } of PROBES) {
  test(`the harness reports a case that misbehaves: ${probe}`, async () => {
    const base = await baseImage('dynamic-windows-512');
    const result = await sandbox.run(base.bytes, 3, probe);
    const problems = problemsOf(result).join('\n');
    assert.match(problems, expect);
    // And the sandbox is usable afterwards (a fresh worker after a hang or a crash).
    assert.deepEqual(problemsOf(await sandbox.run(base.bytes, 3)), []);
  });
}

// ---------------------------------------------------------------- counterexamples found by the properties

/**
 * Found by "a log that extends the file, with the BAT and metadata moved into the extension" (log.test):
 * a 7 MiB image whose dirty log's head entry says LastFileOffset = 64 GiB (valid CRC) may declare a
 * 513 MiB BAT region that lies almost entirely past the real end of the file, and an 8 TiB disk. The
 * open validates regions against the log-extended size and reads a 64 MiB BAT (512 MiB with a 64 TiB
 * disk) from a file that has 7.
 */
for (const { name, how, to, virtualSize, label } of [
  { name: 'a log LastFileOffset far past the end does not size the BAT read', how: 'lastFileOffset', to: 2n ** 36n, virtualSize: 2n ** 43n, label: 'LastFileOffset 2^36, BAT region 513 MiB, virtual size 2^43' },
  { name: 'the same with a 64 TiB disk and a zero descriptor reaching 2^46', how: 'zeroDescriptor', to: 2n ** 46n, virtualSize: 2n ** 46n, label: 'zero descriptor to 2^46, BAT region 513 MiB, virtual size 2^46' },
] as const) {
  test(`regression: ${name}`, async () => {
    const base = await baseImage('dynamic-windows-512');
    const mutation: Mutation = { kind: 'extendByLog', how, to: { raw: to }, bat: 'keep', batLength: 513 * MiB, metadata: 'keep', virtualSize, blockSize: 'keep' };
    await checkMutated(sandbox, base, [mutation], label, 1);
  });
}

/**
 * Found by "differencing disks with a hostile parent locator" (metadata.test) and by the stacked
 * property (which shrank it to 100 pairs): key/value pairs in one 896 KiB locator item, every value the
 * same 65534-byte slice. 100 pairs take seconds and ~175 MiB of heap; this pins 200.
 */
test('regression: a parent locator whose values all overlap decodes quickly', async () => {
  const base = await baseImage('dynamic-windows-512');
  const mutation: Mutation = {
    kind: 'parentLocator',
    itemOffset: 64 * 1024 + 4096,
    itemLength: 896 * 1024,
    count: 200,
    shape: 'sliding-keys',
    keyLength: 2,
    valueLength: 65534,
    fill: 'counter',
    seed: 0,
  };
  await checkMutated(sandbox, base, [mutation], '200 locator values over one 64 KiB slice', 1);
});

/**
 * Found by "a log ring full of valid entries" (log.test), there with 4095 entries in a 16 MiB log:
 * valid one-sector entries with consecutive sequence numbers, none closing a sequence (the head's Tail
 * names the empty last sector). The scan restarts at every sector and walks the rest of the chain each
 * time: quadratic in the entry count. Pinned here with a 64 MiB log (16383 entries).
 */
test('regression: a log of chained entries that never complete is scanned quickly', async () => {
  const base = await baseImage(HUGE_LOG_BASE);
  const mutation: Mutation = { kind: 'log', flood: { mode: 'chain', count: 16383, tail: 'outside' }, clear: true, start: { at: 'zero' }, firstSequence: 1000n, entries: [] };
  await checkMutated(sandbox, base, [mutation], '16383 chained entries, tail outside', 0);
});

/**
 * Found by the same property (shrunk to 255 entries in the 16 MiB log): valid entries each padded to
 * end where the flooded area ends, so each lies inside the previous one. Every start offset decodes an
 * entry and checksums all of it: quadratic in bytes. Pinned with 1023 entries (4 MiB of a 16 MiB log).
 */
test('regression: nested padded log entries are scanned quickly', async () => {
  const base = await baseImage(BIG_LOG_BASE);
  const mutation: Mutation = { kind: 'log', flood: { mode: 'nested', count: 1023, tail: 'outside' }, clear: true, start: { at: 'zero' }, firstSequence: 1n, entries: [] };
  await checkMutated(sandbox, base, [mutation], '1023 nested entries, tail outside', 0);
});
