# A thin layer over the CMake presets, so `make test` is all a student needs.
#   make            configure and build the CPU preset (build/cpu)
#   make test       build, then run every test (ctest)
#   make train      build, then train the default model (a few minutes on 2 cores)
#   make cuda       configure and build the CUDA preset (build/cuda; compiles without a GPU)
JOBS ?= $(shell nproc)
PRESET ?= cpu
BUILD := build/$(PRESET)

.PHONY: all build configure test train cuda clean
all: build

configure:
	@test -f $(BUILD)/build.ninja || cmake --preset $(PRESET)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	ctest --test-dir $(BUILD) --output-on-failure -j $(JOBS)

train: build
	$(BUILD)/tools/train/scalegpt-train $(ARGS)

cuda:
	$(MAKE) build PRESET=cuda

clean:
	rm -rf build
