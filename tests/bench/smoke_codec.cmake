# bench_codec_smoke: generate 1 MiB of synthetic f32, run
# `ransfs-bench codec FILE --dtype bf16 --from-f32 --json`, expect exit 0
# and a JSON line for codec "ransfs"; then the pair-histogram rows.
set(data ${WORK}/smoke.f32)
execute_process(COMMAND ${PYTHON} ${GEN} --synthetic ${data} --mib 1
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "generating ${data} failed: ${rc}")
endif()
# run_bench(NEEDLE ARGS...): ransfs-bench codec on the file with ARGS; it
# must exit 0 and print a JSON line for codec NEEDLE.
function(run_bench needle)
  execute_process(COMMAND ${BENCH} codec ${data} --dtype bf16 --from-f32 --json
                          --tile-size 65536 --min-time 0.01 ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  message("${out}${err}")
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "ransfs-bench codec ${ARGN} exited with ${rc}")
  endif()
  if(NOT out MATCHES "\"codec\": *\"${needle}\"")
    message(FATAL_ERROR "no ${needle} line in the output")
  endif()
endfunction()
run_bench(ransfs)
# The pair-histogram rows: exit 0 means the two histograms agreed.
run_bench(pair-hist-ws --only pair-hist)
