#!/usr/bin/env python3
"""Bytes a row of each column in a table's Parquet files, and their encodings.

    $CARGO_TARGET_DIR/python-venv/bin/python benches/parquet_columns.py <files or directories>...

Reads the footers of the Parquet files given (a directory is searched for
`*.parquet` at any depth; give a table's directory of a data root, such as
`<root>/benchmark/cpu`, or a harness run kept with `--keep-root`) and prints,
per column, the compressed bytes a row over all of them, the encodings its
pages use, and the total. Only footers are read. Needs pyarrow (tests/run
installs it in the virtualenv under the target directory).
"""

import argparse
import os
import sys

import pyarrow.parquet as pq


def parquet_files(paths):
    for path in paths:
        if os.path.isdir(path):
            for directory, _, names in os.walk(path):
                yield from (os.path.join(directory, n) for n in sorted(names) if n.endswith(".parquet"))
        else:
            yield path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="+", help="Parquet files, or directories to search for them")
    args = parser.parse_args()
    rows, columns, files = 0, {}, 0
    for path in parquet_files(args.paths):
        metadata = pq.ParquetFile(path).metadata
        files += 1
        rows += metadata.num_rows
        for g in range(metadata.num_row_groups):
            group = metadata.row_group(g)
            for c in range(group.num_columns):
                chunk = group.column(c)
                entry = columns.setdefault(chunk.path_in_schema, [0, set(), chunk.physical_type])
                entry[0] += chunk.total_compressed_size
                entry[1].update(chunk.encodings)
    if not rows:
        print("no rows in the files given", file=sys.stderr)
        return 1
    print(f"{files} files, {rows:,} rows")
    print(f"| Column | Type | Bytes a row | Encodings |\n|---|---|---|---|")
    for name, (size, encodings, physical) in columns.items():
        print(f"| {name} | {physical} | {size / rows:.3f} | {', '.join(sorted(encodings))} |")
    total = sum(size for size, _, _ in columns.values())
    print(f"| all columns | | {total / rows:.3f} | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
