/**
 * Check reports how far its block table scan has come (`onProgress`, a fraction): a page at a time for
 * a table read lazily, once for one read whole; never backwards, ending at 1. The command draws it.
 */
import { strict as assert } from 'node:assert';
import { describe, test } from 'node:test';
import { MemoryBackend } from '../../src/io/memory.js';
import { create } from '../../src/ops/create.js';
import { check } from '../../src/ops/check.js';
import { MiB } from '../../src/format/bytes.js';

async function progressOf(virtualSize: number, repair = false): Promise<{ fractions: number[]; verdict: string }> {
  const backend = new MemoryBackend(undefined, { name: 'progress.vhdx' });
  await create(backend, { virtualSize, blockSize: MiB });
  const fractions: number[] = [];
  const report = await check(backend, { repair, onProgress: (f) => fractions.push(f) });
  return { fractions, verdict: report.verdict };
}

describe('check progress', () => {
  test('a 1 TiB image (an 8 MiB table, read a 1 MiB page at a time): one report per page, rising to 1', async () => {
    const { fractions, verdict } = await progressOf(2 ** 40);
    assert.equal(verdict, 'clean');
    assert.ok(fractions.length >= 8, `a report per page: ${fractions.length}`);
    for (let i = 1; i < fractions.length; i++) assert.ok(fractions[i]! > fractions[i - 1]!, `rising: ${fractions.join(', ')}`);
    assert.ok(fractions[0]! > 0 && fractions[0]! < 0.2, `the first page is a small part: ${fractions[0]}`);
    assert.equal(fractions.at(-1), 1);
  });

  test('a small image (its table read whole) reports once, done', async () => {
    const { fractions } = await progressOf(64 * MiB);
    assert.deepEqual(fractions, [1]);
  });
});
