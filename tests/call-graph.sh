#!/bin/sh
# tests/call-graph.sh SRCDIR OBJDIR: the calls between the object files of
# SRCDIR/*.c (raft/, raft/storage/) must go one way. An edge A -> B means
# A.o references a function B.o defines. The hub (node.o) is left out: it
# dispatches to every rule by design. Prints the graph; fails naming the
# files of a cycle.
set -eu
src=$1
dir=$2
objs=$(for c in "$src"/*.c; do b=$(basename "$c" .c); [ "$b" = node ] || echo "$dir/$b.o"; done)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
for o in $objs; do
    b=$(basename "$o" .o)
    nm "$o" | awk '$2 ~ /^[TDBR]$/ {print $3}' | sort -u >"$tmp/$b.def"
    nm "$o" | awk '$1 == "U" {print $2}' | sort -u >"$tmp/$b.use"
done
for a in $tmp/*.use; do
    an=$(basename "$a" .use)
    for d in $tmp/*.def; do
        dn=$(basename "$d" .def)
        [ "$an" = "$dn" ] && continue
        if [ -n "$(comm -12 "$a" "$d" | head -1)" ]; then
            echo "$an $dn"
        fi
    done
done >"$tmp/edges"
awk '{e[$1] = e[$1] " " $2} END {for (a in e) print a " ->" e[a]}' "$tmp/edges" | sort
# A cycle exists if a topological sort cannot order every edge.
if ! tsort "$tmp/edges" >/dev/null 2>"$tmp/cycle"; then
    echo "$src/: calls go round in a cycle through:" >&2
    grep -v 'input contains a loop' "$tmp/cycle" | sed 's/^tsort: /  /' >&2
    exit 1
fi
echo "$src/: calls between its files go one way."
