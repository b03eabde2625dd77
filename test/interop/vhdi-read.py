"""Reads a VHDX virtual disk through libvhdi (pyvhdi) and reports what it saw, as one JSON line.

Usage: vhdi-read.py IMAGE [--compare RAW]

Streams the whole virtual disk in chunks (memory stays small) and prints
{"mediaSize", "bytesPerSector", "diskType", "sha256", "firstDifference"}; with --compare, the
virtual disk is compared byte for byte with RAW and firstDifference is the first mismatching
offset with both byte values (null when identical, including equal length).

Needs Debian's python3-libvhdi, importable only with /usr/bin/python3.
"""
import json
import sys

import pyvhdi

from vhdi_stream import stream


def main(argv):
    if len(argv) not in (2, 4) or (len(argv) == 4 and argv[2] != "--compare"):
        sys.stderr.write("usage: vhdi-read.py IMAGE [--compare RAW]\n")
        return 2
    image = argv[1]
    f = pyvhdi.file()
    f.open(image)
    try:
        size, sha256, first_difference = stream(f, raw_path=argv[3] if len(argv) == 4 else None)
        print(json.dumps({
            "mediaSize": size,
            "bytesPerSector": f.get_bytes_per_sector(),
            "diskType": f.get_disk_type(),
            "sha256": sha256,
            "firstDifference": first_difference,
        }))
    finally:
        f.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
