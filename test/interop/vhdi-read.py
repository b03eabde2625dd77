"""Reads a VHDX virtual disk through libvhdi (pyvhdi) and reports what it saw, as one JSON line.

Usage: vhdi-read.py IMAGE [--compare RAW]

Streams the whole virtual disk in chunks (memory stays small) and prints
{"mediaSize", "bytesPerSector", "diskType", "sha256", "firstDifference"}; with --compare, the
virtual disk is compared byte for byte with RAW and firstDifference is the first mismatching
offset with both byte values (null when identical, including equal length).

Needs Debian's python3-libvhdi, importable only with /usr/bin/python3.
"""
import hashlib
import json
import sys

import pyvhdi

CHUNK = 4 << 20


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--compare"):
        sys.stderr.write("usage: vhdi-read.py IMAGE [--compare RAW]\n")
        return 2
    image = argv[1]
    raw = open(argv[3], "rb") if len(argv) == 4 else None
    f = pyvhdi.file()
    f.open(image)
    try:
        size = f.get_media_size()
        digest = hashlib.sha256()
        first_difference = None
        offset = 0
        while offset < size:
            n = min(CHUNK, size - offset)
            data = f.read_buffer_at_offset(n, offset)
            if len(data) != n:
                raise RuntimeError("short read at %d: %d of %d bytes" % (offset, len(data), n))
            digest.update(data)
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
        print(json.dumps({
            "mediaSize": size,
            "bytesPerSector": f.get_bytes_per_sector(),
            "diskType": f.get_disk_type(),
            "sha256": digest.hexdigest(),
            "firstDifference": first_difference,
        }))
    finally:
        f.close()
        if raw is not None:
            raw.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
