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

# ---- lessons, grading, release (see lessons/README.md and grading/README.md) -------------------------
.PHONY: grade release autograder slides docs check-stubs stubs check-lessons ci-lessons
# make test-lesson-01: build and run one lesson's tests (ctest label lesson-01).
test-lesson-%: configure
	cmake --build $(BUILD) -j $(JOBS) --target lessons
	ctest --test-dir $(BUILD) --output-on-failure -L '^lesson-$*$$'

# Your points per lesson and task (public tests; an instructor tree adds the hidden ones).
# make grade ARGS="--lessons 02"; ARGS="--submission work.zip" grades a submission (grading/README.md).
grade:
	python3 grading/grade.py --jobs $(JOBS) $(ARGS)

# Student release (no solutions/, no hidden tests): build/release/scalegpt-student + tarball.
release:
	python3 tools/lessons/export_release.py

# The Gradescope autograder zip (release + hidden tests + setup.sh + run_autograder);
# make autograder ARGS="--lessons 04" -> build/release/autograder-04.zip, one assignment per lesson.
autograder:
	python3 tools/lessons/export_release.py --autograder $(ARGS)

# The red team: hostile submissions the grader must score zero (root: tests the sandbox too).
.PHONY: redteam
redteam:
	python3 grading/redteam/run.py --jobs $(JOBS) $(ARGS)

# HTML slides with Marp (prints how to install it when it is missing).
slides:
	@sh tools/lessons/build_slides.sh

# Doxygen HTML of common/ (fails on undocumented public API).
docs:
	@mkdir -p build/docs
	cmake -S . -B build/docs -G Ninja -DSCALEGPT_BUILD_TESTS=OFF > /dev/null
	cmake --build build/docs --target docs

# Regenerate the lesson stubs from solutions/, or check that they are current.
stubs:
	python3 tools/lessons/make_stubs.py
check-stubs:
	python3 tools/lessons/make_stubs.py --check
check-lessons: check-stubs
	python3 tools/lessons/check_index.py

# Everything CI checks for the lessons (stubs, index, solutions = full marks, stubs = zero, release, docs).
ci-lessons:
	sh tools/lessons/ci_check.sh
