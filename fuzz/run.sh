#!/usr/bin/env bash
# Coverage-guided fuzzing of Distillation's public API (see docs/RELIABILITY.md).
#
#   fuzz/run.sh SECONDS [--ci]
#
# 1. builds fuzz/Distillation.Fuzz and replays fuzz/regressions (inputs that once broke the contract);
# 2. instruments the harness's copy of Distillation.dll with SharpFuzz (the dotnet tool in fuzz/dotnet-tools.json);
# 3. runs AFL++ (afl-fuzz, Debian package afl++) on the harness for SECONDS;
# 4. replays every crash AFL++ saved, prints what each broke, and exits 1 if there is any.
#
# Exit status: 0 when nothing broke the contract, 1 when something did, 2 on usage errors. When AFL++ or the SharpFuzz
# tool cannot be installed or started (an infrastructure problem, not a finding), the same time is spent in the
# harness's in-process random fuzzer instead, which checks the same contract; the script then exits 3 (so that a
# developer notices AFL++ was not used) unless --ci is given, in which case such problems never fail it.
# Output goes to $DISTILLATION_FUZZ_OUT (default artifacts/fuzz); afl-fuzz's own log is in $out/afl.log.
set -uo pipefail

# Everything runs inside main, which bash parses whole before running it: the script may be edited while it fuzzes.
main() {

    seconds=${1:-}
    ci=false
    [[ ${2:-} == --ci ]] && ci=true
    if ! [[ $seconds =~ ^[0-9]+$ ]] || (( seconds < 1 )); then
        echo "usage: fuzz/run.sh SECONDS [--ci]" >&2
        exit 2
    fi

    cd "$(dirname "$0")/.."
    root=$PWD
    out=${DISTILLATION_FUZZ_OUT:-$root/artifacts/fuzz}
    bin=$out/bin          # the harness as built: replays and the random fuzzer
    afl=$out/instrumented # a copy whose Distillation.dll SharpFuzz instruments, for afl-fuzz only
    harness=(dotnet "$bin/Distillation.Fuzz.dll")
    failed=0

    note() { echo "== fuzz: $*"; }

    note "building the harness"
    rm -rf "$bin" "$afl"
    mkdir -p "$out"
    if ! dotnet build "$root/fuzz/Distillation.Fuzz" -c Release -o "$bin" -nologo -v q; then
        echo "error: the fuzzing harness does not build" >&2
        exit 1
    fi

    note "replaying fuzz/regressions"
    if ! "${harness[@]}" --replay "$root/fuzz/regressions"; then
        failed=1
    fi

    random_fallback() {
        note "AFL++ unavailable ($1): running the in-process random fuzzer for ${seconds}s instead"
        local seed=${DISTILLATION_FUZZ_SEED:-$RANDOM}
        if ! "${harness[@]}" --random "$seconds" "$seed" "$out/random-findings" --keep-going; then
            failed=1
        fi
        (( failed )) && exit 1
        $ci && exit 0
        exit 3
    }

    # --- AFL++ and the SharpFuzz instrumenter ------------------------------------------------------------------------
    if ! command -v afl-fuzz >/dev/null 2>&1; then
        note "installing afl++"
        if command -v apt-get >/dev/null 2>&1; then
            (timeout 300 apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -qq afl++) >"$out.apt.log" 2>&1 \
                || echo "   apt-get failed (see $out.apt.log)"
        fi
    fi
    command -v afl-fuzz >/dev/null 2>&1 || random_fallback "afl-fuzz not installable"

    note "instrumenting Distillation.dll"
    ( cd "$root/fuzz" && timeout 300 dotnet tool restore >/dev/null ) || random_fallback "dotnet tool restore failed"
    cp -r "$bin" "$afl"
    ( cd "$root/fuzz" && dotnet sharpfuzz "$afl/Distillation.dll" ) || random_fallback "SharpFuzz instrumentation failed"

    seeds=$out/seeds
    findings=$out/findings
    rm -rf "$seeds" "$findings"
    "${harness[@]}" --seeds "$seeds" || random_fallback "could not write the seed corpus"

    note "afl-fuzz for ${seconds}s"
    export AFL_SKIP_BIN_CHECK=1 AFL_NO_UI=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CPUFREQ=1 AFL_NO_AFFINITY=1 \
           AFL_SKIP_CRASHES=1 AFL_FAST_CAL=1 AFL_QUIET=1
    timeout -k 10 $((seconds + 120)) afl-fuzz -i "$seeds" -o "$findings" -t 10000+ -m none -V "$seconds" -- dotnet "$afl/Distillation.Fuzz.dll" >"$out/afl.log" 2>&1
    status=$?
    stats=$findings/default/fuzzer_stats
    if [[ ! -f $stats ]]; then
        tail -n 20 "$out/afl.log"
        random_fallback "afl-fuzz did not start (exit $status)"
    fi

    stat() { awk -F' *: *' -v k="$1" '$1 == k { print $2 }' "$stats"; }
    execs=$(stat execs_done)
    runtime=$(stat run_time)
    [[ -z $runtime ]] && runtime=$(( $(stat last_update) - $(stat start_time) ))
    note "afl-fuzz: ${execs} executions in ${runtime}s ($(stat execs_per_sec) per second), $(stat corpus_count) inputs in the corpus, coverage $(stat bitmap_cvg), $(stat saved_crashes) crashes, $(stat saved_hangs) hangs"

    shopt -s nullglob
    crashes=("$findings"/default/crashes/id:*)
    hangs=("$findings"/default/hangs/id:*)
    if (( ${#hangs[@]} > 0 )); then
        note "${#hangs[@]} inputs ran past afl-fuzz's time limit (kept in $findings/default/hangs; not counted as contract violations)"
    fi
    if (( ${#crashes[@]} > 0 )); then
        note "${#crashes[@]} crashing inputs: replaying them"
        for crash in "${crashes[@]}"; do
            if "${harness[@]}" --replay "$crash" | sed 's/^/   /'; [[ ${PIPESTATUS[0]} -ne 0 ]]; then
                failed=1
            elif [[ $(basename "$crash") == *,sig:02,* ]]; then
                # SIGINT: the process was interrupted from outside (no library code raises it) and the input replays
                # clean, so it is kept but not counted (seen in CI runs of 2026-11-23 and -24, each within the first seconds).
                note "$(basename "$crash"): interrupted (SIGINT) under afl-fuzz and clean on replay; not counted"
            else
                note "(a crash that does not reproduce on replay is one whose process died or ran out of memory under afl-fuzz)"
                failed=1
            fi
        done
    fi

    if (( failed )); then
        note "FAILED: the public API broke its contract (inputs in $findings/default/crashes and fuzz/regressions)"
    else
        note "no contract violation"
    fi
    exit $failed
}

main "$@"
