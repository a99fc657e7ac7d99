# Sanitizer and fuzzing builds (README "Failure behaviour"). Included before any target is
# defined, so that the flags reach the library, the tests and the harnesses alike.
#   THINWIRE_SANITIZE=address,undefined   every C/C++ object and link with those sanitizers,
#                                          aborting on the first report
#   THINWIRE_FUZZ=ON                       clang only: adds libFuzzer's coverage hooks
#                                          (-fsanitize=fuzzer-no-link), ASan + UBSan by
#                                          default, and the harnesses of tests/fuzz
option(THINWIRE_FUZZ "Build the libFuzzer harnesses of tests/fuzz (clang; with ASan + UBSan)" OFF)
set(THINWIRE_SANITIZE "" CACHE STRING "Sanitizers for every object, e.g. address,undefined")

if(THINWIRE_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID MATCHES "Clang")
    message(FATAL_ERROR "THINWIRE_FUZZ needs clang (libFuzzer), not ${CMAKE_CXX_COMPILER_ID}: "
                        "configure with -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++")
  endif()
  if(NOT THINWIRE_SANITIZE)
    set(THINWIRE_SANITIZE "address,undefined")
  endif()
  add_compile_options($<$<COMPILE_LANGUAGE:C,CXX>:-fsanitize=fuzzer-no-link>)
endif()

if(THINWIRE_SANITIZE)
  message(STATUS "thinwire: sanitizers ${THINWIRE_SANITIZE}")
  add_compile_options(
    "$<$<COMPILE_LANGUAGE:C,CXX>:-fsanitize=${THINWIRE_SANITIZE};-fno-sanitize-recover=all;-fno-omit-frame-pointer>")
  add_link_options(-fsanitize=${THINWIRE_SANITIZE})
endif()
