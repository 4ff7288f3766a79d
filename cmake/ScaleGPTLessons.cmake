# Lessons: sgpt_add_lesson, the one helper that adds a lesson (library, driver, tests, labels).
#
#   sgpt_add_lesson(NUMBER 01 SLUG training_step
#                   [DRIVER driver.cpp] [DRIVER_NAME lesson01-training-step]
#                   [TESTS tests/test_x.cpp ...] [TIMEOUT 60] [RANKS 1 2 4])
#
# The student files of the lesson are declared once, in grading/points.json ("student_files"),
# and come from the folder that SCALEGPT_LESSONS_FROM names:
#   stubs      lessons/NN_slug/<file>        (default: what a student edits)
#   solutions  solutions/NN_slug/<file>      (the reference; absent from the student release)
#   <path>     <path>/NN_slug/<file>         (the grader points it at a submission)
# Everything else of the lesson (its header, driver and tests) always comes from lessons/NN_slug.
# The earlier lessons it builds on are declared in points.json too ("builds_on"): the lesson links their
# reference version (lessonNN_reference, see sgpt_lesson_reference), never a copy in common/.
#
# It creates
#   lessonNN              a static library of the student files (links sgpt)
#   lessonNN-<slug>       the driver program (DRIVER), in <build>/lessons/NN_slug/
#   lessonNN_tests        the public GoogleTest binary (TESTS), ctest names lessonNN.<Suite>.<Test>
#   lessonNN_hidden_tests the hidden tests, when grading/hidden/NN_slug/ exists (instructors only)
# with ctest labels lesson-NN and lessons (+ hidden). RANKS registers multi-rank runs through
# sgpt_add_mpi_test (later lessons); one-rank lessons leave it out.

# The default follows the tree: the instructors' tree (with solutions/) builds the reference, so
# `make test` passes there; the student release (no solutions/) builds the stubs, so `make test`
# says which tasks are left.
if(EXISTS ${PROJECT_SOURCE_DIR}/solutions)
  set(_sgpt_lessons_default solutions)
else()
  set(_sgpt_lessons_default stubs)
endif()
set(SCALEGPT_LESSONS_FROM ${_sgpt_lessons_default} CACHE STRING
    "Where lesson student files come from: stubs (lessons/), solutions (solutions/), or a directory holding NN_slug/ folders")
set(SCALEGPT_HIDDEN_TESTS_DIR "${PROJECT_SOURCE_DIR}/grading/hidden" CACHE PATH
    "Folder of hidden tests (NN_slug/ sub-folders); ignored when it does not exist")
set(SCALEGPT_POINTS_FILE "${PROJECT_SOURCE_DIR}/grading/points.json" CACHE FILEPATH
    "Points per test and the student files of every lesson")
# Grading builds (grading/grade.py sets these; see grading/README.md):
#   SCALEGPT_LESSONS_ONLY  configure only these lessons (e.g. "04"), so a submission holding one
#                          lesson's files configures without the others
#   SCALEGPT_GRADING       link the grader's reporter (grading/reporter/) into every lesson test
#                          binary, and register each single-process binary as ONE ctest test instead
#                          of discovering its tests (discovery runs the binary, i.e. student code,
#                          whenever ctest lists the tests; the grader lists them with
#                          `ctest --show-only=json-v1` and must not run student code to do it).
#                          Multi-rank binaries are registered as always (one ctest per rank count).
set(SCALEGPT_REFERENCE_DIR "" CACHE PATH
    "Where the reference of a lesson that a later one builds on comes from (NN_slug/ folders); empty: solutions/, else lessons/")
set(SCALEGPT_LESSONS_ONLY "" CACHE STRING "Only configure these lessons (numbers, e.g. 01;04); empty: all")
option(SCALEGPT_GRADING "Graded build: link the grader's reporter into lesson tests (grading/grade.py)" OFF)

# The reporter, an OBJECT library so that its .preinit_array always lands in the executable.
function(_sgpt_grade_reporter)
  if(NOT TARGET sgpt_grade_reporter)
    add_library(sgpt_grade_reporter OBJECT ${PROJECT_SOURCE_DIR}/grading/reporter/grade_reporter.cpp)
    target_link_libraries(sgpt_grade_reporter PUBLIC GTest::gtest)
    sgpt_target_warnings(sgpt_grade_reporter)
  endif()
endfunction()

