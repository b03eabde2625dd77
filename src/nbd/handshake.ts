/**
 * The fixed newstyle handshake (NBD protocol, "Option haggling"): greeting, client flags, then options
 * until the client asks for an export with NBD_OPT.GO or NBD_OPT.EXPORT_NAME, or gives up.
 */
import * as P from './protocol.js';
import { MAX_REQUEST, type Shared, type Wire } from './wire.js';

/** Options with more data than this end the handshake (a client sending megabytes of option data is not a client). */
const MAX_OPTION_LENGTH = 64 * 1024;
/** Options per connection before the server gives up on the client. */
const MAX_OPTIONS = 256;
/** The metadata context id of `base:allocation` in block status replies. */
export const BASE_ALLOCATION_ID = 1;

/** What the client chose during the handshake. */
export interface Negotiated {
  structured: boolean;
  baseAllocation: boolean;
}

function transmissionFlags(shared: Shared, structured: boolean): number {
  let flags = P.NBD_FLAG_HAS_FLAGS | P.NBD_FLAG_SEND_FLUSH | P.NBD_FLAG_SEND_FUA | P.NBD_FLAG_SEND_CACHE;
  flags |= shared.readOnly ? P.NBD_FLAG_READ_ONLY : P.NBD_FLAG_SEND_TRIM | P.NBD_FLAG_SEND_WRITE_ZEROES;
  if (structured) flags |= P.NBD_FLAG_SEND_DF;
  if (shared.multiConn) flags |= P.NBD_FLAG_CAN_MULTI_CONN;
  return flags;
}

/** Option haggling; what was negotiated once the client entered transmission, or null if it never did. */
export async function negotiate(wire: Wire, shared: Shared): Promise<Negotiated | null> {
  const { image } = shared;
  const chosen: Negotiated = { structured: false, baseAllocation: false };
  const knownExport = (name: string): boolean => name === shared.exportName || name === '';
  wire.send(P.encodeGreeting(P.NBD_FLAG_FIXED_NEWSTYLE | P.NBD_FLAG_NO_ZEROES));
  const clientFlagBytes = await wire.input.read(4);
  if (!clientFlagBytes) return null;
  const clientFlags = clientFlagBytes.readUInt32BE(0);
  if (clientFlags & ~(P.NBD_FLAG_C_FIXED_NEWSTYLE | P.NBD_FLAG_C_NO_ZEROES)) {
    wire.hangUp(`unknown client flags 0x${clientFlags.toString(16)}`);
    return null;
  }
  const noZeroes = (clientFlags & P.NBD_FLAG_C_NO_ZEROES) !== 0;
  for (let count = 0; ; count++) {
    if (count >= MAX_OPTIONS) {
      wire.hangUp(`more than ${MAX_OPTIONS} options`);
      return null;
    }
    const headerBytes = await wire.input.read(P.OPTION_HEADER_SIZE);
    if (!headerBytes) return null;
    const { magicOk, option, length } = P.decodeOptionHeader(headerBytes);
    if (!magicOk) {
      wire.hangUp('bad option magic');
      return null;
    }
    if (length > MAX_OPTION_LENGTH) {
      wire.hangUp(`option ${option} with ${length} bytes of data`);
      return null;
    }
    const data = await wire.input.read(length);
    if (!data) return null;
    if (shared.shuttingDown && option !== P.NBD_OPT.ABORT) {
      wire.send(P.encodeOptionError(option, P.NBD_REP.ERR_SHUTDOWN, 'server is shutting down'));
      continue;
    }
    const reply = (type: number, payload?: Uint8Array): void => wire.send(P.encodeOptionReply(option, type, payload));
    const error = (type: number, message: string): void => wire.send(P.encodeOptionError(option, type, message));
    switch (option) {
      case P.NBD_OPT.EXPORT_NAME: {
        const name = new TextDecoder().decode(data);
        if (!knownExport(name)) {
          wire.hangUp(`unknown export ${JSON.stringify(name)}`);
          return null;
        }
        wire.send(P.encodeExportNameReply(image.virtualSize, transmissionFlags(shared, chosen.structured), noZeroes));
        return chosen;
      }
      case P.NBD_OPT.ABORT:
        reply(P.NBD_REP.ACK);
        wire.reason = 'client aborted the handshake';
        wire.socket.end();
        return null;
      case P.NBD_OPT.LIST:
        if (length !== 0) error(P.NBD_REP.ERR_INVALID, 'NBD_OPT.LIST takes no data');
        else {
          reply(P.NBD_REP.SERVER, P.encodeServerReplyData(shared.exportName));
          reply(P.NBD_REP.ACK);
        }
        break;
      case P.NBD_OPT.STARTTLS:
        error(P.NBD_REP.ERR_POLICY, 'TLS is not supported by this server');
        break;
      case P.NBD_OPT.INFO:
      case P.NBD_OPT.GO: {
        const request = P.decodeInfoRequest(data);
        if (!request) {
          error(P.NBD_REP.ERR_INVALID, 'malformed NBD_OPT.INFO/GO data');
          break;
        }
        if (!knownExport(request.name)) {
          error(P.NBD_REP.ERR_UNKNOWN, `no export named ${JSON.stringify(request.name)}`);
          break;
        }
        reply(P.NBD_REP.INFO, P.encodeInfoExport(image.virtualSize, transmissionFlags(shared, chosen.structured)));
        if (request.requests.includes(P.NBD_INFO.NAME)) reply(P.NBD_REP.INFO, P.encodeInfoName(shared.exportName));
        if (request.requests.includes(P.NBD_INFO.DESCRIPTION)) reply(P.NBD_REP.INFO, P.encodeInfoDescription(image.description ?? `VHDX ${image.type} image`));
        const minimum = image.logicalSectorSize;
        reply(P.NBD_REP.INFO, P.encodeInfoBlockSize(minimum, Math.max(minimum, image.physicalSectorSize), MAX_REQUEST));
        reply(P.NBD_REP.ACK);
        if (option === P.NBD_OPT.GO) return chosen;
        break;
      }
      case P.NBD_OPT.STRUCTURED_REPLY:
        if (length !== 0) error(P.NBD_REP.ERR_INVALID, 'NBD_OPT.STRUCTURED_REPLY takes no data');
        else {
          chosen.structured = true;
          reply(P.NBD_REP.ACK);
        }
        break;
      case P.NBD_OPT.LIST_META_CONTEXT:
      case P.NBD_OPT.SET_META_CONTEXT: {
        if (!chosen.structured) {
          error(P.NBD_REP.ERR_INVALID, 'negotiate structured replies first');
          break;
        }
        const request = P.decodeMetaContextRequest(data);
        if (!request) {
          error(P.NBD_REP.ERR_INVALID, 'malformed meta context request');
          break;
        }
        if (!knownExport(request.exportName)) {
          error(P.NBD_REP.ERR_UNKNOWN, `no export named ${JSON.stringify(request.exportName)}`);
          break;
        }
        const list = option === P.NBD_OPT.LIST_META_CONTEXT;
        const matches = list
          ? request.queries.length === 0 || request.queries.some((q) => q === 'base:' || q === P.BASE_ALLOCATION)
          : request.queries.includes(P.BASE_ALLOCATION);
        if (!list) chosen.baseAllocation = matches;
        if (matches) reply(P.NBD_REP.META_CONTEXT, P.encodeMetaContextReplyData(list ? 0 : BASE_ALLOCATION_ID, P.BASE_ALLOCATION));
        reply(P.NBD_REP.ACK);
        break;
      }
      default:
        error(P.NBD_REP.ERR_UNSUP, `option ${option} is not supported`);
    }
  }
}
