#!/bin/sh
# Runs each cmocka suite given, in order, with its time; fails if any failed.
failed=""
for suite in "$@"; do
    name=$(basename "$suite")
    start=$(date +%s)
    echo "=== $name"
    if ! "$suite"; then
        failed="$failed $name"
    fi
    echo "=== $name: $(( $(date +%s) - start )) s"
done
if [ -n "$failed" ]; then
    echo "FAILED suites:$failed" >&2
    exit 1
fi
echo "All suites passed."
