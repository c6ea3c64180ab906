# Build, run and test the Raft implementation.
#
#   make            build/raft
#   make run        a three-node cluster on 127.0.0.1:8000-8002
#   make test       every cmocka suite: unit, then lab parts, then system
#   make test PART=election   one suite (any part of its name)
#   make check      the suites under ASan+UBSan, then under TSan
#   make bench      throughput and latency of a local 3-node cluster
#   make fuzz       the libFuzzer targets, for a bounded time each

CC      ?= cc
BUILD   ?= build
SAN     ?=
CFLAGS  ?= -O2 -g
override CFLAGS += -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -Wall -Wextra -Werror -I. -pthread
LDLIBS  += -pthread
ifneq ($(SAN),)
override CFLAGS += -fsanitize=$(SAN) -fno-omit-frame-pointer -DRAFT_CHECK_INVARIANTS
LDFLAGS += -fsanitize=$(SAN)
endif

LIB_SRC  := $(wildcard raft/*.c net/*.c kv/*.c)
LIB_OBJ  := $(LIB_SRC:%.c=$(BUILD)/obj/%.o)
SUPPORT_SRC := $(wildcard tests/support/*.c)
SUPPORT_OBJ := $(SUPPORT_SRC:%.c=$(BUILD)/obj/%.o)
# Suites run in this order: fast unit suites, the lab parts, the TCP system suite.
SUITES   := $(basename $(notdir $(wildcard tests/unit_*.c) $(wildcard tests/lab_*.c) $(wildcard tests/system_*.c)))
SUITES   := $(filter unit_%,$(SUITES)) $(filter lab_%,$(SUITES)) $(filter system_%,$(SUITES))
ifneq ($(PART),)
SUITES   := $(foreach s,$(SUITES),$(if $(findstring $(PART),$(s)),$(s)))
endif
SUITE_BIN := $(SUITES:%=$(BUILD)/tests/%)

.PHONY: all run test check bench fuzz clean cmocka
.SECONDARY:
all: $(BUILD)/raft

$(BUILD)/raft: $(BUILD)/obj/main.o $(LIB_OBJ)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

$(BUILD)/tests/%: $(BUILD)/obj/tests/%.o $(SUPPORT_OBJ) $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

run: $(BUILD)/raft
	$(BUILD)/raft cluster

cmocka:
	@tests/need-cmocka.sh

test: cmocka $(BUILD)/raft
	@$(MAKE) --no-print-directory $(SUITE_BIN)
	@RAFT_BIN=$(BUILD)/raft tests/run-suites.sh $(SUITE_BIN)

check: cmocka
	$(MAKE) --no-print-directory test BUILD=build/asan SAN=address,undefined CFLAGS="-O1 -g"
	$(MAKE) --no-print-directory test BUILD=build/tsan SAN=thread CFLAGS="-O1 -g"

bench: $(BUILD)/raft
	bench/run.sh $(BUILD)/raft

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
