#!/bin/sh
# bundle.sh OUT.S DEPFILE RUNTIME_IMAGE - the assembly that embeds what llfc carries:
# the runtime image (what every trainer starts as) and every .lua file under lua/.
# The depfile names each Lua file so ninja rebuilds when one changes.
set -eu
out=$1 dep=$2 image=$3
files=$(find lua -name '*.lua' | LC_ALL=C sort)
{
    echo '    .section .rodata'
    echo '    .balign 16'
    echo '    .globl llfc_runtime_image'
    echo 'llfc_runtime_image:'
    echo "    .incbin \"$image\""
    echo '    .globl llfc_runtime_image_end'
    echo 'llfc_runtime_image_end:'
    i=0
    for f in $files; do
        echo "lua_name_$i: .asciz \"${f#lua/}\""
        echo "lua_data_$i: .incbin \"$f\""
        echo "lua_end_$i: .byte 0"
        i=$((i + 1))
    done
    echo '    .section .data.rel.ro'
    echo '    .balign 8'
    echo '    .globl llfc_lua_bundle'
    echo 'llfc_lua_bundle:'
    i=0
    for f in $files; do
        echo "    .quad lua_name_$i, lua_data_$i, lua_end_$i - lua_data_$i"
        i=$((i + 1))
    done
    echo '    .quad 0, 0, 0'
    echo '    .section .note.GNU-stack,"",@progbits'
} > "$out.tmp"
mv "$out.tmp" "$out"
{ printf '%s:' "$out"; for f in $files; do printf ' %s' "$f"; done; echo; } > "$dep"
