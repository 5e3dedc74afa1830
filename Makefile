# Weft: a small front for CMake. `make`, `make test`, `make demo`, `make demo-proxy`, `make bench`.
BUILD      ?= build
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps test demo demo-proxy bench fuzz clean

all:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

deps:
	@scripts/install-deps.sh

# Installs what is missing, then builds and runs every test: plain, under ASan+UBSan, and
# a bounded run of every fuzz target. Ends with one summary line.
test: deps
	@tests/run-all.sh

# The bookinfo mesh on this machine (as root); DEMO_ONCE=1 takes it down at the end.
demo: deps all
	@scripts/demo.sh

# weft-proxy alone between two backends (no root needed).
demo-proxy: deps all
	@scripts/demo-proxy.sh

bench: deps all
	@bench/run.sh

clean:
	rm -rf $(BUILD)
