# The Debian package: `cmake --build build --target package` (or
# `cd build && cpack -G DEB`) makes build/ransfs_<version>_<arch>.deb
# holding exactly what `cmake --install` installs, under /usr.  Included at
# the end of the top-level CMakeLists.txt, once every install() rule is
# known.  tests/install/install_test.py (deb) installs it with dpkg -i,
# mounts with it, and removes it again.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME ransfs)
set(CPACK_PACKAGE_VENDOR "the ransfs authors")
set(CPACK_PACKAGE_CONTACT "ransfs maintainers <ransfs@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "compressed read-only FUSE filesystem for model weights")
set(CPACK_DEBIAN_PACKAGE_DESCRIPTION
"ransfs stores model weights (safetensors and raw tensor files) losslessly
compressed in one image and serves them behind a plain read-only FUSE mount:
tiles are split into byte planes and the predictable planes entropy-coded
with 32-way interleaved rANS. Contains the mount (ransfs, for
mount -t fuse.ransfs and fstab), ransfs-mkimage, ransfs-fsck and
ransfs-dump, with their manual pages.")
if(TARGET libransfs)
  string(APPEND CPACK_DEBIAN_PACKAGE_DESCRIPTION "
Also libransfs, a C library to read images without a mount (libransfs.so.0,
libransfs.a, ransfs.h, ransfs.pc).")
endif()
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT) # ransfs_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_STRIP_FILES ON) # as Debian packages are; the build tree keeps its symbols
# The shared libraries (libfuse3-3, libzstd1, libxxhash0, libcjson1, libc6;
# libcurl4 when remote/ is built),
# with versions, come from dpkg-shlibdeps over the packaged binaries; fuse3
# is no library but the mount needs its fusermount3 and mount.fuse3.  The
# CUDA decoder is linked statically (CUDA::cudart_static): no CUDA package
# is a dependency, and the package runs without a GPU.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "fuse3")
include(CPack)
