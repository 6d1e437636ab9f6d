# shellcheck shell=bash
# The environment of a GPU kit (tests/gpu/pack.sh copies this file into the kit as env.sh):
#   source .gpu-kit/env.sh
# puts the kit's binaries and its Open MPI first on PATH and LD_LIBRARY_PATH, relocates that
# Open MPI (and its PMIx) to the kit wherever the kit lies, unpacks the libraries the kit holds
# compressed, and finds on this machine what the kit leaves out: the CUDA driver (libcuda) and
# the big CUDA libraries (cuBLAS, cuBLASLt, NCCL), in CUDA toolkits and in pip's nvidia-*
# packages. Sourcing prints nothing and changes no option of the calling shell; afterwards
#   kit_missing_libs     prints the sonames the kit's programs still cannot find (none: fine)
#   kit_lib_report       prints where each library the kit's programs load comes from
#   DPRUN_KIT_LIBCUDA    is the driver library found ("" when there is none)
# Environment it reads: DPRUN_KIT_LIB_DIRS (colon-separated folders searched first for the
# libraries the kit leaves out), TMPDIR (where compressed libraries are unpacked).

DPRUN_KIT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
export DPRUN_KIT

# Open MPI 4.1 finds its plugins, help files and configuration through OPAL_PREFIX and the
# OPAL_* directory variables; PMIx (Open MPI's launcher protocol, an external library here)
# through PMIX_*. Debian's build puts sysconfdir outside the prefix, so every folder is named.
# kit_install_dirs NAME PREFIX PKG: NAME_PREFIX=PREFIX and NAME's folder variables under it
# (PKG: the name of its own subfolders), libraries in the kit's lib/.
kit_install_dirs() {
  local n=$1 p=$2
  export "${n}_PREFIX=$p" "${n}_EXEC_PREFIX=$p" "${n}_BINDIR=$p/bin" "${n}_LIBDIR=$DPRUN_KIT/lib" \
    "${n}_DATAROOTDIR=$p/share" "${n}_DATADIR=$p/share" "${n}_PKGDATADIR=$p/share/$3" \
    "${n}_SYSCONFDIR=$p/etc"
}
kit_install_dirs OPAL "$DPRUN_KIT/ompi" openmpi
export OPAL_PKGLIBDIR=$OPAL_PREFIX/lib/openmpi3
export OMPI_MCA_mca_base_component_path=$OPAL_PKGLIBDIR
export OMPI_MCA_mca_base_param_files=$OPAL_SYSCONFDIR/openmpi-mca-params.conf
kit_install_dirs PMIX "$OPAL_PREFIX/pmix" pmix
export PMIX_PKGLIBDIR=$PMIX_PREFIX/lib/pmix
export PMIX_MCA_mca_base_component_path=$PMIX_PKGLIBDIR
# hwloc: no plugins (the build machine's folder of them is not there; none is needed).
export HWLOC_PLUGINS_PATH=$OPAL_PREFIX/hwloc-plugins
# Root in a throwaway VM, more ranks than cores in small tests, and no cross-memory attach
# (process_vm_readv is refused in many sandboxes; shared-memory copies work everywhere).
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
export OMPI_MCA_rmaps_base_oversubscribe=1
export OMPI_MCA_btl_vader_single_copy_mechanism=none

case ":${PATH:-}:" in
  *":$DPRUN_KIT/bin:$OPAL_BINDIR:"*) ;;
  *) export PATH=$DPRUN_KIT/bin:$OPAL_BINDIR${PATH:+:$PATH} ;;
esac
# nvidia-smi where the driver is mounted rather than installed.
if ! command -v nvidia-smi > /dev/null 2>&1 && [[ -x /usr/local/nvidia/bin/nvidia-smi ]]; then
  export PATH=$PATH:/usr/local/nvidia/bin
fi

