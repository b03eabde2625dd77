/**
 * The zero and copy fast paths of the backends, and the optional native helper behind the Node file
 * backend's (fallocate, copy_file_range). Every backend must give the same bytes as the plain way.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { MemoryBackend } from '../../src/io/memory.js';
import { NodeFileBackend } from '../../src/node/file-backend.js';
import { PowerLossBackend } from '../../src/io/power-loss.js';
import { native } from '../../src/node/native.js';
import { writeZeroBytes, writeZeros, type Backend } from '../../src/io/backend.js';
import { VhdxError } from '../../src/format/errors.js';
import { patternBytes, run, tempDir } from '../helpers.js';
import { rawSource } from '../../src/ops/source.js';

const MiB = 1024 * 1024;

/** A backend with only the required methods: `writeZeros` takes the plain way. */
function plain(inner: Backend): Backend {
  return {
    name: inner.name,
    readOnly: inner.readOnly,
    read: (t, p) => inner.read(t, p),
    write: (d, p) => inner.write(d, p),
    flush: () => inner.flush(),
    size: () => inner.size(),
    truncate: (n) => inner.truncate(n),
    close: () => inner.close(),
  };
}

/** Data, zeros over part of it (small and large ranges), zeros past the end: the same bytes everywhere. */
async function zeroContract(backend: Backend): Promise<Uint8Array> {
  const data = patternBytes(3 * MiB, 7);
  await backend.write(data, 0);
  await writeZeros(backend, 1000, 3000); // small: written as bytes
  await writeZeros(backend, MiB + 4096, MiB); // large, inside the file
  await writeZeros(backend, 3 * MiB + 512, 2 * MiB); // past the end: grows the file
  assert.equal(await backend.size(), 5 * MiB + 512);
  const out = new Uint8Array(5 * MiB + 512);
  let done = 0;
  while (done < out.length) done += await backend.read(out.subarray(done, done + 128 * 1024), done);
  const expected = new Uint8Array(5 * MiB + 512);
  expected.set(data);
  expected.fill(0, 1000, 4000);
  expected.fill(0, MiB + 4096, 2 * MiB + 4096);
  assert.ok(Buffer.from(out).equals(Buffer.from(expected)), 'contents after writeZeros');
  return out;
}

describe('writeZeros: every backend gives the bytes of writing zeros', () => {
  test('memory (fast path) and through the plain fallback', async () => {
    await zeroContract(new MemoryBackend());
    await zeroContract(plain(new MemoryBackend()));
  });

  test('power-loss backend: one recorded operation, durable only after flush', async () => {
    const b = new PowerLossBackend();
    await zeroContract(b);
    const before = b.operations;
    await b.writeZeros(0, 4096);
    assert.equal(b.operations, before + 1);
    const crashed = await b.crashImage('drop', () => 0);
    assert.equal(crashed.length, 0, 'nothing was flushed, so the crash image is empty');
  });

  test('node file: allocated on disk, and the same bytes as the plain way', async () => {
    const dir = tempDir();
    try {
      const fast = await NodeFileBackend.open(join(dir.path, 'fast'), { readOnly: false, create: true });
      const slow = await NodeFileBackend.open(join(dir.path, 'slow'), { readOnly: false, create: true });
      try {
        const a = await zeroContract(fast);
        const b = await zeroContract(plain(slow));
        assert.ok(Buffer.from(a).equals(Buffer.from(b)));
        await fast.flush();
      } finally {
        await fast.close();
        await slow.close();
      }
      const st = statSync(join(dir.path, 'fast'));
      assert.ok(st.blocks * 512 >= st.size, `every byte allocated: ${st.blocks * 512} of ${st.size}`);
    } finally {
      dir.cleanup();
    }
  });

  test('node file opened read-only refuses, and leaves the file alone', async () => {
    const dir = tempDir();
    try {
      const path = join(dir.path, 'ro');
      writeFileSync(path, patternBytes(MiB, 3));
      const b = await NodeFileBackend.open(path, { readOnly: true });
      try {
        await assert.rejects(b.writeZeros(0, MiB), (e: unknown) => e instanceof VhdxError && e.code === 'READ_ONLY');
        await assert.rejects(b.copyFrom(b, 0, 0, 10), (e: unknown) => e instanceof VhdxError && e.code === 'READ_ONLY');
      } finally {
        await b.close();
      }
      assert.ok(readFileSync(path).equals(Buffer.from(patternBytes(MiB, 3))));
    } finally {
      dir.cleanup();
    }
  });

  test('writeZeroBytes writes zero bytes in pieces', async () => {
    const m = new MemoryBackend(patternBytes(3 * MiB, 9));
    await writeZeroBytes(m, 10, 2 * MiB + 5);
    const c = m.contents();
    assert.equal(c.subarray(10, 2 * MiB + 15).some((x) => x !== 0), false);
    assert.notEqual(c[9], 0);
  });
});

