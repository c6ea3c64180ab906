# Build, run and test the Raft implementation.
#
#   make            build/raft
#   make run        a three-node cluster on 127.0.0.1:8000-8002
#   make test       every cmocka suite: unit, then lab parts, then system
#   make test PART=election   one suite (any part of its name)
#   make check      the suites under ASan+UBSan, then under TSan
#   make bench      the commit floor, then throughput and latency of a local 3-node cluster
#   make bench-etcd the same load against a local 3-member etcd cluster
#   make bench-compare   both, back to back, and the ratio of ops/s
#   make fuzz       the libFuzzer targets, for a bounded time each
#   make student DEST=DIR [PART=x]   the student tree: lab code of part x and later taken out
#   make grade [PART=x] [RUNS=N] [JOBS=J]   each lab test N times, a table and a score per part

CC      ?= cc
BUILD   ?= build
SAN     ?=
CFLAGS  ?= -O2 -g
override CFLAGS += -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror -I. -pthread
LDLIBS  += -pthread -lssl -lcrypto
ifneq ($(SAN),)
override CFLAGS += -fsanitize=$(SAN) -fno-omit-frame-pointer -DRAFT_CHECK_INVARIANTS
LDFLAGS += -fsanitize=$(SAN)
endif

# bench/bench_loop.c and bench_stats.c are generic (bench/etcd_load.c and
# etcd_http.c link them alone); `raft bench` (kv/bench.c) runs on them too.
LIB_SRC  := $(wildcard raft/*.c raft/storage/*.c net/*.c kv/*.c) bench/bench_loop.c bench/bench_stats.c
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
SUPPORT_SRC := $(wildcard tests/support/*.c)
SUPPORT_OBJ := $(SUPPORT_SRC:%.c=$(BUILD)/obj/%.o)
# The chaos kit (fault-injecting proxy, process cluster, linearizability
# checker); proxy_main.c is the raft-proxy command, not part of the kit.
CHAOS_SRC := $(filter-out tests/chaos/proxy_main.c,$(wildcard tests/chaos/*.c))
CHAOS_OBJ := $(CHAOS_SRC:%.c=$(BUILD)/obj/%.o)
# Suites run in this order: fast unit suites, the lab parts, the TCP system suite.
SUITES   := $(basename $(notdir $(wildcard tests/unit_*.c) $(wildcard tests/lab_*.c) $(wildcard tests/system_*.c)))
SUITES   := $(filter unit_%,$(SUITES)) $(filter lab_%,$(SUITES)) $(filter system_%,$(SUITES))
ifneq ($(PART),)
SUITES   := $(foreach s,$(SUITES),$(if $(findstring $(PART),$(s)),$(s)))
endif
SUITE_BIN := $(SUITES:%=$(BUILD)/tests/%)

.PHONY: all run test check bench bench-state bench-etcd bench-compare fuzz clean cmocka openssl student grade
.SECONDARY:
all: $(BUILD)/raft $(BUILD)/raft-proxy

$(BUILD)/raft: $(BUILD)/obj/main.o $(BUILD)/obj/cli.o $(BUILD)/obj/cli_tls.o $(BUILD)/obj/client_cmd.o \
               $(BUILD)/obj/client_cli.o $(BUILD)/obj/member_cmd.o $(BUILD)/obj/status_cmd.o \
               $(BUILD)/obj/timeline.o $(BUILD)/obj/timeline_page.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: %.c | openssl
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(SUPPORT_OBJ) $(CHAOS_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

# raft-proxy LISTEN TARGET: a TCP proxy whose link can be cut, delayed or healed.
$(BUILD)/raft-proxy: $(BUILD)/obj/tests/chaos/proxy_main.o $(BUILD)/obj/tests/chaos/proxy.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

run: $(BUILD)/raft
	$(BUILD)/raft cluster $(ARGS)

cmocka:
	@tests/need-package.sh cmocka.h libcmocka-dev "make test"

# Every object waits for OpenSSL's headers (TLS and `raft certs`), installed
# on first use like cmocka.
openssl:
	@tests/need-package.sh openssl/ssl.h libssl-dev "the build"

test: cmocka $(BUILD)/raft $(BUILD)/raft-proxy
	@$(MAKE) --no-print-directory $(SUITE_BIN)
	@tests/call-graph.sh raft $(BUILD)/obj/raft
	@tests/call-graph.sh raft/storage $(BUILD)/obj/raft/storage
	@RAFT_BIN=$(BUILD)/raft tests/run-suites.sh $(SUITE_BIN)

# Chaos rounds: 20 under ASan; fewer under TSan, which runs about 5x slower.
check: cmocka
	CHAOS_ROUNDS=20 $(MAKE) --no-print-directory test BUILD=build/asan SAN=address,undefined CFLAGS="-O1 -g"
	CHAOS_ROUNDS=6 $(MAKE) --no-print-directory test BUILD=build/tsan SAN=thread CFLAGS="-O1 -g"

# The floor first (one loopback round trip, one fdatasync), then the table.
bench: $(BUILD)/raft $(BUILD)/floor
	$(BUILD)/floor /tmp
	bench/run.sh $(BUILD)/raft

$(BUILD)/floor: bench/floor.c
	@mkdir -p $(dir $@)
	$(CC) -O2 -Wall -Wextra -Werror -pthread -o $@ $<

# Writes, latency and memory with a small state and a large one (bench/state.sh).
bench-state: $(BUILD)/raft
	bench/state.sh $(BUILD)/raft

bench-etcd:
	BUILD=$(BUILD) CC="$(CC)" bench/etcd.sh

bench-compare: $(BUILD)/raft
	BUILD=$(BUILD) CC="$(CC)" bench/compare.sh $(BUILD)/raft

fuzz:
	tests/fuzz/run.sh

# The student tree (tests/labs/student.sh), built there warning-free.
LAB_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/lab_*.c)) $(BUILD)/tests/unit_rules
student: cmocka
	@test -n "$(DEST)" || { echo "usage: make student DEST=DIR [PART=election|agreement|persistence|snapshots|membership]" >&2; exit 2; }
	@tests/labs/student.sh "$(DEST)" $(PART)
	@$(MAKE) --no-print-directory -C "$(DEST)" -j2 PART= $(BUILD)/raft $(LAB_BIN)
	@echo "student tree built in $(DEST): make -C $(DEST) test PART=election"

# Grades the lab parts (tests/labs/grade.sh): RUNS runs of every test, JOBS at a time.
grade: cmocka
	@$(MAKE) --no-print-directory $(LAB_BIN) $(BUILD)/raft
	@BUILD=$(BUILD) RUNS=$(or $(RUNS),1) JOBS=$(or $(JOBS),2) STOP=$(STOP) tests/labs/grade.sh $(PART)

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
