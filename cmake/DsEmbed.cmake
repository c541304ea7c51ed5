# DsEmbed.cmake - turn a file into a C array (script mode, run at build time by api/CMakeLists.txt):
#   cmake -DIN=page.html -DOUT=page.c -DNAME=ds__playground_html -DHEADER=playground.h -P DsEmbed.cmake
# writes `const unsigned char NAME[]` (the bytes plus one NUL, so it is also a C string) and
# `const size_t NAME_len` (the byte count without that NUL).
if(NOT IN OR NOT OUT OR NOT NAME)
  message(FATAL_ERROR "DsEmbed.cmake: IN, OUT and NAME are required")
endif()
file(READ "${IN}" hex HEX)
string(LENGTH "${hex}" nhex)
math(EXPR nbytes "${nhex} / 2")
# 16 bytes (32 hex digits) a line, then every byte as 0xNN,
string(REGEX REPLACE "([0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f][0-9a-f])"
       "\\1\n" hex "${hex}")
string(REGEX REPLACE "([0-9a-f][0-9a-f])" "0x\\1," bytes "${hex}")
get_filename_component(src "${IN}" NAME)
set(text "/* generated from ${src} by cmake/DsEmbed.cmake: do not edit */\n")
if(HEADER)
  string(APPEND text "#include \"${HEADER}\"\n")
endif()
string(APPEND text "#include <stddef.h>\n\nconst unsigned char ${NAME}[] = {\n${bytes}0x00};\n"
                   "const size_t ${NAME}_len = ${nbytes};\n")
file(WRITE "${OUT}" "${text}")
