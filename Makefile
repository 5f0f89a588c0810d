# ransfs: the two set-up commands are `make demo` and `make test`.
# Each installs what is missing (apt-get, as root), configures CMake into
# build/, builds, and runs.  Binaries land in build/bin/.

BUILD     ?= build
BUILDTYPE ?= Release
JOBS      ?= $(shell nproc)
CMAKE_ARGS ?=

# Debian 12 packages the build, the tests and the benchmarks need.
DEB_PKGS = build-essential cmake pkg-config libfuse3-dev fuse3 libcmocka-dev \
           libzstd-dev libxxhash-dev libhtscodecs-dev libcjson-dev \
           python3 python3-numpy squashfs-tools squashfuse attr zstd \
           clang libclang-rt-14-dev bc \
           nginx openssl curl iproute2 python3-venv libcurl4-openssl-dev man-db groff-base

.PHONY: all deps configure build test demo clean asan tsan package

all: build

deps:
	@missing=""; for p in $(DEB_PKGS); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  if [ "$$(id -u)" -ne 0 ]; then echo "make: need root to apt-get install:$$missing" >&2; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

configure: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILDTYPE) $(CMAKE_ARGS)

build: configure
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

# The Debian package of build/: $(BUILD)/ransfs_<version>_<arch>.deb (CPack).
package: build
	cmake --build $(BUILD) --target package

# The whole suite again under AddressSanitizer + UndefinedBehaviorSanitizer.
asan:
	RFS_LOAD_SECONDS=$${RFS_LOAD_SECONDS:-20} $(MAKE) test BUILD=build-asan BUILDTYPE=Debug \
	    CMAKE_ARGS="-DRFS_SANITIZE=address,undefined"

# The concurrent read path (cache, engine, real mounts) under ThreadSanitizer.
tsan: deps
	bash tests/hardening/tsan.sh build-tsan

demo: build
	bash tests/demo.sh $(BUILD)

clean:
	rm -rf build build-asan build-tsan build-fuzz
