#!/usr/bin/env bash
# The GPU kit's mpirun (tests/gpu/pack.sh copies it to <kit>/ompi/bin/mpirun and mpiexec):
# Open MPI's orterun from the kit, with the kit's environment (env.sh two folders up), so that
# it runs from wherever the kit lies, also from a scrubbed environment (env -i).
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/gpu/kit-env.sh
source "$here/../../env.sh"
exec "$here/orterun" "$@"
