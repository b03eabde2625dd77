"""The read loop shared by vhdi-read.py and vhdi-chain.py: streams a whole virtual disk through
libvhdi in chunks (memory stays small), hashing it and optionally comparing it with a raw file and
copying it to another."""
import hashlib

CHUNK = 4 << 20


def stream(f, raw_path=None, dump_path=None):
    """Reads all of pyvhdi file `f`. Returns (media size, sha256 hex, first difference from the raw
    file at raw_path or None): the first mismatching offset with both byte values, or a note that the
    raw file is longer. With dump_path, the bytes read are also written there."""
    size = f.get_media_size()
    digest = hashlib.sha256()
    first_difference = None
    raw = open(raw_path, "rb") if raw_path is not None else None
    dump = open(dump_path, "wb") if dump_path is not None else None
    try:
        offset = 0
        while offset < size:
            n = min(CHUNK, size - offset)
            data = f.read_buffer_at_offset(n, offset)
            if len(data) != n:
                raise RuntimeError("short read at %d: %d of %d bytes" % (offset, len(data), n))
            digest.update(data)
            if dump is not None:
                dump.write(data)
            if raw is not None and first_difference is None:
                expected = raw.read(n)
                if expected != data:
                    i = next((k for k in range(min(len(expected), n)) if expected[k] != data[k]), min(len(expected), n))
                    first_difference = {
                        "offset": offset + i,
                        "libvhdi": data[i] if i < n else None,
                        "expected": expected[i] if i < len(expected) else None,
                    }
            offset += n
        if raw is not None and first_difference is None and raw.read(1):
            first_difference = {"offset": size, "libvhdi": None, "expected": "raw file is longer"}
    finally:
        if raw is not None:
            raw.close()
        if dump is not None:
            dump.close()
    return size, digest.hexdigest(), first_difference
