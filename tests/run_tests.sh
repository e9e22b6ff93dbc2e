#!/bin/sh
# run_tests.sh - every test, in the release build and the AddressSanitizer+UBSan build.
# Run from the repository root (ninja test does). Shared assets come from $LLFC_SHARED
# (default ../shared); tests that need a missing asset are reported as skipped, by name.
# Programs run $LLFC_TEST_JOBS at a time (default: the machine's cores), the slowest first
# (test_cuda_emu, test_e2e) so they do not end the run alone; each one's time is printed.
set -u
export LLFC_SHARED="${LLFC_SHARED:-../shared}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
jobs="${LLFC_TEST_JOBS:-$(nproc 2>/dev/null || echo 1)}"
list=""
for slow in test_cuda_emu test_e2e; do
    for variant in build/asan build; do
        [ -x "$variant/tests/$slow" ] && list="$list $variant/tests/$slow"
    done
done
for variant in build build/asan; do
    for t in "$variant"/tests/test_*; do
        [ -x "$t" ] || continue
        case " $list " in *" $t "*) continue ;; esac
        list="$list $t"
    done
done
# One program: its output in $t.log, its exit status and seconds in $t.rc.
run_one='t=$1; start=$(date +%s); LLFC_BIN="$(dirname "$(dirname "$t")")/llfc" "$t" > "$t.log" 2>&1; rc=$?
echo "$rc $(( $(date +%s) - start ))" > "$t.rc"; [ $rc -eq 0 ] && r=ok || r=FAILED; printf "%-7s %s\n" "$r" "$t"'
for t in $list; do rm -f "$t.rc"; done
printf '%s\n' $list | xargs -P "$jobs" -n 1 sh -c "$run_one" sh
failed=0 passed=0 skipped=""
printf '\n'
for variant in build build/asan; do
    for t in "$variant"/tests/test_*; do
        [ -x "$t" ] || continue
        set -- $(cat "$t.rc" 2>/dev/null || echo "127 0")
        if [ "$1" -eq 0 ]; then
            passed=$((passed + 1))
            printf 'ok      %-36s %4d s\n' "$t" "$2"
        else
            failed=$((failed + 1))
            printf 'FAILED  %s (exit %d, %d s); its output:\n' "$t" "$1" "$2"
            sed 's/^/    /' "$t.log"
        fi
        s=$(grep -E '^\[  SKIPPED \]' "$t.log" | sed "s|^\[  SKIPPED \] |$t: |" | sort -u)
        [ -n "$s" ] && skipped="$skipped$s
"
    done
done
if [ -n "$skipped" ]; then
    printf '\nskipped (shared assets missing from %s):\n%s' "$LLFC_SHARED" "$skipped"
fi
printf '\n%d test programs passed, %d failed (%s at a time)\n' "$passed" "$failed" "$jobs"
[ $failed -eq 0 ]