describe('copyFrom', () => {
  test('node file to node file copies the bytes; short at the end of the source', async () => {
    const dir = tempDir();
    try {
      const data = patternBytes(5 * MiB + 100, 11);
      writeFileSync(join(dir.path, 'src'), data);
      const src = await NodeFileBackend.open(join(dir.path, 'src'), { readOnly: true });
      const dst = await NodeFileBackend.open(join(dir.path, 'dst'), { readOnly: false, create: true });
      try {
        const n = await dst.copyFrom(src, 4096, 512, 4 * MiB);
        if (native) {
          assert.equal(n, 4 * MiB);
          const got = new Uint8Array(4 * MiB);
          await dst.read(got, 512);
          assert.ok(Buffer.from(got).equals(Buffer.from(data.subarray(4096, 4096 + 4 * MiB))));
          assert.equal(await dst.copyFrom(src, 5 * MiB, 0, MiB), 100, 'the source ends after 100 bytes');
        } else {
          assert.equal(n, 0, 'no native helper: nothing copied, the caller copies');
        }
        assert.equal(await dst.copyFrom(new MemoryBackend(data), 0, 0, 10), 0, 'another kind of backend: the caller copies');
      } finally {
        await src.close();
        await dst.close();
      }
    } finally {
      dir.cleanup();
    }
  });
});

describe('the native helper', () => {
  test('is built and loaded on Linux (the install builds it; VHDX_NATIVE=0 turns it off)', () => {
    if (process.platform !== 'linux' || process.env.VHDX_NATIVE === '0') {
      assert.equal(native, null);
      return;
    }
    assert.notEqual(native, null, 'build/Release/vhdx_native.node is missing: `node scripts/build-native.js` says why');
    assert.equal(native!.fallocate(-1 >>> 0, 0, 0, 1) < 0, true, 'a bad descriptor is an error code, not a throw');
    assert.throws(() => native!.fallocate(0, 0, -1, 1), TypeError, 'negative offsets are refused before any call');
    assert.throws(() => native!.copyFileRangeAsync(0, 0, 1, 0, 2 ** 60), TypeError, 'lengths past 2^53 are refused');
  });

  test('VHDX_NATIVE=0 turns it off', () => {
    const module = fileURLToPath(new URL('../../src/node/native.js', import.meta.url));
    const r = run(process.execPath, ['--input-type=module', '-e', `const { native } = await import(${JSON.stringify(module)}); console.log(native === null)`], {
      env: { VHDX_NATIVE: '0' },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString().trim(), 'true');
  });
});

describe('holes of a raw file: SEEK_DATA through the native helper', () => {
  test('nextData names the next data after a hole, and a raw source skips holes without reading them', async () => {
    assert.ok(native?.seekData, 'the native helper is built with seekData');
    const dir = tempDir('vhdx-holes-');
    try {
      const path = join(dir.path, 'sparse.raw');
      const backend = await NodeFileBackend.open(path, { readOnly: false, create: true });
      await backend.truncate(64 * MiB);
      await backend.write(patternBytes(MiB, 3), 16 * MiB); // data in [16, 17) MiB, holes around it
      await backend.flush();
      assert.equal(backend.nextData(0), 16 * MiB);
      assert.equal(backend.nextData(16 * MiB + 5), 16 * MiB + 5);
      assert.equal(backend.nextData(17 * MiB), Number.POSITIVE_INFINITY);
      const source = rawSource(backend, 64 * MiB);
      assert.equal(await source.knownZero(0, 16 * MiB), true);
      assert.equal(await source.knownZero(0, 16 * MiB + 1), false);
      assert.equal(await source.knownZero(17 * MiB, 47 * MiB), true);
      await backend.close();
      // Without the helper nothing is known, so everything is read.
      const child = run(process.execPath, ['--input-type=module', '-e', `
        const { NodeFileBackend } = await import(${JSON.stringify(new URL('../../src/node/file-backend.js', import.meta.url).href)});
        const b = await NodeFileBackend.open(${JSON.stringify(path)}, { readOnly: true });
        console.log(b.nextData(0));
        await b.close();`], { env: { VHDX_NATIVE: '0' } });
      assert.equal(child.stdout.toString().trim(), '0', child.stderr);
    } finally {
      dir.cleanup();
    }
  });
});
