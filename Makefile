# Weft: a small front for CMake. `make`, `make test`, `make demo`, `make bench`.
BUILD      ?= build
JOBS       ?= $(shell nproc)
CMAKE_ARGS ?=

.PHONY: all deps test demo bench fuzz clean

all:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_ARGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

deps:
	@scripts/install-deps.sh

# Installs what is missing, then builds and runs every test: plain, under ASan+UBSan, and
# a bounded run of every fuzz target. Ends with one summary line.
test: deps
	@tests/run-all.sh

demo: deps all
	@scripts/demo.sh

bench: deps all
	@bench/run.sh

clean:
	rm -rf $(BUILD)
