# CMake helpers shared by every part of ScaleGPT. One helper per repeated pattern.

# Compiler warnings for a target of ours.
function(sgpt_target_warnings target)
  target_compile_options(${target} PRIVATE
    $<$<COMPILE_LANGUAGE:CXX>:-Wall -Wextra -Wpedantic -Wno-unused-parameter $<$<CXX_COMPILER_ID:GNU>:-Wno-restrict>>
    $<$<AND:$<COMPILE_LANGUAGE:CXX>,$<BOOL:${SCALEGPT_WARNINGS_AS_ERRORS}>>:-Werror>)
endfunction()

# sgpt_add_test(NAME name SOURCES a.cpp b.cpp [LIBS extra] [LABELS l1 l2] [TIMEOUT s])
# A single-process GoogleTest binary, registered test-by-test with ctest.
function(sgpt_add_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;LIBS;LABELS" ${ARGN})
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 300)
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE sgpt GTest::gtest GTest::gtest_main ${T_LIBS})
  sgpt_target_warnings(${T_NAME})
  include(GoogleTest)
  gtest_discover_tests(${T_NAME}
    PROPERTIES LABELS "${T_LABELS}" TIMEOUT ${T_TIMEOUT}
               ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE"
    DISCOVERY_TIMEOUT 60)
endfunction()

# Multi-rank tests (sgpt_add_mpi_test) live beside the communication layer's helpers.
include(${CMAKE_CURRENT_LIST_DIR}/ScaleGPTMPI.cmake OPTIONAL)
# Lessons (sgpt_add_lesson) and their stub/solution switch.
include(${CMAKE_CURRENT_LIST_DIR}/ScaleGPTLessons.cmake OPTIONAL)
