# daemon_symbols.cmake - the daemon links only the decoder
# (docs/architecture.md): fail when the symbol table of BIN holds encoder
# code (rfs_enc_*, rfs_tile_encode, the encoder's split and rANS loops).
# So that the check can fail for real, a binary whose table nm cannot read,
# or that is stripped, or that lacks the decoder (rfs_tile_decode), fails
# too.
#   cmake -DNM=<nm> -DBIN=<binary> -P daemon_symbols.cmake
if(NOT NM OR NOT BIN)
  message(FATAL_ERROR "usage: cmake -DNM=<nm> -DBIN=<binary> -P daemon_symbols.cmake")
endif()
execute_process(COMMAND ${NM} ${BIN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${NM} ${BIN} failed (${rc}): ${err}")
endif()
string(REGEX MATCHALL "[^\n]+" lines "${out}")
list(LENGTH lines n)
if(n EQUAL 0)
  message(FATAL_ERROR "${BIN}: nm finds no symbols (stripped?): nothing to check")
endif()
set(bad "")
set(decoder 0)
foreach(line ${lines})
  if(line MATCHES " ([A-Za-z_][A-Za-z0-9_.]*)$")
    set(sym ${CMAKE_MATCH_1})
    if(sym MATCHES "^(rfs_enc_|rfs_tile_encode|rfs_split_planes_|rfs_rans_encode_)")
      list(APPEND bad ${sym})
    elseif(sym STREQUAL "rfs_tile_decode")
      set(decoder 1)
    endif()
  endif()
endforeach()
if(bad)
  # One line per symbol, printed verbatim (NOTICE): FATAL_ERROR text is
  # re-wrapped at a width, so where a name lands depends on the length of
  # the checkout's path, and the selftest's regular expression must match.
  foreach(sym ${bad})
    message(NOTICE "encoder symbol: ${sym}")
  endforeach()
  message(FATAL_ERROR "${BIN} links encoder code (the symbols above)")
endif()
if(NOT decoder)
  message(FATAL_ERROR "${BIN}: no rfs_tile_decode among ${n} symbols: not the daemon?")
endif()
message(STATUS "${BIN}: ${n} symbols, the decoder and no encoder symbol")
