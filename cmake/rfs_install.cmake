# Install helpers shared by the directories that install something.
# Included by the top-level CMakeLists.txt before its add_subdirectory calls.
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
