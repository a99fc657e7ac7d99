# Keeps the CUDA host compiler's library directories from choosing the C++ runtime.
#
# A target with CUDA objects is linked by the C++ compiler, and CMake adds the CUDA compiler's
# implicit link directories to that link as -L flags, ahead of the C++ compiler's own search
# path. When nvcc's host compiler is another GCC than CMAKE_CXX_COMPILER (a relocated toolchain
# whose private directory holds only libstdc++.a, as on the image of the H200 machine), the
# `-lstdc++` that g++ appends then resolves to that archive: libthinwire.so carries its own copy
# of the C++ runtime, without NEEDED libstdc++.so.6, and crashes next to PyTorch's shared one.
# The C++ runtime must come from the C++ compiler, so a CUDA-only directory holding a libstdc++
# is dropped from the list; the toolkit's own directories hold none and stay.
function(thinwire_keep_cxx_runtime_of_cxx_compiler)
  set(kept "")
  foreach(dir IN LISTS CMAKE_CUDA_IMPLICIT_LINK_DIRECTORIES)
    file(GLOB runtime "${dir}/libstdc++.a" "${dir}/libstdc++.so*")
    if(runtime AND NOT dir IN_LIST CMAKE_CXX_IMPLICIT_LINK_DIRECTORIES)
      message(STATUS "thinwire: not linking from ${dir}, a C++ runtime of the CUDA host compiler "
                     "(${CMAKE_CUDA_HOST_COMPILER}); libstdc++ comes from ${CMAKE_CXX_COMPILER}")
    else()
      list(APPEND kept "${dir}")
    endif()
  endforeach()
  set(CMAKE_CUDA_IMPLICIT_LINK_DIRECTORIES "${kept}" PARENT_SCOPE)
endfunction()
