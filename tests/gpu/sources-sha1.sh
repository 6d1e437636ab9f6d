#!/usr/bin/env bash
# Prints the sha1 of every source file a kit is built from (pack.sh writes it to the kit's
# sources.sha1; kit-run.sh checks the tree it runs in against it), paths relative to the repo:
#   tests/gpu/sources-sha1.sh > sources.sha1
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
find runtime launcher models samplers tests CMakeLists.txt -type f \
  \( -name '*.cpp' -o -name '*.h' -o -name '*.cu' -o -name '*.cuh' -o -name CMakeLists.txt \) \
  2> /dev/null | LC_ALL=C sort | xargs sha1sum
