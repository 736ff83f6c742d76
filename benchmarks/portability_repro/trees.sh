# Sourced by every reproduction here: `on ARCH ARGS...` runs the python3 of the Debian tree
# that `persistbench portability` built for ARCH, as it runs there (natively through the
# tree's own loader, i386 under setarch, arm64 and s390x under qemu user-mode emulation).
# The saved files go to a scratch directory (the current one while the script runs), removed
# at the end; set REPRO to a directory of your own to keep them.
T="${PERSISTBENCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/persistbench}/arch-trees/bookworm"
if [ -z "$REPRO" ]; then REPRO=$(mktemp -d); trap 'rm -rf "$REPRO"' EXIT; fi
cd "$REPRO" || exit 2
on() {
  arch=$1; shift
  case $arch in
    amd64) lib=x86_64-linux-gnu; run="$T-amd64/lib64/ld-linux-x86-64.so.2" ;;
    i386) lib=i386-linux-gnu; run="setarch i686 $T-i386/lib/ld-linux.so.2" ;;
    arm64) lib=aarch64-linux-gnu; run="qemu-aarch64-static -cpu max -L $T-arm64" ;;
    s390x) lib=s390x-linux-gnu; run="qemu-s390x-static -cpu max -L $T-s390x" ;;
  esac
  r="$T-$arch/usr/lib/$lib"
  LD_LIBRARY_PATH="$T-$arch/lib/$lib:$r:$r/openblas-pthread" OMP_NUM_THREADS=1 \
    $run "$T-$arch/usr/bin/python3" -I "$@"
}
