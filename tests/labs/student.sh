#!/bin/sh
# student.sh DEST [PART] - writes the student tree: every file git tracks,
# copied, with the lab regions of PART and of the parts after it taken out.
#
# A region in raft/*.c is marked by comment lines of their own:
#     /* LAB(part): what to write (the paper's rule and section) */
#     ... the reference's lines ...
#     /* STUB: code */          (optional, any number, just before END)
#     /* END LAB */   or   /* END LAB: code */
# A region taken out becomes "/* TODO (part): what to write ... */" followed
# by its stub code (the least that compiles: a default return, (void)x;
# for parameters the body no longer uses). Regions nest: an inner region of
# a later part is taken out alone when the outer one is given. The markers
# of regions that are given are dropped, so given code reads as plain code.
# Parts, in order: election agreement persistence snapshots membership.
set -eu

PARTS="election agreement persistence snapshots membership"
usage() { echo "usage: $0 DEST [PART]  (PART: $PARTS)" >&2; exit 2; }
[ $# -ge 1 ] || usage
dest=$1
part=${2:-election}
root=$(cd "$(dirname "$0")/../.." && pwd)

removed=""
on=no
for p in $PARTS; do
    [ "$p" = "$part" ] && on=yes
    [ $on = yes ] && removed="$removed $p"
done
[ -n "$removed" ] || { echo "$0: unknown part '$part' (parts: $PARTS)" >&2; exit 2; }

mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
[ "$dest" != "$root" ] || { echo "$0: DEST is the reference tree itself" >&2; exit 2; }
if [ -n "$(ls -A "$dest")" ]; then
    echo "$0: $dest is not empty; give an empty or new directory" >&2
    exit 2
fi

# Copy every tracked file that exists in the working tree, as it is there.
cd "$root"
git ls-files | while IFS= read -r f; do
    [ -f "$f" ] || continue
    mkdir -p "$dest/$(dirname "$f")"
    cp -p "$f" "$dest/$f"
done

# Rewrite the marked files. The lines taken out go to $gone, to check below
# that none of them survives anywhere in the student's raft/.
gone=$dest/.lab-removed.$$
: >"$gone"
: >"$gone.stubs"
status=0
for f in $(grep -l 'LAB(' raft/*.c raft/*.h raft/storage/*.c 2>/dev/null); do
    awk -v removed=" $removed " -v parts=" $PARTS " -v file="$f" -v gone="$gone" -v stubs="$gone.stubs" '
    function fail(msg) {
        printf "%s:%d: %s\n", file, NR, msg > "/dev/stderr"
        bad = 1
        exit 1
    }
    /^[ \t]*\/\* LAB\([a-z]+\): .* \*\/[ \t]*$/ {
        p = $0; sub(/^[ \t]*\/\* LAB\(/, "", p); sub(/\).*$/, "", p)
        if (index(parts, " " p " ") == 0)
            fail("unknown lab part \"" p "\"")
        depth++
        nstub[depth] = 0
        if (skip)
            next
        if (index(removed, " " p " ")) {
            text = $0
            sub(/^[ \t]*\/\* LAB\([a-z]+\): /, "", text)
            sub(/ \*\/[ \t]*$/, "", text)
            indent = $0; sub(/[^ \t].*$/, "", indent)
            ind[depth] = indent
            print indent "/* TODO (" p "): " text " */"
            skip = depth
        }
        next
    }
    /^[ \t]*\/\* STUB: .* \*\/[ \t]*$/ {
        if (depth == 0)
            fail("STUB outside a LAB region")
        code = $0; sub(/^[ \t]*\/\* STUB: /, "", code); sub(/ \*\/[ \t]*$/, "", code)
        stub[depth, ++nstub[depth]] = code
        next
    }
    /^[ \t]*\/\* END LAB(: .*)? \*\/[ \t]*$/ {
        if (depth == 0)
            fail("END LAB without a LAB line before it")
        code = $0
        if (sub(/^[ \t]*\/\* END LAB: /, "", code)) {
            sub(/ \*\/[ \t]*$/, "", code)
            stub[depth, ++nstub[depth]] = code
        }
        if (skip == depth) {
            for (i = 1; i <= nstub[depth]; i++) {
                print ind[depth] stub[depth, i]
                print stub[depth, i] >> stubs
            }
            skip = 0
        }
        depth--
        next
    }
    /LAB\(|END LAB|STUB:/ { fail("a lab marker must be a comment line of its own: " $0) }
    {
        if (skip) {
            line = $0; gsub(/^[ \t]+|[ \t]+$/, "", line)
            if (length(line) >= 24 && line !~ /^(\/\*|\*)/)
                print file "\t" line >> gone
            next
        }
        print
    }
    END {
        if (!bad && depth != 0) {
            printf "%s: %d LAB region(s) left open at the end\n", file, depth > "/dev/stderr"
            exit 1
        }
    }' "$f" >"$dest/$f" || status=1
done
[ $status -eq 0 ] || { rm -f "$gone" "$gone.stubs"; echo "$0: bad lab markers" >&2; exit 1; }

# No solution line may survive. Each distinctive line taken out must occur
# in the student's raft/ no more often than in the reference's raft/ outside
# the regions taken out (plus in the stubs): given code may share a line
# with a solution, a copy of the solution may not add one.
count() { grep -rhF -- "$1" "$2" 2>/dev/null | wc -l; }
left=$(cut -f2 "$gone" | sort | uniq -c | while read -r times line; do
    ref=$(count "$line" "$root/raft")
    now=$(count "$line" "$dest/raft")
    stub=$(grep -cF -- "$line" "$gone.stubs" || true)
    if [ "$now" -gt $((ref - times + stub)) ]; then echo "    $line"; fi
done)
rm -f "$gone" "$gone.stubs"
if [ -n "$left" ]; then
    echo "$0: lines of removed lab code survive in $dest/raft:" >&2
    echo "$left" >&2
    exit 1
fi
n=$(grep -rc 'TODO (' "$dest/raft" | awk -F: '{ s += $2 } END { print s + 0 }')
echo "student tree in $dest: parts$removed taken out ($n TODOs in raft/)"
