# Imports the XNNPACK that scripts/build-xnnpack.sh built as the target mikv::xnnpack.
# Link order matters: XNNPACK, its production micro-kernels, cpuinfo. pthreadpool's API, which XNNPACK calls, is
# libmikv's own (runtime/pthreadpool_api.cc); the libpthreadpool.a built beside XNNPACK is not linked.
set(_xp "${MIKV_XNNPACK_PREFIX}")
foreach(_lib XNNPACK microkernels-prod cpuinfo)
  if(NOT EXISTS "${_xp}/lib/lib${_lib}.a")
    message(FATAL_ERROR "XNNPACK not found at ${_xp} (lib${_lib}.a missing): run scripts/build-xnnpack.sh "
                        "or pass -DMIKV_XNNPACK_PREFIX=<prefix>")
  endif()
endforeach()
add_library(mikv_xnnpack INTERFACE)
target_include_directories(mikv_xnnpack SYSTEM INTERFACE "${_xp}/include")
target_link_libraries(mikv_xnnpack INTERFACE
  "${_xp}/lib/libXNNPACK.a" "${_xp}/lib/libmicrokernels-prod.a"
  "${_xp}/lib/libcpuinfo.a" Threads::Threads m)
add_library(mikv::xnnpack ALIAS mikv_xnnpack)
