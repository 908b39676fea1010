#!/usr/bin/env bash
# Do the fixture tests hold on any x86-64 CPU and any thread count? Runs every native test that
# compares with a recorded fixture
#   - natively with 1 and with 2 rayon threads (flex splits its sums by thread count), and
#   - under QEMU's user-mode emulator as CPUs without AVX-512 (Haswell: AVX2 and FMA) and without
#     AVX at all (Nehalem: SSE4.2), so that macerator's and gemm's run-time dispatch takes the
#     code paths of other machines (CPUID is emulated; the binaries are the same).
# Every run must pass with the one tolerance policy of tests/common/tolerance.rs.
#   scripts/check-portable.sh          (installs qemu-user with apt when missing; ~15 min)
# Not part of scripts/test.sh: emulation is slow, and the native suite already runs the same tests.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/fetch-data.sh

if ! command -v qemu-x86_64 >/dev/null; then
  SUDO=""; [[ $(id -u) -ne 0 ]] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq qemu-user >/dev/null
fi

# test binary name -> the fixture tests in it
declare -A FIXTURE_TESTS=(
  [explain]=shipped_weights_elbo_terms_match_the_browser_fixture
  [shipped_weights]=seeded_trajectory_matches_the_browser_fixture
  [samplers]=two_d_paths_fixture_is_current
  [toy_train]=training_fixture_is_current
  [restore]=shipped_weights_restorations_match_the_browser_fixture
  [fused]=the_shipped_unet_is_the_same_with_the_fused_path_on_and_off
)
declare -A BINARY
targets=(); for name in "${!FIXTURE_TESTS[@]}"; do targets+=(--test "$name"); done
while IFS=$'\t' read -r name path; do BINARY[$name]=$path; done < <(
  cargo test --locked --no-run --message-format=json "${targets[@]}" 2>/dev/null \
    | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>{for(const l of s.split("\n")){if(!l)continue;const m=JSON.parse(l);if(m.reason==="compiler-artifact"&&m.executable&&m.target.kind.includes("test"))console.log(m.target.name+"\t"+m.executable)}})'
)

failed=0
run() {
  local label=$1; shift
  for name in "${!FIXTURE_TESTS[@]}"; do
    local test=${FIXTURE_TESTS[$name]} start=$SECONDS
    if "$@" "${BINARY[$name]}" --exact "$test" --test-threads 1 >/tmp/check-portable.log 2>&1; then
      echo "ok      $label: $name::$test ($((SECONDS - start)) s)"
    else
      echo "FAILED  $label: $name::$test"; sed 's/^/    /' /tmp/check-portable.log | tail -15
      failed=$((failed + 1))
    fi
  done
}

echo "this CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); AVX-512: $(grep -qw avx512f /proc/cpuinfo && echo yes || echo no)"
run "native, 1 thread " env RAYON_NUM_THREADS=1
run "native, 2 threads" env RAYON_NUM_THREADS=2
run "QEMU Haswell (AVX2, no AVX-512)" env RAYON_NUM_THREADS=2 qemu-x86_64 -cpu Haswell
run "QEMU Nehalem (SSE4.2, no AVX)" env RAYON_NUM_THREADS=2 qemu-x86_64 -cpu Nehalem
if ((failed)); then echo "check-portable: $failed run(s) failed"; exit 1; fi
echo "check-portable: every fixture test passed on every CPU and thread count"
