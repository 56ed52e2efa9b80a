# compressor_add_subdirectories(): adds every sub-folder of the current source
# folder that has a CMakeLists.txt, in name order (tests/, examples/ and
# benchmarks/ each hold one folder per area).
function(compressor_add_subdirectories)
  file(GLOB _dirs LIST_DIRECTORIES true ${CMAKE_CURRENT_SOURCE_DIR}/*)
  list(SORT _dirs)
  foreach(_dir IN LISTS _dirs)
    if(IS_DIRECTORY ${_dir} AND EXISTS ${_dir}/CMakeLists.txt)
      add_subdirectory(${_dir})
    endif()
  endforeach()
endfunction()
