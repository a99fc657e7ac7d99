# cmake -DFILES="a.so;b.so" -P check_shared_cxx_runtime.cmake
# Each file must name a shared C++ runtime (libstdc++.so.N or libc++.so.N) among its NEEDED
# entries, and must not define libstdc++'s own compiled functions (std::ostream::sentry's
# bool conversion stands for them: it is in libstdc++.so, never instantiated by user code).
find_program(READELF readelf)
find_program(NM nm)
if(NOT READELF OR NOT NM)
  message(FATAL_ERROR "check_shared_cxx_runtime: readelf and nm (binutils) are needed")
endif()
foreach(f IN LISTS FILES)
  execute_process(COMMAND ${READELF} -d ${f} OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "check_shared_cxx_runtime: readelf -d ${f} failed (${rc})")
  endif()
  if(NOT dyn MATCHES "NEEDED[^\n]*\\[(libstdc\\+\\+|libc\\+\\+)\\.so")
    message(FATAL_ERROR
      "${f} does not load a shared C++ runtime (no libstdc++.so/libc++.so among NEEDED): the "
      "link took libstdc++ statically into a shared library, which breaks next to other "
      "C++ libraries in one process (PyTorch). Either the C++ compiler links it statically "
      "(configure with one that does not, e.g. -DCMAKE_CXX_COMPILER=/usr/bin/g++) or a -L "
      "directory on the link line holds a libstdc++.a (see the library's link command; "
      "cmake/cuda_host_runtime.cmake drops the CUDA host compiler's).\n${dyn}")
  endif()
  execute_process(COMMAND ${NM} -D --defined-only ${f} OUTPUT_VARIABLE syms RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "check_shared_cxx_runtime: nm -D ${f} failed (${rc})")
  endif()
  if(syms MATCHES " _ZNKSo6sentrycvbEv")
    message(FATAL_ERROR "${f} defines libstdc++'s own std::ostream::sentry::operator bool: a "
                        "static copy of the C++ runtime is inside it")
  endif()
  message(STATUS "${f}: shared C++ runtime")
endforeach()
list(LENGTH FILES n)
message("PASS: ${n} shared libraries load the C++ runtime as a shared library")
