# cmake -DSOURCE_DIR=<repo> -DWORK_DIR=<scratch> -P check_cuda_host_runtime.cmake
# thinwire_keep_cxx_runtime_of_cxx_compiler() on made-up directories: a CUDA host compiler's
# private directory with only libstdc++.a (a relocated GCC) and one with a libstdc++.so are
# dropped; the toolkit's directory (no C++ runtime) and the C++ compiler's own directory (its
# runtime is the one to link) stay, in their order.
cmake_minimum_required(VERSION 3.25)
include(${SOURCE_DIR}/cmake/cuda_host_runtime.cmake)
set(static_only "${WORK_DIR}/relocated_gcc/lib")
set(shared_other "${WORK_DIR}/other_gcc/lib64")
set(toolkit "${WORK_DIR}/cuda/lib")
set(cxx_own "${WORK_DIR}/gcc/12")
file(REMOVE_RECURSE "${WORK_DIR}")
file(MAKE_DIRECTORY "${static_only}" "${shared_other}" "${toolkit}" "${cxx_own}")
file(TOUCH "${static_only}/libstdc++.a" "${shared_other}/libstdc++.so.6" "${toolkit}/libcudart_static.a"
     "${cxx_own}/libstdc++.a" "${cxx_own}/libstdc++.so")
set(CMAKE_CXX_IMPLICIT_LINK_DIRECTORIES "${cxx_own};/usr/lib")
set(CMAKE_CUDA_IMPLICIT_LINK_DIRECTORIES "${toolkit};${static_only};${cxx_own};${shared_other};/usr/lib")
set(CMAKE_CUDA_HOST_COMPILER "${WORK_DIR}/relocated_gcc/bin/g++")
set(CMAKE_CXX_COMPILER "/usr/bin/g++")
thinwire_keep_cxx_runtime_of_cxx_compiler()
set(expected "${toolkit};${cxx_own};/usr/lib")
if(NOT CMAKE_CUDA_IMPLICIT_LINK_DIRECTORIES STREQUAL expected)
  message(FATAL_ERROR "kept '${CMAKE_CUDA_IMPLICIT_LINK_DIRECTORIES}', expected '${expected}'")
endif()
message("PASS: the CUDA host compiler's C++ runtime directories are not linked from")