# What grading/points.json declares for lesson `number`: its student files, its slug, and the
# earlier lessons it builds on ("builds_on", e.g. ["08"] for lesson 09).
function(_sgpt_lesson_info number files_var slug_var deps_var)
  file(READ ${SCALEGPT_POINTS_FILE} _json)
  string(JSON _n LENGTH "${_json}" lessons)
  math(EXPR _last "${_n} - 1")
  foreach(i RANGE ${_last})
    string(JSON _num GET "${_json}" lessons ${i} number)
    if(_num STREQUAL number)
      string(JSON _slug GET "${_json}" lessons ${i} slug)
      foreach(key student_files builds_on)
        set(_list_${key} "")
        string(JSON _nf ERROR_VARIABLE _missing LENGTH "${_json}" lessons ${i} ${key})
        if(NOT _missing AND _nf GREATER 0)
          math(EXPR _lf "${_nf} - 1")
          foreach(j RANGE ${_lf})
            string(JSON _f GET "${_json}" lessons ${i} ${key} ${j})
            list(APPEND _list_${key} ${_f})
          endforeach()
        endif()
      endforeach()
      set(${files_var} ${_list_student_files} PARENT_SCOPE)
      set(${slug_var} ${_slug} PARENT_SCOPE)
      set(${deps_var} ${_list_builds_on} PARENT_SCOPE)
      return()
    endif()
  endforeach()
  message(FATAL_ERROR "sgpt_add_lesson: lesson ${number} is not declared in ${SCALEGPT_POINTS_FILE}")
endfunction()

# lessonNN_reference: the reference version of lesson NN, for the later lessons that build on it
# (points.json "builds_on"), so that a later lesson's grade depends on its own student files only.
# It is the one copy of that code: solutions/NN_slug (or SCALEGPT_REFERENCE_DIR/NN_slug, which the
# grader fills from solutions/); in the student release, which holds no solutions, it is the
# student's own lessons/NN_slug, so lesson 09 runs on the split the student wrote in lesson 08.
function(sgpt_lesson_reference out_var number)
  set(_t lesson${number}_reference)
  if(NOT TARGET ${_t})
    _sgpt_lesson_info(${number} _files _slug _deps)
    set(_dir ${number}_${_slug})
    if(SCALEGPT_REFERENCE_DIR AND IS_DIRECTORY ${SCALEGPT_REFERENCE_DIR}/${_dir})
      set(_root ${SCALEGPT_REFERENCE_DIR})
    elseif(IS_DIRECTORY ${PROJECT_SOURCE_DIR}/solutions/${_dir})
      set(_root ${PROJECT_SOURCE_DIR}/solutions)
    else()
      set(_root ${PROJECT_SOURCE_DIR}/lessons)
    endif()
    get_property(_own_root GLOBAL PROPERTY SGPT_LESSON_${number}_ROOT)
    if(TARGET lesson${number} AND _own_root STREQUAL _root)
      # lessonNN is built from the same files (the reference tree, or the release's lessons/): link
      # it, so that a program that links lessonNN too (the trainer) holds one copy of the code.
      add_library(${_t} INTERFACE)
      target_link_libraries(${_t} INTERFACE lesson${number})
    else()
      set(_srcs "")
      foreach(f IN LISTS _files)
        if(NOT EXISTS ${_root}/${_dir}/${f})
          message(FATAL_ERROR "the reference of lesson ${number}: ${_root}/${_dir}/${f} is missing")
        endif()
        list(APPEND _srcs ${_root}/${_dir}/${f})
      endforeach()
      add_library(${_t} STATIC ${_srcs})
      target_include_directories(${_t} PUBLIC ${PROJECT_SOURCE_DIR}/lessons/${_dir})
      # sgpt_parallel: what the lessons' LIBS add (lesson 11's ZeRO steps run a UnitRunner).
      target_link_libraries(${_t} PUBLIC sgpt sgpt_parallel)
      foreach(d IN LISTS _deps)
        sgpt_lesson_reference(_dref ${d})
        target_link_libraries(${_t} PUBLIC ${_dref})
      endforeach()
      sgpt_target_warnings(${_t})
    endif()
  endif()
  set(${out_var} ${_t} PARENT_SCOPE)
endfunction()

