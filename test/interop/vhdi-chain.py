"""Reads the top of a chain of VHDX differencing disks through libvhdi (pyvhdi), as one JSON line.

Usage: vhdi-chain.py [--compare RAW] [--dump OUT] IMAGE PARENT [GRANDPARENT ...]

IMAGE is the top of the chain, each following file the parent of the one before it. Every file is
opened with libvhdi and given its parent explicitly (set_parent), deepest first, so libvhdi never
looks for a parent on its own. The whole virtual disk of IMAGE is streamed in chunks and printed as
{"mediaSize", "bytesPerSector", "diskType", "sha256", "firstDifference", "layers"}, where "layers"
lists, top first, each file's diskType, identifier and parentIdentifier as libvhdi reports them.
With --compare, firstDifference is the first offset where the disk differs from RAW (with both byte
values), or null when they are identical, including in length. With --dump, the virtual disk as
libvhdi reads it is also written to OUT (so a test can compare every byte, not just the first difference).

Needs Debian's python3-libvhdi, importable only with /usr/bin/python3.
"""
import hashlib
import json
import sys

import pyvhdi

CHUNK = 4 << 20


def guid_text(value):
    """libvhdi returns identifiers as uuid.UUID or bytes depending on the version: normalize to text."""
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray)):
        return value.hex()
    return str(value).lower()


def main(argv):
    args = argv[1:]
    raw_path = None
    dump_path = None
    while len(args) >= 2 and args[0] in ("--compare", "--dump"):
        if args[0] == "--compare":
            raw_path = args[1]
        else:
            dump_path = args[1]
        args = args[2:]
    if len(args) < 2:
        sys.stderr.write("usage: vhdi-chain.py [--compare RAW] [--dump OUT] IMAGE PARENT [GRANDPARENT ...]\n")
        return 2
    files = []
    try:
        for path in args:
            f = pyvhdi.file()
            f.open(path)
            files.append(f)
        # Deepest first: a parent must be complete before its child is given it.
        for i in range(len(files) - 2, -1, -1):
            files[i].set_parent(files[i + 1])
        layers = []
        for f in files:
            parent_id = None
            if f.get_disk_type() == 4:
                parent_id = guid_text(f.get_parent_identifier())
            layers.append({"diskType": f.get_disk_type(), "identifier": guid_text(f.get_identifier()), "parentIdentifier": parent_id})
        top = files[0]
        size = top.get_media_size()
        raw = open(raw_path, "rb") if raw_path is not None else None
        dump = open(dump_path, "wb") if dump_path is not None else None
        try:
            digest = hashlib.sha256()
            first_difference = None
            offset = 0
            while offset < size:
                n = min(CHUNK, size - offset)
                data = top.read_buffer_at_offset(n, offset)
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
        print(json.dumps({
            "mediaSize": size,
            "bytesPerSector": top.get_bytes_per_sector(),
            "diskType": top.get_disk_type(),
            "sha256": digest.hexdigest(),
            "firstDifference": first_difference,
            "layers": layers,
        }))
    finally:
        for f in files:
            f.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
