# Generates and installs thinwire.pc, for projects that build with pkg-config instead of CMake:
#   cc $(pkg-config --cflags thinwire) main.c $(pkg-config --libs thinwire)
# The public headers include <mpi.h> and programs call MPI themselves, so MPI is a public
# requirement: the pkg-config module of the MPI thinwire was built with. For Open MPI that is
# ompi-cxx, not ompi-c: C++ programs that include <mpi.h> also need Open MPI's C++ bindings
# library (libmpi_cxx), and for C programs the extra library is harmless (libthinwire needs
# the C++ runtime anyway). MPICH's mpich.pc covers both languages. Without a module, MPI's
# flags are written in directly.
set(THINWIRE_PC_REQUIRES "" CACHE STRING
    "pkg-config modules thinwire.pc requires (empty: detect the MPI module)")
set(THINWIRE_PC_MPI_LIBS "")
set(THINWIRE_PC_MPI_CFLAGS "")
if(NOT THINWIRE_PC_REQUIRES)
  find_package(PkgConfig QUIET)
  if(PKG_CONFIG_FOUND)
    # ompi-* before mpi-*: the mpi-* modules are alternatives links that may name another MPI.
    if(MPI_C_LIBRARIES MATCHES "openmpi")
      set(candidates ompi-cxx mpi-cxx ompi-c)
    else()
      set(candidates mpich mpi-cxx mpi-c)
    endif()
    foreach(module ${candidates})
      execute_process(COMMAND ${PKG_CONFIG_EXECUTABLE} --exists ${module} RESULT_VARIABLE missing)
      if(NOT missing)
        set(THINWIRE_PC_REQUIRES ${module})
        break()
      endif()
    endforeach()
  endif()
endif()
if(NOT THINWIRE_PC_REQUIRES)
  foreach(dir ${MPI_C_INCLUDE_DIRS})
    string(APPEND THINWIRE_PC_MPI_CFLAGS " -I${dir}")
  endforeach()
  foreach(lib ${MPI_CXX_LIBRARIES})
    string(APPEND THINWIRE_PC_MPI_LIBS " ${lib}")
  endforeach()
endif()
message(STATUS "thinwire: thinwire.pc requires '${THINWIRE_PC_REQUIRES}'")

set(THINWIRE_PC_LIBDIR ${CMAKE_INSTALL_LIBDIR})
set(THINWIRE_PC_INCLUDEDIR ${CMAKE_INSTALL_INCLUDEDIR})
file(RELATIVE_PATH THINWIRE_PC_TO_PREFIX /prefix/${CMAKE_INSTALL_LIBDIR}/pkgconfig /prefix)
string(REGEX REPLACE "/$" "" THINWIRE_PC_TO_PREFIX "${THINWIRE_PC_TO_PREFIX}")
configure_file(${CMAKE_CURRENT_LIST_DIR}/thinwire.pc.in ${PROJECT_BINARY_DIR}/thinwire.pc @ONLY)
install(FILES ${PROJECT_BINARY_DIR}/thinwire.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
