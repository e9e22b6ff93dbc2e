#!/bin/sh
# run_tests.sh - every test, in the release build and the AddressSanitizer+UBSan build.
# Run from the repository root (ninja test does). Shared assets come from $LLFC_SHARED
# (default ../shared); tests that need a missing asset are reported as skipped, by name.
set -u
export LLFC_SHARED="${LLFC_SHARED:-../shared}"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
failed=0 passed=0 skipped=""
for variant in build build/asan; do
    for t in "$variant"/tests/test_*; do
        [ -x "$t" ] || continue
        log="$t.log"
        LLFC_BIN="$variant/llfc" "$t" > "$log" 2>&1
        rc=$?
        name="$t"
        if [ $rc -eq 0 ]; then
            passed=$((passed + 1))
            printf 'ok      %s\n' "$name"
        else
            failed=$((failed + 1))
            printf 'FAILED  %s (exit %d); its output:\n' "$name" "$rc"
            sed 's/^/    /' "$log"
        fi
        s=$(grep -E '^\[  SKIPPED \]' "$log" | sed "s|^\[  SKIPPED \] |$name: |" | sort -u)
        [ -n "$s" ] && skipped="$skipped$s
"
    done
done
if [ -n "$skipped" ]; then
    printf '\nskipped (shared assets missing from %s):\n%s' "$LLFC_SHARED" "$skipped"
fi
printf '\n%d test programs passed, %d failed\n' "$passed" "$failed"
[ $failed -eq 0 ]
