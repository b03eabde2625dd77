import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { MemoryBackend } from '../../src/io/memory.js';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { readExactly, type Backend } from '../../src/io/backend.js';
import { VhdxError } from '../../src/format/errors.js';
import { tempDir } from '../helpers.js';

async function contract(backend: Backend): Promise<void> {
  assert.equal(await backend.size(), 0);
  await backend.write(new Uint8Array([1, 2, 3]), 10);
  assert.equal(await backend.size(), 13);
  const all = new Uint8Array(20);
  assert.equal(await backend.read(all, 0), 13, 'short read at EOF');
  assert.deepEqual([...all.subarray(0, 13)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3]);
  assert.equal(await backend.read(new Uint8Array(4), 100), 0);
  await backend.truncate(11);
  assert.equal(await backend.size(), 11);
  await backend.truncate(16);
  const grown = new Uint8Array(16);
  await backend.read(grown, 0);
  assert.deepEqual([...grown.subarray(10)], [1, 0, 0, 0, 0, 0], 'bytes past a shrink read as zero after growing again');
  await backend.flush();
  await assert.rejects(readExactly(backend, 10, 10, 'thing'), (e: unknown) => e instanceof VhdxError && e.code === 'TRUNCATED');
}

describe('backends honour one contract', () => {
  test('memory', async () => {
    await contract(new MemoryBackend());
  });

  test('node file', async () => {
    const dir = tempDir();
    try {
      const path = join(dir.path, 'f');
      const b = await NodeFileBackend.open(path, { readOnly: false, create: true });
      await contract(b);
      await b.close();
      assert.equal(statSync(path).size, 16);
    } finally {
      dir.cleanup();
    }
  });
});

describe('read-only backends refuse to write', () => {
  test('memory', async () => {
    const b = new MemoryBackend(new Uint8Array(8), { readOnly: true });
    await assert.rejects(b.write(new Uint8Array(1), 0), (e: unknown) => e instanceof VhdxError && e.code === 'READ_ONLY');
    await assert.rejects(b.truncate(0), (e: unknown) => e instanceof VhdxError && e.code === 'READ_ONLY');
  });

  test('node file: refused and the file is unchanged', async () => {
    const dir = tempDir();
    try {
      const path = join(dir.path, 'f');
      writeFileSync(path, Buffer.from('hello'));
      const b = await NodeFileBackend.open(path, { readOnly: true });
      await assert.rejects(b.write(new Uint8Array(1), 0), (e: unknown) => e instanceof VhdxError && e.code === 'READ_ONLY');
      await b.close();
      assert.equal(readFileSync(path, 'utf8'), 'hello');
    } finally {
      dir.cleanup();
    }
  });

  test('node file: missing file is NOT_FOUND naming the path', async () => {
    await assert.rejects(NodeFileBackend.open('/nonexistent/x.vhdx'), (e: unknown) => e instanceof VhdxError && e.code === 'NOT_FOUND' && e.file === '/nonexistent/x.vhdx');
  });
});
