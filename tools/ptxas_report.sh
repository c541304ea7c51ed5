#!/usr/bin/env bash
# ptxas_report.sh [ARCH...] - the resource report of every CUDA kernel, without a GPU: compiles each
# kernels/cuda/*.cu with `nvcc -O3 -Xptxas -v` for each arch (default: sm_80 sm_90a, the build's targets) and
# prints one line per entry function (arch, registers, stack frame, spill stores/loads, static shared memory)
# plus a total. Exit 1 when any entry function spills. Stack frames are listed (sinf/cosf's slow argument
# reduction in the timestep-embedding and RNG kernels keeps a 40-byte local array: not a spill, not hot).
set -u
root=$(cd "$(dirname "$0")/.." && pwd)
nvcc=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
archs=("$@")
[ ${#archs[@]} -eq 0 ] && archs=(80 90a)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '%-6s %-4s %-5s %-6s %-7s %-8s %s\n' arch regs stack spillS spillL smem kernel
bad=0 n=0
for a in "${archs[@]}"; do
  for f in "$root"/kernels/cuda/*.cu; do
    "$nvcc" -O3 -std=c++17 -I"$root/kernels" -I"$root/kernels/cuda" -Xptxas -v \
      --generate-code=arch=compute_$a,code=sm_$a -c "$f" -o "$tmp/o.o" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 2; }
    awk -v arch="sm_$a" '
      /Compiling entry function/ { match($0, /\x27[^\x27]+\x27/); name = substr($0, RSTART + 1, RLENGTH - 2) }
      /bytes stack frame/ { stack = $1; ss = $5; sl = $9 }
      /Used [0-9]+ registers/ {
        regs = $0; sub(/.*Used /, "", regs); sub(/ registers.*/, "", regs)
        smem = 0; if (match($0, /[0-9]+ bytes smem/)) { smem = substr($0, RSTART, RLENGTH); sub(/ bytes smem/, "", smem) }
        cmd = "c++filt \"" name "\""; cmd | getline dem; close(cmd)
        printf "%-6s %-4s %-5s %-6s %-7s %-8s %s\n", arch, regs, stack, ss, sl, smem, dem
      }' "$tmp/log"
  done
done | tee "$tmp/all"
n=$(wc -l <"$tmp/all")
bad=$(awk '$4 != 0 || $5 != 0' "$tmp/all" | wc -l)
stack=$(awk '$3 != 0' "$tmp/all" | wc -l)
echo "entry functions: $n; spilling: $bad; with a stack frame: $stack"
awk '$3 != 0 { print "  stack frame: " $0 }' "$tmp/all"
[ "$bad" -eq 0 ]
