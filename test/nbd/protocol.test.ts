/** Codec tests for src/nbd/protocol.ts: exact bytes of the handshake, options, requests and replies. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as P from '../../src/nbd/protocol.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

describe('NBD protocol codecs', () => {
  it('greeting: NBDMAGIC, IHAVEOPT, handshake flags', () => {
    assert.equal(hex(P.encodeGreeting(3)), Buffer.from('NBDMAGICIHAVEOPT').toString('hex') + '0003');
  });

  it('option header and replies', () => {
    const header = Buffer.concat([Buffer.from('IHAVEOPT'), Buffer.from([0, 0, 0, 7, 0, 0, 0, 6])]);
    assert.deepEqual(P.decodeOptionHeader(header), { magicOk: true, option: 7, length: 6 });
    assert.equal(P.decodeOptionHeader(Buffer.alloc(16)).magicOk, false);
    const reply = P.encodeOptionReply(7, P.NBD_REP.ERR_UNKNOWN, new Uint8Array([1, 2]));
    assert.equal(hex(reply), '0003e889045565a9' + '00000007' + '80000006' + '00000002' + '0102');
  });

  it('INFO/GO requests: name, info types; malformed data is refused', () => {
    const ok = Buffer.from([0, 0, 0, 2, 0x61, 0x62, 0, 2, 0, 3, 0, 1]);
    assert.deepEqual(P.decodeInfoRequest(ok), { name: 'ab', requests: [3, 1] });
    assert.equal(P.decodeInfoRequest(ok.subarray(0, 11)), null, 'short');
    assert.equal(P.decodeInfoRequest(Buffer.concat([ok, Buffer.from([0])])), null, 'trailing byte');
    assert.equal(P.decodeInfoRequest(Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0])), null, 'name length past the data');
    assert.equal(P.decodeInfoRequest(Buffer.from([0, 0, 0, 1, 0, 0, 0])), null, 'NUL in the name');
  });

  it('meta context requests', () => {
    const q = Buffer.from('base:allocation');
    const data = Buffer.concat([Buffer.from([0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, q.length]), q]);
    assert.deepEqual(P.decodeMetaContextRequest(data), { exportName: '', queries: ['base:allocation'] });
    assert.equal(P.decodeMetaContextRequest(data.subarray(0, data.length - 1)), null);
    assert.equal(P.decodeMetaContextRequest(Buffer.from([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff])), null, 'a count with no queries');
    assert.equal(P.NBD_OPT.LIST_META_CONTEXT, 9);
    assert.equal(P.NBD_OPT.SET_META_CONTEXT, 10);
  });

  it('requests round-trip; offsets past 2^53 decode as Infinity', () => {
    const handle = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
    const bytes = P.encodeRequest(P.NBD_CMD.WRITE, P.NBD_CMD_FLAG.FUA, handle, 2 ** 40 + 5, 4096);
    assert.equal(hex(bytes), '25609513' + '0001' + '0001' + '0102030405060708' + '0000010000000005' + '00001000');
    const r = P.decodeRequest(bytes);
    assert.deepEqual({ ...r, handle: [...r.handle] }, { magicOk: true, flags: 1, type: 1, handle: [1, 2, 3, 4, 5, 6, 7, 8], offset: 2 ** 40 + 5, length: 4096 });
    const huge = Buffer.from(bytes);
    huge.writeUInt32BE(0xffffffff, 16);
    assert.equal(P.decodeRequest(huge).offset, Infinity);
  });

  it('replies: simple, data, hole, error, block status, export name', () => {
    const h = new Uint8Array(8).fill(9);
    assert.equal(hex(P.encodeSimpleReply(22, h)), '67446698' + '00000016' + '09'.repeat(8));
    assert.equal(hex(P.encodeDataChunkHeader(1, h, 512, 100)), '668e33ef' + '0001' + '0001' + '09'.repeat(8) + '0000006c' + '0000000000000200');
    assert.equal(hex(P.encodeHoleChunk(0, h, 0, 4096)), '668e33ef' + '0000' + '0002' + '09'.repeat(8) + '0000000c' + '0000000000000000' + '00001000');
    assert.equal(hex(P.encodeErrorChunk(h, 5, 'x')), '668e33ef' + '0001' + '8001' + '09'.repeat(8) + '00000007' + '00000005' + '0001' + '78');
    assert.equal(
      hex(P.encodeBlockStatusChunk(h, 1, [{ length: 512, flags: 0 }, { length: 1024, flags: 3 }])),
      '668e33ef' + '0001' + '0005' + '09'.repeat(8) + '00000014' + '00000001' + '00000200' + '00000000' + '00000400' + '00000003',
    );
    assert.equal(P.encodeExportNameReply(1024, 1, true).length, 10);
    assert.equal(P.encodeExportNameReply(1024, 1, false).length, 134);
    assert.equal(hex(P.encodeInfoBlockSize(512, 4096, 1 << 25)), '0003' + '00000200' + '00001000' + '02000000');
  });
});