function(sgpt_add_lesson)
  cmake_parse_arguments(L "" "NUMBER;SLUG;DRIVER;DRIVER_NAME;TIMEOUT" "TESTS;RANKS;LIBS" ${ARGN})
  if(NOT L_NUMBER OR NOT L_SLUG)
    message(FATAL_ERROR "sgpt_add_lesson: NUMBER and SLUG are required")
  endif()
  if(NOT L_TIMEOUT)
    set(L_TIMEOUT 60)
  endif()
  if(SCALEGPT_LESSONS_ONLY AND NOT L_NUMBER IN_LIST SCALEGPT_LESSONS_ONLY)
    return()
  endif()
  set(_dir "${L_NUMBER}_${L_SLUG}")
  set(_lib lesson${L_NUMBER})
  set(_lessons_root ${PROJECT_SOURCE_DIR}/lessons)

  if(SCALEGPT_LESSONS_FROM STREQUAL "stubs")
    set(_src_root ${_lessons_root})
  elseif(SCALEGPT_LESSONS_FROM STREQUAL "solutions")
    set(_src_root ${PROJECT_SOURCE_DIR}/solutions)
    if(NOT EXISTS ${_src_root}/${_dir})
      message(FATAL_ERROR "SCALEGPT_LESSONS_FROM=solutions, but ${_src_root}/${_dir} does not exist "
                          "(the student release holds no solutions; use -DSCALEGPT_LESSONS_FROM=stubs)")
    endif()
  else()
    get_filename_component(_src_root "${SCALEGPT_LESSONS_FROM}" ABSOLUTE BASE_DIR ${CMAKE_BINARY_DIR})
    if(NOT IS_DIRECTORY ${_src_root})
      message(FATAL_ERROR "SCALEGPT_LESSONS_FROM must be stubs, solutions or an existing directory; got '${SCALEGPT_LESSONS_FROM}'")
    endif()
  endif()

  _sgpt_lesson_info(${L_NUMBER} _files _slug _builds_on)
  set(_srcs "")
  foreach(f IN LISTS _files)
    if(NOT EXISTS ${_src_root}/${_dir}/${f})
      message(FATAL_ERROR "lesson ${L_NUMBER}: student file ${_src_root}/${_dir}/${f} is missing")
    endif()
    list(APPEND _srcs ${_src_root}/${_dir}/${f})
  endforeach()

  add_library(${_lib} STATIC ${_srcs})
  set_property(GLOBAL PROPERTY SGPT_LESSON_${L_NUMBER}_ROOT ${_src_root})
  target_include_directories(${_lib} PUBLIC ${_lessons_root}/${_dir})
  target_link_libraries(${_lib} PUBLIC sgpt ${L_LIBS})
  foreach(dep IN LISTS _builds_on)
    sgpt_lesson_reference(_ref ${dep})
    target_link_libraries(${_lib} PUBLIC ${_ref})
  endforeach()
  sgpt_target_warnings(${_lib})
  if(SCALEGPT_GRADING)
    # What the grader's lint (grading/lint.py) reads to see which library functions the student's
    # files call: the same files unoptimised, so that a call to an inline library function
    # (core/half.hpp's conversions, a header-only helper) stays a call nm can see. Not linked.
    add_library(${_lib}_lint OBJECT ${_srcs})
    target_link_libraries(${_lib}_lint PRIVATE ${_lib})
    target_compile_options(${_lib}_lint PRIVATE -O0 -fno-inline)
  endif()

  if(L_DRIVER)
    if(NOT L_DRIVER_NAME)
      string(REPLACE "_" "-" _slug_dash ${L_SLUG})
      set(L_DRIVER_NAME lesson${L_NUMBER}-${_slug_dash})
    endif()
    add_executable(${L_DRIVER_NAME} ${_lessons_root}/${_dir}/${L_DRIVER})
    target_link_libraries(${L_DRIVER_NAME} PRIVATE ${_lib} CLI11::CLI11)
    sgpt_target_warnings(${L_DRIVER_NAME})
    add_dependencies(lessons ${L_DRIVER_NAME})
  endif()
  add_dependencies(lessons ${_lib})

  if(NOT SCALEGPT_BUILD_TESTS)
    return()
  endif()
  include(GoogleTest)
  if(SCALEGPT_GRADING)
    _sgpt_grade_reporter()
  endif()
  set(_groups public)
  set(_hidden_dir ${SCALEGPT_HIDDEN_TESTS_DIR}/${_dir})
  if(IS_DIRECTORY ${_hidden_dir})
    list(APPEND _groups hidden)
  endif()
  foreach(group IN LISTS _groups)
    if(group STREQUAL "public")
      set(_target lesson${L_NUMBER}_tests)
      set(_tsrcs "")
      foreach(t IN LISTS L_TESTS)
        list(APPEND _tsrcs ${_lessons_root}/${_dir}/${t})
      endforeach()
      set(_labels "lesson-${L_NUMBER};lessons")
      set(_prefix "lesson${L_NUMBER}.")
    else()
      set(_target lesson${L_NUMBER}_hidden_tests)
      file(GLOB _tsrcs CONFIGURE_DEPENDS ${_hidden_dir}/*.cpp)
      set(_labels "lesson-${L_NUMBER};lessons;hidden")
      set(_prefix "lesson${L_NUMBER}.hidden.")
    endif()
    if(NOT _tsrcs)
      continue()
    endif()
    if(L_RANKS AND COMMAND sgpt_add_mpi_test)
      sgpt_add_mpi_test(NAME ${_target} SOURCES ${_tsrcs} RANKS ${L_RANKS} TIMEOUT ${L_TIMEOUT}
                        LABELS ${_labels} LIBS ${_lib})
      target_include_directories(${_target} PRIVATE ${_lessons_root}/${_dir})
      if(SCALEGPT_GRADING)
        target_link_libraries(${_target} PRIVATE sgpt_grade_reporter)
      endif()
    elseif(SCALEGPT_GRADING)
      add_executable(${_target} ${_tsrcs})
      target_link_libraries(${_target} PRIVATE sgpt_grade_reporter ${_lib} GTest::gtest GTest::gtest_main)
      target_include_directories(${_target} PRIVATE ${_lessons_root}/${_dir})
      sgpt_target_warnings(${_target})
      add_test(NAME ${_target} COMMAND $<TARGET_FILE:${_target}>)
      set_tests_properties(${_target} PROPERTIES TIMEOUT ${L_TIMEOUT} ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE"
                           LABELS "${_labels}")
    else()
      add_executable(${_target} ${_tsrcs})
      target_link_libraries(${_target} PRIVATE ${_lib} GTest::gtest GTest::gtest_main)
      target_include_directories(${_target} PRIVATE ${_lessons_root}/${_dir})
      sgpt_target_warnings(${_target})
      # PRE_TEST: tests are listed when ctest runs, so building never runs student code.
      gtest_discover_tests(${_target} TEST_PREFIX ${_prefix} DISCOVERY_MODE PRE_TEST
        TEST_LIST ${_target}_TESTS
        PROPERTIES TIMEOUT ${L_TIMEOUT} ENVIRONMENT "OMP_WAIT_POLICY=PASSIVE")
      # Labels are a list, which PRE_TEST discovery (CMake < 3.27) splits: set them afterwards
      # from the list of discovered tests.
      set(_labels_file ${CMAKE_CURRENT_BINARY_DIR}/${_target}_labels.cmake)
      file(WRITE ${_labels_file}
           "if(${_target}_TESTS)\n  set_tests_properties(\${${_target}_TESTS} PROPERTIES LABELS \"${_labels}\")\nendif()\n")
      set_property(DIRECTORY APPEND PROPERTY TEST_INCLUDE_FILES ${_labels_file})
    endif()
    add_dependencies(lessons ${_target})
  endforeach()
endfunction()

# ---- docs: Doxygen HTML of the public headers of common/ ---------------------------------------------
# README.md is the main page; docs/*.md are extra pages. Undocumented public API fails the target
# (docs/Doxyfile.in: EXTRACT_ALL=NO, WARN_IF_UNDOCUMENTED=YES, WARN_AS_ERROR=FAIL_ON_WARNINGS);
# the warnings are listed in <build>/docs/warnings.log.
find_package(Doxygen QUIET)
if(DOXYGEN_FOUND AND NOT TARGET docs)
  set(SGPT_DOCS_OUT ${CMAKE_BINARY_DIR}/docs)
  set(SGPT_DOCS_INPUT "${PROJECT_SOURCE_DIR}/common ${PROJECT_SOURCE_DIR}/docs")
  set(SGPT_DOCS_MAINPAGE "")
  if(EXISTS ${PROJECT_SOURCE_DIR}/README.md)
    set(SGPT_DOCS_INPUT "${PROJECT_SOURCE_DIR}/README.md ${SGPT_DOCS_INPUT}")
    set(SGPT_DOCS_MAINPAGE ${PROJECT_SOURCE_DIR}/README.md)
  endif()
  # The pages README.md links to, so its links resolve.
  file(GLOB _sgpt_doc_pages ${PROJECT_SOURCE_DIR}/lessons/README.md ${PROJECT_SOURCE_DIR}/lessons/[0-9][0-9]_*/README.md
       ${PROJECT_SOURCE_DIR}/grading/README.md ${PROJECT_SOURCE_DIR}/datasets/README.md)
  list(JOIN _sgpt_doc_pages " " _sgpt_doc_pages)
  set(SGPT_DOCS_INPUT "${SGPT_DOCS_INPUT} ${_sgpt_doc_pages}")
  configure_file(${PROJECT_SOURCE_DIR}/docs/Doxyfile.in ${SGPT_DOCS_OUT}/Doxyfile @ONLY)
  add_custom_target(docs
    COMMAND ${CMAKE_COMMAND} -E rm -f ${SGPT_DOCS_OUT}/warnings.log
    COMMAND ${DOXYGEN_EXECUTABLE} ${SGPT_DOCS_OUT}/Doxyfile
    COMMAND ${CMAKE_COMMAND} -E echo "docs: ${SGPT_DOCS_OUT}/html/index.html"
    WORKING_DIRECTORY ${PROJECT_SOURCE_DIR}
    COMMENT "Doxygen: public API of common/ (warnings in ${SGPT_DOCS_OUT}/warnings.log)"
    VERBATIM)
elseif(NOT DOXYGEN_FOUND AND NOT TARGET docs)
  add_custom_target(docs COMMAND ${CMAKE_COMMAND} -E echo "docs: doxygen is not installed (apt-get install doxygen)")
endif()
