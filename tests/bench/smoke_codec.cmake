# bench_codec_smoke: generate 1 MiB of synthetic f32, run
# `ransfs-bench codec FILE --dtype bf16 --from-f32 --json`, expect exit 0
# and a JSON line for codec "ransfs"; then the pair-histogram rows.
set(data ${WORK}/smoke.f32)
execute_process(COMMAND ${PYTHON} ${GEN} --synthetic ${data} --mib 1
                RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "generating ${data} failed: ${rc}")
endif()
execute_process(COMMAND ${BENCH} codec ${data} --dtype bf16 --from-f32 --json
                        --tile-size 65536 --min-time 0.01
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ransfs-bench codec exited with ${rc}")
endif()
if(NOT out MATCHES "\"codec\": *\"ransfs\"")
  message(FATAL_ERROR "no ransfs line in the output")
endif()
# The pair-histogram rows: exit 0 means the two histograms agreed.
execute_process(COMMAND ${BENCH} codec ${data} --dtype bf16 --from-f32 --json
                        --tile-size 65536 --min-time 0.01 --only pair-hist
                RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "ransfs-bench codec --only pair-hist exited with ${rc}")
endif()
if(NOT out MATCHES "\"codec\": *\"pair-hist-ws\"")
  message(FATAL_ERROR "no pair-hist-ws line in the output")
endif()
