# Multi-rank tests: sgpt_add_mpi_test and the mpiexec command line they run under.
#
#   sgpt_add_mpi_test(NAME test_comm SOURCES test_comm.cpp RANKS 1 2 3 4
#                     [TIMEOUT 120] [LABELS comm] [LIBS extra] [ARGS --flag])
#
# builds one GoogleTest binary linked with sgpt_gtest_mpi_main (every rank runs every test, a
# failure on any rank fails the test everywhere, see common/comm/testing/mpi_test.hpp) and
# registers one ctest per rank count, named <NAME>.np<N>, that runs
#
#   mpiexec <SGPT_MPIEXEC_FLAGS> -np N <binary> [ARGS]
#
# with the TIMEOUT (default 120 s), the labels LABELS + mpi, and an environment fit for CI
# containers (OMP_NUM_THREADS=1, OpenMPI allowed to run as root, no CMA single-copy).
# Without MPI (-DSCALEGPT_MPI=OFF) only the one-rank case is registered, run directly.
#
# sgpt_mpi_command(<var> NP <n>) puts the command prefix (mpiexec, flags, -np n) into <var>, for
# programs that are not GoogleTest binaries (see tests/comm/CMakeLists.txt).

set(_SGPT_COMM_TESTING_DIR ${CMAKE_CURRENT_LIST_DIR}/../common/comm/testing)

# Flags: OpenMPI needs --oversubscribe to start more ranks than cores (CI has 2), and in
# containers the CMA single-copy path of the shared-memory transport often fails (no ptrace).
set(SGPT_MPIEXEC_FLAGS "" CACHE STRING "Extra flags for mpiexec in multi-rank tests (auto-detected when empty)")
if(SCALEGPT_MPI AND MPIEXEC_EXECUTABLE AND NOT SGPT_MPIEXEC_FLAGS)
  execute_process(COMMAND ${MPIEXEC_EXECUTABLE} --version OUTPUT_VARIABLE _sgpt_mpiexec_version
                  ERROR_QUIET RESULT_VARIABLE _sgpt_mpiexec_rc)
  if(_sgpt_mpiexec_version MATCHES "Open MPI|OpenRTE")
    set(_SGPT_MPIEXEC_AUTO_FLAGS --oversubscribe --bind-to none --mca btl_vader_single_copy_mechanism none)
  else()
    set(_SGPT_MPIEXEC_AUTO_FLAGS "")
  endif()
endif()

# Environment of every multi-rank test. OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM) let OpenMPI 4 run as root
# (CI containers); OMPI_MCA_rmaps_base_oversubscribe does what --oversubscribe does.
set(SGPT_MPI_TEST_ENVIRONMENT
    OMP_NUM_THREADS=1
    OMPI_ALLOW_RUN_AS_ROOT=1
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
    OMPI_MCA_rmaps_base_oversubscribe=1
    OMPI_MCA_btl_vader_single_copy_mechanism=none
    PRTE_MCA_rmaps_default_mapping_policy=:oversubscribe)

function(sgpt_mpi_command out_var)
  cmake_parse_arguments(C "" "NP" "" ${ARGN})
  if(SGPT_MPIEXEC_FLAGS)
    separate_arguments(_flags UNIX_COMMAND "${SGPT_MPIEXEC_FLAGS}")
  else()
    set(_flags ${_SGPT_MPIEXEC_AUTO_FLAGS})
  endif()
  set(${out_var} ${MPIEXEC_EXECUTABLE} ${_flags} ${MPIEXEC_NUMPROC_FLAG} ${C_NP} PARENT_SCOPE)
endfunction()

function(sgpt_add_mpi_test)
  cmake_parse_arguments(T "" "NAME;TIMEOUT" "SOURCES;RANKS;LABELS;LIBS;ARGS" ${ARGN})
  if(NOT T_NAME OR NOT T_SOURCES)
    message(FATAL_ERROR "sgpt_add_mpi_test: NAME and SOURCES are required")
  endif()
  if(NOT T_TIMEOUT)
    set(T_TIMEOUT 120)
  endif()
  if("RANKS" IN_LIST T_KEYWORDS_MISSING_VALUES)
    set(T_RANKS "")  # RANKS with no counts: build the binary only; the caller registers its runs
  elseif(NOT T_RANKS)
    set(T_RANKS 1 2)
  endif()
  if(NOT TARGET sgpt_gtest_mpi_main)
    # Created on first use, in the scope of the first caller, once GoogleTest has been found.
    add_library(sgpt_gtest_mpi_main STATIC ${_SGPT_COMM_TESTING_DIR}/gtest_mpi_main.cpp)
    target_link_libraries(sgpt_gtest_mpi_main PUBLIC sgpt GTest::gtest)
    sgpt_target_warnings(sgpt_gtest_mpi_main)
  endif()
  add_executable(${T_NAME} ${T_SOURCES})
  target_link_libraries(${T_NAME} PRIVATE sgpt_gtest_mpi_main sgpt GTest::gtest ${T_LIBS})
  sgpt_target_warnings(${T_NAME})
  foreach(np IN LISTS T_RANKS)
    if(SCALEGPT_MPI)
      sgpt_mpi_command(_cmd NP ${np})
      add_test(NAME ${T_NAME}.np${np} COMMAND ${_cmd} $<TARGET_FILE:${T_NAME}> ${T_ARGS})
    elseif(np EQUAL 1)
      add_test(NAME ${T_NAME}.np1 COMMAND $<TARGET_FILE:${T_NAME}> ${T_ARGS})
    else()
      continue()
    endif()
    set_tests_properties(${T_NAME}.np${np} PROPERTIES
      TIMEOUT ${T_TIMEOUT}
      LABELS "mpi;${T_LABELS}"
      PROCESSORS ${np}
      ENVIRONMENT "${SGPT_MPI_TEST_ENVIRONMENT}")
  endforeach()
endfunction()
