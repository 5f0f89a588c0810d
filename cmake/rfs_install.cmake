# Install helpers shared by the directories that install something.
# Included by the top-level CMakeLists.txt before its add_subdirectory calls.

# Debian's multiarch library directory, lib/<triplet>, whatever the prefix.
# GNUInstallDirs picks it only when CMAKE_INSTALL_PREFIX is /usr at configure
# time, but the .deb (CPACK_PACKAGING_INSTALL_PREFIX /usr) installs the same
# relative paths from a tree configured for /usr/local, so it put the
# library in /usr/lib.  /usr/local/lib/<triplet> is on Debian's ld.so and
# pkg-config paths too.  A tree configured before this kept GNUInstallDirs'
# "lib" in its cache: moved once (RFS_MULTIARCH_LIBDIR marks it done); an
# explicit -DCMAKE_INSTALL_LIBDIR=... is kept in a new tree and from then on.
if(CMAKE_LIBRARY_ARCHITECTURE AND EXISTS /etc/debian_version AND NOT RFS_MULTIARCH_LIBDIR)
  if(NOT DEFINED CMAKE_INSTALL_LIBDIR OR (DEFINED _GNUInstallDirs_LAST_CMAKE_INSTALL_PREFIX
                                         AND CMAKE_INSTALL_LIBDIR STREQUAL "lib"))
    set(CMAKE_INSTALL_LIBDIR lib/${CMAKE_LIBRARY_ARCHITECTURE} CACHE PATH
        "Object code libraries (lib/${CMAKE_LIBRARY_ARCHITECTURE})" FORCE)
  endif()
  set(RFS_MULTIARCH_LIBDIR ON CACHE INTERNAL "CMAKE_INSTALL_LIBDIR defaulted to Debian multiarch")
endif()
include(GNUInstallDirs)

# rfs_install_man(TARGET PAGE...)
#
# Installs the roff man pages PAGE... (kept beside the code they describe,
# section from the file name: ransfs.1 -> man1) into share/man/manN,
# compressed as Debian policy asks (gzip -9n: no name or time stamp, so the
# package is reproducible).  TARGET names the build step that compresses
# them (part of `all`).  tests/install checks every page against its
# tool's --help and renders it with man -l.
function(rfs_install_man target)
  set(out_dir ${CMAKE_BINARY_DIR}/man)
  set(gz_all "")
  foreach(page ${ARGN})
    get_filename_component(name ${page} NAME)
    string(REGEX REPLACE ".*\\.([0-9])$" "\\1" section ${name})
    set(gz ${out_dir}/${name}.gz)
    add_custom_command(OUTPUT ${gz}
      COMMAND ${CMAKE_COMMAND} -E make_directory ${out_dir}
      COMMAND ${CMAKE_COMMAND} -E copy ${CMAKE_CURRENT_SOURCE_DIR}/${page} ${out_dir}/${name}
      COMMAND gzip -9nf ${out_dir}/${name}
      DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${page}
      COMMENT "Compressing man page ${name}"
      VERBATIM)
    install(FILES ${gz} DESTINATION ${CMAKE_INSTALL_MANDIR}/man${section})
    list(APPEND gz_all ${gz})
  endforeach()
  add_custom_target(${target} ALL DEPENDS ${gz_all})
endfunction()