# kit_prepend_lib DIR: DIR first on LD_LIBRARY_PATH (once).
kit_prepend_lib() {
  case ":${LD_LIBRARY_PATH:-}:" in
    *":$1:"*) ;;
    *) export LD_LIBRARY_PATH=$1${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} ;;
  esac
}
# kit_append_lib DIR: DIR last on LD_LIBRARY_PATH (once): after the kit, before nothing else.
kit_append_lib() {
  case ":${LD_LIBRARY_PATH:-}:" in
    *":$1:"*) ;;
    *) export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$1 ;;
  esac
}

# Libraries over pack.sh's size limit travel gzip'd (lib/NAME.gz): unpacked once per kit into
# a folder outside it (the carried kit may be read-only), keyed by the kit's manifest.
kit_unpack_libs() {
  local gz
  gz=$(find "$DPRUN_KIT/lib" -maxdepth 1 -name '*.gz' -print -quit 2> /dev/null)
  [[ -n "$gz" ]] || return 0
  local key dir f name
  key=$(cksum < "$DPRUN_KIT/MANIFEST.txt" 2> /dev/null | cut -d' ' -f1)
  dir=${TMPDIR:-/tmp}/dprun-kit-libs-${key:-0}-$(id -u)
  mkdir -p "$dir" || return 1
  for f in "$DPRUN_KIT"/lib/*.gz; do
    name=$(basename "$f" .gz)
    if [[ ! -s "$dir/$name" ]]; then
      gzip -dc "$f" > "$dir/$name.tmp" && mv "$dir/$name.tmp" "$dir/$name" || return 1
    fi
  done
  DPRUN_KIT_UNPACKED=$dir
  export DPRUN_KIT_UNPACKED
}

# The programs whose libraries are checked: every ELF file in the kit's bin/.
kit_programs() {
  local f
  for f in "$DPRUN_KIT"/bin/* "$OPAL_BINDIR"/orterun "$OPAL_BINDIR"/orted; do
    [[ -f "$f" && -x "$f" ]] && head -c4 "$f" 2> /dev/null | grep -q 'ELF' && echo "$f"
  done
}

# kit_missing_libs: what some kit program cannot find, one a line (nothing: all found): a
# soname, or "LIBRARY lacks VERSION" where a library is older than the kit needs (e.g. a glibc
# older than the build machine's).
kit_missing_libs() {
  local p
  kit_programs | while read -r p; do ldd "$p" 2>&1; done |
    awk '/=> not found/ { print $1 }
         /version `.*. not found/ { v = $0; sub(/.*version `/, "", v); sub(/. not found.*/, "", v)
                                   l = $0; sub(/^[^:]*: /, "", l); sub(/: version.*/, "", l)
                                   print l " lacks " v }' | sort -u
}

# Folders where the libraries the kit leaves out may be, best first: the caller's own, the CUDA
# toolkit's (it matches nvcc there), pip's nvidia-* packages (what PyTorch uses), the system's.
kit_lib_candidates() {
  local d py
  [[ -n "${DPRUN_KIT_LIB_DIRS:-}" ]] && tr ':' '\n' <<< "$DPRUN_KIT_LIB_DIRS" | grep -v '^$'
  for d in /usr/local/cuda/lib64 /usr/local/cuda/lib /usr/local/cuda/targets/x86_64-linux/lib; do
    echo "$d"
  done
  find /usr/local -maxdepth 1 -name 'cuda-*' 2> /dev/null | sort -rV | while read -r d; do
    echo "$d/lib64"; echo "$d/lib"; echo "$d/targets/x86_64-linux/lib"
  done
  for py in python3 /opt/*/.venv/bin/python3 /usr/bin/python3; do
    command -v "$py" > /dev/null 2>&1 || continue
    "$py" -c 'import nvidia, sys; print("\n".join(nvidia.__path__))' 2> /dev/null
  done | sort -u | while read -r d; do
    find "$d" -mindepth 2 -maxdepth 3 -type d -name lib 2> /dev/null | sort
  done
  for d in /usr/local/lib/python3*/dist-packages/nvidia /usr/local/lib/python3*/site-packages/nvidia \
           /usr/lib/python3/dist-packages/nvidia /opt/*/lib/python3*/site-packages/nvidia \
           /opt/*/.venv/lib/python3*/site-packages/nvidia /root/.local/lib/python3*/site-packages/nvidia; do
    [[ -d "$d" ]] && find "$d" -mindepth 2 -maxdepth 3 -type d -name lib 2> /dev/null | sort
  done
  echo /usr/lib/x86_64-linux-gnu
  echo /usr/lib64
}

