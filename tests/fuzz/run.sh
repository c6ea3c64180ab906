#!/bin/sh
# Builds each libFuzzer target with clang (ASan + UBSan + libFuzzer) and runs
# it for FUZZ_SECONDS (default 60) each. `make fuzz` runs this.
#
#   tests/fuzz/run.sh                   every target, 60 s each
#   FUZZ_SECONDS=600 tests/fuzz/run.sh wire      (targets: wire storage handshake)
#   FUZZ_RUNS=10000000 tests/fuzz/run.sh storage   stop after that many inputs
#   FUZZ_JOBS=2 ...                     that many fuzzing processes per target
#   FUZZ_STORAGE_DIR=/dev/shm ...       storage inputs as real files (default: in memory)
#
# The committed seeds (tests/fuzz/corpus/TARGET) are read, never written:
# new inputs go to $BUILD/fuzz/corpus-TARGET, and a crash is saved as
# $BUILD/fuzz/crash-TARGET-<hash>, to be replayed with
#   $BUILD/fuzz/fuzz_TARGET $BUILD/fuzz/crash-TARGET-<hash>
# Exits non-zero if a target found a crash, a leak or a failed property.
set -eu

cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
OUT=$BUILD/fuzz
SECONDS_EACH=${FUZZ_SECONDS:-60}
RUNS=${FUZZ_RUNS:--1}
JOBS=${FUZZ_JOBS:-1}
FUZZ_CC=${FUZZ_CC:-clang}
TARGETS=${*:-"wire storage handshake"}
CFLAGS="-std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror -I. -pthread
        -g -O1 -fno-omit-frame-pointer -fsanitize=fuzzer,address,undefined
        -fno-sanitize-recover=undefined"

if ! command -v "$FUZZ_CC" >/dev/null 2>&1; then
    echo "fuzz: needs clang with libFuzzer ($FUZZ_CC not found)" >&2
    exit 2
fi
mkdir -p "$OUT"

# What a node reads before its handshake is done: the first bytes, the
# hello, certificate names, and TLS itself (OpenSSL, linked).
HANDSHAKE_SRC="net/opening.c net/hello.c net/tls.c net/tls_names.c net/tls_certs.c
               net/tcp_socket.c net/wire.c net/wire_members.c"

sources_of() {
    case $1 in
    wire) echo "net/wire.c net/wire_members.c" ;;
    storage) echo "raft/storage/*.c raft/membership.c" ;;
    handshake) echo "$HANDSHAKE_SRC raft/membership.c" ;;
    *) echo "fuzz: unknown target $1 (wire, storage, handshake)" >&2; exit 2 ;;
    esac
}

libs_of() {
    case $1 in
    handshake) echo "-lssl -lcrypto" ;;
    *) echo "" ;;
    esac
}

# Seeds: regenerate them if the committed corpus is missing.
if [ ! -d tests/fuzz/corpus/wire ] || [ ! -d tests/fuzz/corpus/storage ] ||
   [ ! -d tests/fuzz/corpus/handshake ]; then
    # shellcheck disable=SC2046,SC2086
    cc -std=c11 -D_DEFAULT_SOURCE -I. -pthread -o "$OUT/gen_corpus" tests/fuzz/gen_corpus.c \
        $(sources_of storage) $HANDSHAKE_SRC -lssl -lcrypto
    "$OUT/gen_corpus" tests/fuzz/corpus
fi

status=0
for t in $TARGETS; do
    bin=$OUT/fuzz_$t
    # shellcheck disable=SC2046,SC2086
    $FUZZ_CC $CFLAGS -o "$bin" tests/fuzz/fuzz_$t.c $(sources_of "$t") $(libs_of "$t")
    mkdir -p "$OUT/corpus-$t"
    echo "=== fuzz_$t: ${SECONDS_EACH} s${FUZZ_RUNS:+, at most $RUNS inputs}"
    if [ "$JOBS" -gt 1 ]; then
        par="-jobs=$JOBS -workers=$JOBS"
    else
        par=""
    fi
    # shellcheck disable=SC2086
    if ! "$bin" -max_total_time="$SECONDS_EACH" -runs="$RUNS" -max_len=65536 \
            -print_final_stats=1 -artifact_prefix="$OUT/crash-$t-" $par \
            "$OUT/corpus-$t" "tests/fuzz/corpus/$t"; then
        echo "=== fuzz_$t: FAILED (reproducer saved under $OUT/crash-$t-*)" >&2
        status=1
    fi
done
exit $status
