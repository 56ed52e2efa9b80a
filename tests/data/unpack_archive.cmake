# cmake -DARCHIVE=<tar.gz> -DDEST=<dir> -P unpack_archive.cmake
# Unpacks ARCHIVE into DEST once (a stamp file marks a complete unpack).
# Prints SKIPPED (the test's SKIP_REGULAR_EXPRESSION) when ARCHIVE is absent.
if(NOT EXISTS "${ARCHIVE}")
  message("SKIPPED: ${ARCHIVE} not found")
  return()
endif()
set(_stamp "${DEST}/.unpacked")
if(EXISTS "${_stamp}")
  file(TIMESTAMP "${_stamp}" _t_stamp "%s")
  file(TIMESTAMP "${ARCHIVE}" _t_archive "%s")
  if(_t_stamp GREATER_EQUAL _t_archive)
    message("already unpacked in ${DEST}")
    return()
  endif()
endif()
file(REMOVE_RECURSE "${DEST}")
file(MAKE_DIRECTORY "${DEST}")
execute_process(COMMAND ${CMAKE_COMMAND} -E tar xzf "${ARCHIVE}"
                WORKING_DIRECTORY "${DEST}" RESULT_VARIABLE _rc)
if(NOT _rc EQUAL 0)
  message(FATAL_ERROR "unpacking ${ARCHIVE} failed: ${_rc}")
endif()
file(TOUCH "${_stamp}")