# kit_find_libs: appends to LD_LIBRARY_PATH the folder of each missing soname, until nothing
# is missing or nothing more is found. Returns 1 while something is missing.
kit_find_libs() {
  local missing so d found progress candidates=""
  for _ in 1 2 3 4; do
    missing=$(kit_missing_libs)
    [[ -z "$missing" ]] && return 0
    [[ -n "$candidates" ]] || candidates=$(kit_lib_candidates | awk '!seen[$0]++' |
      grep -Ev '/(stubs|compat)(/|$)')
    progress=0
    while read -r so; do
      [[ -n "$so" ]] || continue
      found=""
      while read -r d; do
        if [[ -n "$d" && -e "$d/$so" ]]; then found=$d; break; fi
      done <<< "$candidates"
      if [[ -n "$found" ]]; then
        kit_append_lib "$found"
        progress=1
      fi
    done < <(awk 'NF == 1' <<< "$missing")
    [[ $progress -eq 1 ]] || return 1
  done
  [[ -z "$(kit_missing_libs)" ]]
}

# kit_find_driver: the CUDA driver library (libcuda.so.1), never a stub or a compat copy.
# Sets DPRUN_KIT_LIBCUDA ("" when there is none) and puts its folder on LD_LIBRARY_PATH when
# the dynamic loader would not find it by itself.
kit_find_driver() {
  local d p ldconfig=ldconfig
  DPRUN_KIT_LIBCUDA=""
  command -v ldconfig > /dev/null 2>&1 || ldconfig=/sbin/ldconfig
  p=$("$ldconfig" -p 2> /dev/null | awk '$1 == "libcuda.so.1" && $NF !~ /stubs|compat/ { print $NF; exit }')
  if [[ -n "$p" && -e "$p" ]]; then
    DPRUN_KIT_LIBCUDA=$p
  else
    for d in $(tr ":" " " <<< "${LD_LIBRARY_PATH:-}") /usr/local/nvidia/lib64 /usr/local/nvidia/lib \
             /usr/lib/x86_64-linux-gnu /usr/lib64 /usr/lib/wsl/lib; do
      case "$d" in */stubs | */stubs/* | */compat | */compat/*) continue ;; esac
      if [[ -e "$d/libcuda.so.1" ]]; then
        DPRUN_KIT_LIBCUDA=$d/libcuda.so.1
        break
      fi
    done
    # Last, anywhere (bounded): an unusual driver mount.
    [[ -n "$DPRUN_KIT_LIBCUDA" ]] || DPRUN_KIT_LIBCUDA=$(timeout 20 find /usr /opt /lib /lib64 \
      -name libcuda.so.1 ! -path '*/stubs/*' ! -path '*/compat/*' -print -quit 2> /dev/null)
    [[ -n "$DPRUN_KIT_LIBCUDA" ]] && kit_append_lib "$(dirname "$DPRUN_KIT_LIBCUDA")"
  fi
  export DPRUN_KIT_LIBCUDA
}

# kit_lib_report: each library the kit's programs load, and the file it resolves to.
kit_lib_report() {
  local p
  kit_programs | while read -r p; do ldd "$p" 2> /dev/null; done |
    awk '/=>/ { print $1, $3 }' | sort -u | awk '{ printf "  %-34s %s\n", $1, $2 }'
}

if [[ "${DPRUN_KIT_ENV_DONE:-}" != "$DPRUN_KIT" ]]; then
  if kit_unpack_libs && [[ -n "${DPRUN_KIT_UNPACKED:-}" ]]; then
    kit_prepend_lib "$DPRUN_KIT_UNPACKED"
  fi
  kit_prepend_lib "$DPRUN_KIT/lib"
  kit_find_libs
  kit_find_driver
  DPRUN_KIT_ENV_DONE=$DPRUN_KIT
  export DPRUN_KIT_ENV_DONE
fi
true
