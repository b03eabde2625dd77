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
import json
import sys

import pyvhdi

from vhdi_stream import stream


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
        size, sha256, first_difference = stream(top, raw_path=raw_path, dump_path=dump_path)
        print(json.dumps({
            "mediaSize": size,
            "bytesPerSector": top.get_bytes_per_sector(),
            "diskType": top.get_disk_type(),
            "sha256": sha256,
            "firstDifference": first_difference,
            "layers": layers,
        }))
    finally:
        for f in files:
            f.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
