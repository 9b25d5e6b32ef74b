# moat - a thin layer over Meson: `make run` and `make test` are the two
# commands of the README. Both install what they need through scripts/deps.sh.
BUILD ?= build

.PHONY: all build run test bench clean

all: build

build:
	@scripts/deps.sh
	@[ -f $(BUILD)/build.ninja ] || meson setup $(BUILD)
	@ninja -C $(BUILD)

run: build
	$(BUILD)/moatd -c etc/moat.conf

test:
	@scripts/deps.sh --test
	@tests/run.sh

bench: build
	bench/accept.sh

clean:
	rm -rf $(BUILD) build-asan build-fuzz tests/out
