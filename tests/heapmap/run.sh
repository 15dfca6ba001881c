#!/usr/bin/env bash
# Heap picture test (issue 4, "A picture of the heap"): show_alloc_mem_json
# and scripts/heapmap, end to end.
#
# A real multithreaded run (tests/heapmap/heap_demo.c: 6 threads on 4
# arenas, TINY/SMALL/LARGE blocks, cross-thread frees, chunks left in thread
# caches, zones with nothing live) dumps its frozen heap twice: as JSON lines
# and as show_alloc_mem text. The test then checks
#   - the dump is well formed, its totals add up, and it holds what the demo
#     is there to produce (several arenas; live, cached and free chunks; a
#     zone with nothing live; a zone drawn as runs; LARGE mappings);
#   - the dump and show_alloc_mem describe the same heap: every allocation
#     line of one is exactly one "chunk"/"large" line of the other, under the
#     same zone, and the zone headers printed are exactly the zones with a
#     live chunk;
#   - scripts/heapmap draws it (HTML and bare SVG), is self-contained, and
#     rejects a dump with a non-JSON line, without its "end" line, or whose
#     totals disagree;
#   - headless Chromium loads both without a console message, and its DOM
#     holds one class="zone" group per zone line (with the zone's kind, arena
#     and class), one class="large" group per LARGE line, and a summary equal
#     to the dump's "end" line; a screenshot shows the state colours.
# Pictures are looked at by people; a wrong count or a blank page here means
# the tool lies about the heap.
#
# Usage: bash tests/heapmap/run.sh [path/to/libft_malloc.so]
# Needs cc, python3 and chromium (bash scripts/deps.sh heapmap).
# Prints `PASS name` or `FAIL name: reason` per check, then
# `heapmap: N passed, M failed`; exits non-zero when M > 0.
set -uo pipefail
export LC_ALL=C TZ=UTC

PASSED=0
FAILED=0
T_START=$SECONDS

pass() {
	echo "PASS $1${HEAPMAP_TIMES:+ ($((SECONDS - T_START)) s)}"
	PASSED=$((PASSED + 1))
}

# fail NAME REASON [FILE-WITH-DETAILS]
fail() {
	echo "FAIL $1: $2"
	FAILED=$((FAILED + 1))
	if [ -n "${3:-}" ] && [ -s "$3" ]; then
		head -n 12 "$3" | cut -c1-200 | sed 's/^/    | /'
	fi
}

finish() {
	echo "heapmap: done in $((SECONDS - T_START)) s"
	echo "heapmap: $PASSED passed, $FAILED failed"
	[ "$FAILED" -eq 0 ]
	exit
}

# the library path is taken relative to the caller's directory, then
# everything runs from the repository root
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
LIB_ARG=${1:-$ROOT/libft_malloc.so}
if ! LIB=$(realpath -es -- "$LIB_ARG" 2>/dev/null) || [ ! -f "$LIB" ]; then
	fail setup "library '$LIB_ARG' not found (run make)"
	finish
fi
cd "$ROOT" || exit 1
LIBDIR=$(dirname "$LIB")
if [ -x /usr/bin/python3 ]; then PY=/usr/bin/python3; else PY=python3; fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/ftm_heapmap.XXXXXX")
CHILD=""
cleanup() {
	if [ -n "$CHILD" ]; then
		kill -TERM -- "-$CHILD" "$CHILD" 2>/dev/null
		wait "$CHILD" 2>/dev/null
	fi
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# bounded SECONDS CMD...: CMD under timeout, in the background and waited
# for, so that INT/TERM reach the trap above at once.
bounded() {
	local limit=$1 rc=0
	shift
	timeout -k 5 "$limit" "$@" <&0 &
	CHILD=$!
	wait "$CHILD" || rc=$?
	CHILD=""
	return "$rc"
}

describe_rc() {
	case $1 in
	124 | 137) echo "timed out" ;;
	*) if [ "$1" -gt 128 ]; then echo "killed by signal $(($1 - 128))"; else echo "status $1"; fi ;;
	esac
}

# ---------------------------------------------------------------------------
# The checks that read files are Python (standard library only).
cat >"$WORK/check.py" <<'EOF'
"""Checks for tests/heapmap/run.sh: check.py COMMAND ARGS..., exit 0 when
the check holds, else 1 with the reasons on stdout (one a line)."""
import json
import re
import sys
import zlib
import struct
from collections import Counter
from html.parser import HTMLParser


def load_dump(path):
    lines = [json.loads(l) for l in open(path) if l.strip()]
    return {
        "heap": [o for o in lines if o["type"] == "heap"],
        "zones": [o for o in lines if o["type"] == "zone"],
        "chunks": [o for o in lines if o["type"] == "chunk"],
        "large": [o for o in lines if o["type"] == "large"],
        "end": [o for o in lines if o["type"] == "end"],
        "lines": lines,
    }


def dump_format(path):
    """The dump's own invariants, and that it shows what the demo made."""
    errs = []
    try:
        d = load_dump(path)
    except (ValueError, KeyError) as e:
        return ["not JSON lines with a type: %s" % e]
    ls = d["lines"]
    if not ls or ls[0]["type"] != "heap" or ls[-1]["type"] != "end":
        errs.append("the first line must be heap and the last end")
    if len(d["heap"]) != 1 or len(d["end"]) != 1:
        return errs + ["want one heap and one end line"]
    end = d["end"][0]
    zones = {z["addr"]: z for z in d["zones"]}
    per_zone = Counter(c["zone"] for c in d["chunks"])
    for z in d["zones"]:
        if len(z["states"]) != z["carved"] or z["carved"] > z["capacity"]:
            errs.append("zone %s: %d states, carved %d, capacity %d"
                        % (z["addr"], len(z["states"]), z["carved"], z["capacity"]))
        if set(z["states"]) - set("LCF"):
            errs.append("zone %s: unknown state letters" % z["addr"])
        if per_zone[z["addr"]] != z["states"].count("L"):
            errs.append("zone %s: %d L but %d chunk lines"
                        % (z["addr"], z["states"].count("L"), per_zone[z["addr"]]))
        if (z["kind"] == "TINY") != (z["chunk_size"] <= 512):
            errs.append("zone %s: kind %s for %d-byte chunks"
                        % (z["addr"], z["kind"], z["chunk_size"]))
    for c in d["chunks"]:
        z = zones.get(c["zone"])
        if z is None:
            errs.append("chunk %s in unknown zone %s" % (c["addr"], c["zone"]))
            continue
        off = int(c["addr"], 16) - int(z["first"], 16)
        if off < 0 or off % z["chunk_size"] or off // z["chunk_size"] >= z["carved"] \
                or z["states"][off // z["chunk_size"]] != "L" or c["size"] > z["chunk_size"]:
            errs.append("chunk %s (%d B) is not a live chunk of %s"
                        % (c["addr"], c["size"], c["zone"]))
    for lg in d["large"]:
        if lg["size"] <= 32768 or int(lg["user"], 16) + lg["size"] > \
                int(lg["addr"], 16) + lg["map_len"]:
            errs.append("large %s: %d B in a %d-byte mapping"
                        % (lg["addr"], lg["size"], lg["map_len"]))
    regions = sorted([int(z["addr"], 16) for z in d["zones"]]
                     + [int(l["addr"], 16) for l in d["large"]])
    listed = [int(o["addr"], 16) for o in ls if o["type"] in ("zone", "large")]
    if listed != regions:
        errs.append("zones and LARGE mappings are not in address order")
    want = {"zones": len(d["zones"]), "large": len(d["large"]),
            "live_blocks": len(d["chunks"]) + len(d["large"]),
            "live_bytes": sum(c["size"] for c in d["chunks"])
            + sum(l["size"] for l in d["large"]),
            "cached_chunks": sum(z["states"].count("C") for z in d["zones"]),
            "free_chunks": sum(z["states"].count("F") for z in d["zones"])}
    for k, v in want.items():
        if end.get(k) != v:
            errs.append("end %s=%s, counted %d" % (k, end.get(k), v))
    if errs:
        return errs
    # what the demo is there to produce
    states = "".join(z["states"] for z in d["zones"])
    for letter, name in (("L", "live"), ("C", "cached"), ("F", "free")):
        if letter not in states:
            errs.append("no %s chunk in the dump" % name)
    if len({z["arena"] for z in d["zones"]}) < 2:
        errs.append("zones of fewer than 2 arenas")
    if not any("L" not in z["states"] for z in d["zones"]):
        errs.append("no zone without a live chunk")
    if not any(z["carved"] > 512 for z in d["zones"]):
        errs.append("no zone with more than 512 carved chunks")
    if not d["large"] or not any(z["kind"] == "SMALL" for z in d["zones"]):
        errs.append("no LARGE mapping or no SMALL zone")
    return errs


SHOW_HEAD = re.compile(r"^(TINY|SMALL|LARGE) : (0x[0-9a-f]+)$")
SHOW_BLOCK = re.compile(r"^(0x[0-9a-f]+) - (0x[0-9a-f]+) : (\d+) bytes$")
SHOW_TOTAL = re.compile(r"^Total : (\d+) bytes$")


def parse_show(path):
    """[(kind, header_addr, [(start, size)...])], total; raises ValueError."""
    groups, total = [], None
    for n, line in enumerate(open(path).read().splitlines(), 1):
        if total is not None:
            raise ValueError("line %d after Total: %r" % (n, line))
        m = SHOW_HEAD.match(line)
        if m:
            groups.append((m.group(1), int(m.group(2), 16), []))
            continue
        m = SHOW_BLOCK.match(line)
        if m:
            start, stop, size = int(m.group(1), 16), int(m.group(2), 16), int(m.group(3))
            if not groups or stop - start != size:
                raise ValueError("line %d: %r" % (n, line))
            groups[-1][2].append((start, size))
            continue
        m = SHOW_TOTAL.match(line)
        if m:
            total = int(m.group(1))
            continue
        raise ValueError("line %d unexpected: %r" % (n, line))
    if total is None:
        raise ValueError("no Total line")
    return groups, total


def dump_vs_show(dump_path, show_path):
    d = load_dump(dump_path)
    try:
        groups, total = parse_show(show_path)
    except ValueError as e:
        return ["show_alloc_mem output: %s" % e]
    errs = []
    end = d["end"][0]
    zones = {int(z["addr"], 16): z for z in d["zones"]}
    larges = {int(l["addr"], 16): l for l in d["large"]}
    chunks_of = {}
    for c in d["chunks"]:
        chunks_of.setdefault(int(c["zone"], 16), Counter())[
            (int(c["addr"], 16), c["size"])] += 1
    heads = [g[1] for g in groups]
    if heads != sorted(heads) or len(set(heads)) != len(heads):
        errs.append("show_alloc_mem headers not in increasing address order")
    seen_zones = set()
    for kind, addr, blocks in groups:
        if kind == "LARGE":
            lg = larges.get(addr)
            want = [(int(lg["user"], 16), lg["size"])] if lg else None
            if want != blocks:
                errs.append("LARGE 0x%x: %d block line(s) in show_alloc_mem, "
                            "first %s; dump: %s" % (addr, len(blocks),
                                                    blocks[:1], want))
            continue
        z = zones.get(addr)
        if z is None or z["kind"] != kind:
            errs.append("%s 0x%x: no such zone in the dump" % (kind, addr))
            continue
        seen_zones.add(addr)
        if Counter(blocks) != chunks_of.get(addr, Counter()) or \
                len(set(blocks)) != len(blocks):
            errs.append("%s 0x%x: %d blocks in show_alloc_mem, %d chunk lines"
                        % (kind, addr, len(blocks), sum(chunks_of.get(addr, {}).values())))
    live_zones = {a for a, z in zones.items() if "L" in z["states"]}
    if seen_zones != live_zones:
        errs.append("zone headers: %d in show_alloc_mem, %d zones with a live "
                    "chunk in the dump (%d differ)" % (len(seen_zones), len(live_zones),
                                                    len(seen_zones ^ live_zones)))
    shown_large = {g[1] for g in groups if g[0] == "LARGE"}
    if shown_large != set(larges):
        errs.append("LARGE headers: %d in show_alloc_mem, %d large lines"
                    % (len(shown_large), len(larges)))
    all_show = Counter(b for g in groups for b in g[2])
    all_dump = Counter((int(c["addr"], 16), c["size"]) for c in d["chunks"])
    all_dump.update((int(l["user"], 16), l["size"]) for l in d["large"])
    if all_show != all_dump:
        errs.append("allocations: %d only in show_alloc_mem, %d only in the dump"
                    % (sum((all_show - all_dump).values()),
                       sum((all_dump - all_show).values())))
    if total != end["live_bytes"] or sum(all_show.values()) != end["live_blocks"]:
        errs.append("show_alloc_mem: Total %d for %d blocks; dump end: %d bytes, "
                    "%d blocks" % (total, sum(all_show.values()),
                                  end["live_bytes"], end["live_blocks"]))
    return errs


class Dom(HTMLParser):
    """Collects class="zone"/"large" groups and the id="summary" element."""
    def __init__(self):
        super().__init__()
        self.zones, self.larges, self.summary, self.tags = [], [], [], Counter()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags[tag] += 1
        classes = (a.get("class") or "").split()
        if tag == "g" and "zone" in classes:
            self.zones.append(a)
        if tag == "g" and "large" in classes:
            self.larges.append(a)
        if a.get("id") == "summary":
            self.summary.append(a)

    handle_startendtag = handle_starttag


def dom_checks(dom_path, dump_path, show_path):
    """The page as Chromium built it, against the dump and show_alloc_mem."""
    text = open(dom_path, encoding="utf-8", errors="replace").read()
    if dom_path.endswith(".svg"):
        import xml.etree.ElementTree as ET
        try:
            root = ET.fromstring(text.encode("utf-8"))
        except ET.ParseError as e:
            return ["not well-formed XML: %s" % e]
        if root.tag != "{http://www.w3.org/2000/svg}svg":
            return ["the root element is %s, not an SVG <svg>" % root.tag]
    dom = Dom()
    dom.feed(text)
    d = load_dump(dump_path)
    groups, _ = parse_show(show_path)
    end = d["end"][0]
    errs = []
    if dom.tags["svg"] != 1 or "parsererror" in text:
        errs.append("want one <svg> and no parsererror (svg: %d)" % dom.tags["svg"])
    if dom.tags["script"]:
        errs.append("the page has a <script>")
    # zones: one group per zone line; the groups with live chunks are
    # exactly show_alloc_mem's TINY/SMALL headers
    shown = [g for g in groups if g[0] != "LARGE"]
    live_groups = [z for z in dom.zones if z.get("data-live") not in (None, "0")]
    if len(dom.zones) != len(d["zones"]):
        errs.append('%d class="zone" groups for %d zone lines'
                    % (len(dom.zones), len(d["zones"])))
    if len(live_groups) != len(shown) or len(shown) > len(dom.zones):
        errs.append('%d zone groups with live chunks, show_alloc_mem has %d '
                    'zone headers' % (len(live_groups), len(shown)))
    got = [(z.get("data-addr"), z.get("data-kind"), z.get("data-arena"),
            z.get("data-class"), z.get("data-live")) for z in dom.zones]
    want = [(z["addr"], z["kind"], str(z["arena"]), str(z["class"]),
             str(z["states"].count("L"))) for z in d["zones"]]
    if sorted(got) != sorted(want):
        bad = sorted(set(got) ^ set(want))[:3]
        errs.append("zone groups' addr/kind/arena/class/live differ from the "
                    "dump, e.g. %s" % bad)
    if len(dom.larges) != len(d["large"]) or \
            len(dom.larges) != sum(1 for g in groups if g[0] == "LARGE"):
        errs.append('%d class="large" groups, %d large lines, %d LARGE headers'
                    % (len(dom.larges), len(d["large"]),
                       sum(1 for g in groups if g[0] == "LARGE")))
    elif sorted(l.get("data-addr") for l in dom.larges) != \
            sorted(l["addr"] for l in d["large"]):
        errs.append("LARGE groups' addresses differ from the dump")
    if len(dom.summary) != 1:
        errs.append('want one id="summary" element, found %d' % len(dom.summary))
    else:
        s = dom.summary[0]
        for attr, key in (("data-zones", "zones"), ("data-large", "large"),
                          ("data-live-blocks", "live_blocks"),
                          ("data-live-bytes", "live_bytes")):
            if s.get(attr) != str(end[key]):
                errs.append("summary %s=%s, end line %s=%d"
                            % (attr, s.get(attr), key, end[key]))
    return errs


def self_contained(page):
    """No script, no external resource: the page must work offline."""
    text = open(page, encoding="utf-8").read()
    errs = []
    for pat, what in ((r"<script", "a script"), (r"<link\b", "a <link>"),
                      (r"<(img|iframe|object|embed)\b", "an external element"),
                      (r"\b(src|href)\s*=", "a src/href attribute"),
                      (r"@import", "a CSS @import"),
                      (r"url\(\s*['\"]?(?!#)", "a url() that is not #local"),
                      (r"\bon[a-z]+\s*=", "an event handler attribute")):
        if re.search(pat, text, re.I):
            errs.append("the page has %s" % what)
    if "http://" in text.replace('xmlns="http://www.w3.org/2000/svg"', "") or \
            "https://" in text:
        errs.append("the page names a network address")
    return errs


def png_rows(path):
    data = open(path, "rb").read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, hdr = 8, [], None
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4])
        typ, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        if zlib.crc32(typ + body) != struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0]:
            raise ValueError("bad CRC in chunk %r" % typ)
        if typ == b"IHDR":
            hdr = struct.unpack(">IIBBBBB", body)
        elif typ == b"IDAT":
            idat.append(body)
        pos += 12 + n
    w, h, depth, ctype, _, _, interlace = hdr
    if depth != 8 or ctype not in (2, 6) or interlace:
        raise ValueError("unexpected PNG format %s" % (hdr,))
    bpp = 3 if ctype == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = w * bpp
    prev = bytearray(stride)
    i = 0
    for _ in range(h):
        f, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        if f == 1:
            for x in range(bpp, stride):
                line[x] = (line[x] + line[x - bpp]) & 255
        elif f == 2:
            line = bytearray((a + b) & 255 for a, b in zip(line, prev))
        elif f == 3:
            for x in range(stride):
                line[x] = (line[x] + ((line[x - bpp] if x >= bpp else 0) + prev[x]) // 2) & 255
        elif f == 4:
            for x in range(stride):
                a = line[x - bpp] if x >= bpp else 0
                b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        yield w, bpp, bytes(line)
        prev = line


def screenshot(png, *colors):
    """The rendered page shows the state colours: each COLOR=MIN must cover
    at least MIN pixels (exact RGB, interior of the drawn rectangles)."""
    want = {}
    for spec in colors:
        hexcol, minimum = spec.split("=")
        want[bytes.fromhex(hexcol.lstrip("#"))] = int(minimum)
    seen = Counter()
    try:
        for w, bpp, row in png_rows(png):
            for x in range(0, w * bpp, bpp):
                px = row[x:x + 3]
                if px in want:
                    seen[px] += 1
    except (ValueError, zlib.error, struct.error) as e:
        return ["%s: %s" % (png, e)]
    return ["#%s: %d pixels, want at least %d" % (c.hex(), seen[c], m)
            for c, m in want.items() if seen[c] < m]


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    errs = {"dump_format": dump_format, "dump_vs_show": dump_vs_show,
            "dom": dom_checks, "self_contained": self_contained,
            "screenshot": screenshot}[cmd](*args)
    for e in errs:
        print(e)
    sys.exit(1 if errs else 0)


main()
EOF

# check NAME DETAILS-FILE CHECK ARGS...: runs one check.py check.
check() {
	local name=$1 out=$2 rc=0
	shift 2
	bounded 120 "$PY" "$WORK/check.py" "$@" >"$out" 2>&1 || rc=$?
	if [ "$rc" -eq 0 ]; then
		pass "$name"
	else
		fail "$name" "$(head -n 1 "$out" | cut -c1-160)" "$out"
	fi
}

# ---------------------------------------------------------------------------
# 1. Build and run the demo: one frozen heap, dumped twice.
echo "heapmap: library $LIB"
DEMO=$WORK/heap_demo
DUMP=$WORK/dump.jsonl
SHOW=$WORK/show.txt
if ! bounded 120 cc -Wall -Wextra -Werror -std=gnu11 -O1 -g -pthread -Iinclude \
	tests/heapmap/heap_demo.c -L"$LIBDIR" -l:"$(basename "$LIB")" \
	-Wl,-rpath,"$LIBDIR" -o "$DEMO" >"$WORK/cc.log" 2>&1; then
	fail build "heap_demo.c does not compile or link" "$WORK/cc.log"
	finish
fi
pass build

rc=0
FT_MALLOC_ARENAS=4 bounded 60 "$DEMO" "$DUMP" "$SHOW" 42 \
	</dev/null >"$WORK/demo.out" 2>"$WORK/demo.err" || rc=$?
if [ "$rc" -ne 0 ]; then
	fail demo "heap_demo: $(describe_rc "$rc")" "$WORK/demo.err"
	finish
elif [ ! -s "$DUMP" ] || [ ! -s "$SHOW" ]; then
	fail demo "heap_demo wrote no dump or no show_alloc_mem output" "$WORK/demo.err"
	finish
elif grep -q '^ft_malloc:' "$WORK/demo.err"; then
	fail demo "the allocator reported an error" "$WORK/demo.err"
else
	pass demo
fi

# ---------------------------------------------------------------------------
# 2. The dump on its own, then against show_alloc_mem.
check dump_format "$WORK/format.log" dump_format "$DUMP"
check dump_vs_show "$WORK/vs.log" dump_vs_show "$DUMP" "$SHOW"

# ---------------------------------------------------------------------------
# 3. Rendering, and refusing bad input.
PAGE=$WORK/heap.html
PICT=$WORK/heap.svg
rc=0
bounded 60 scripts/heapmap "$DUMP" -o "$PAGE" >"$WORK/render.log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ] || [ ! -s "$PAGE" ]; then
	fail render_html "scripts/heapmap: $(describe_rc "$rc")" "$WORK/render.log"
else
	pass render_html
	check self_contained "$WORK/self.log" self_contained "$PAGE"
fi
rc=0
bounded 60 scripts/heapmap "$DUMP" -o "$PICT" >"$WORK/render_svg.log" 2>&1 || rc=$?
if [ "$rc" -ne 0 ] || [ ! -s "$PICT" ]; then
	fail render_svg "scripts/heapmap: $(describe_rc "$rc")" "$WORK/render_svg.log"
elif ! head -c 200 "$PICT" | grep -q '<svg xmlns="http://www.w3.org/2000/svg"'; then
	fail render_svg "the .svg output does not start as an SVG document"
else
	pass render_svg
fi

# reject NAME WHY STDERR-REGEX: the dump in $WORK/bad.jsonl must be refused
# with exit status 1, a message matching the regex, and no output file.
reject() {
	local name=$1 why=$2 want=$3 rc=0
	rm -f "$WORK/bad.html"
	bounded 60 scripts/heapmap "$WORK/bad.jsonl" -o "$WORK/bad.html" \
		>"$WORK/bad.log" 2>&1 || rc=$?
	if [ "$rc" -ne 1 ]; then
		fail "$name" "$why: status $rc, want 1" "$WORK/bad.log"
	elif ! grep -Eq "$want" "$WORK/bad.log"; then
		fail "$name" "$why: no message matching /$want/" "$WORK/bad.log"
	elif [ -e "$WORK/bad.html" ]; then
		fail "$name" "$why: an output file was written anyway"
	else
		pass "$name"
	fi
}
# line 3 becomes half a JSON object
awk 'NR == 3 { print substr($0, 1, 20); next } { print }' "$DUMP" >"$WORK/bad.jsonl"
reject reject_not_json "a dump with a line that is not JSON" 'heapmap: .*:3: not JSON'
head -n -1 "$DUMP" >"$WORK/bad.jsonl"
reject reject_no_end "a dump without its end line" 'no "end" line'
sed -E 's/("type":"end".*"live_blocks":)([0-9]+)/\1999999999/' "$DUMP" >"$WORK/bad.jsonl"
reject reject_bad_totals "an end line with wrong totals" 'live_blocks'

# ---------------------------------------------------------------------------
# 4. Headless Chromium: the page loads cleanly, its DOM matches the heap.
if ! command -v chromium >/dev/null 2>&1; then
	fail chromium "chromium not installed (bash scripts/deps.sh heapmap)"
	finish
fi
# chromium_run OUT-FILE EXTRA-FLAGS... URL: one headless load; console
# messages (the page has no script: any at all is a failure) go to stderr.
chromium_run() {
	local out=$1 rc=0
	shift
	local profile
	profile=$(mktemp -d "$WORK/profile.XXXXXX")
	bounded 90 chromium --headless --no-sandbox --disable-gpu --disable-quic \
		--no-first-run --disable-background-networking \
		--disable-component-update --disable-sync --hide-scrollbars \
		--user-data-dir="$profile" --enable-logging=stderr --v=0 \
		"$@" >"$out" 2>"$out.err" </dev/null || rc=$?
	return "$rc"
}

# console_clean LOG: no console message, no uncaught error, no load failure
console_clean() {
	! grep -Eq 'CONSOLE|Uncaught|net::ERR_|Failed to load' "$1"
}

# One load does both: the DOM on stdout, a screenshot of the first screen.
rc=0
if [ -s "$PAGE" ]; then
	chromium_run "$WORK/dom.html" --window-size=1300,900 \
		--screenshot="$WORK/shot.png" --dump-dom "file://$PAGE" || rc=$?
	if [ "$rc" -ne 0 ]; then
		fail chromium_load "chromium: $(describe_rc "$rc")" "$WORK/dom.html.err"
	elif ! console_clean "$WORK/dom.html.err"; then
		grep -E 'CONSOLE|Uncaught|net::ERR_|Failed to load' "$WORK/dom.html.err" >"$WORK/console.log"
		fail chromium_load "console messages while loading the page" "$WORK/console.log"
	elif ! grep -q '</svg>' "$WORK/dom.html"; then
		fail chromium_load "the DOM has no complete <svg>" "$WORK/dom.html.err"
	else
		pass chromium_load
	fi
	if [ "$rc" -eq 0 ]; then
		check dom_html "$WORK/dom_html.log" dom "$WORK/dom.html" "$DUMP" "$SHOW"
		# The picture really is drawn: live, cached and free colours
		# (scripts/heapmap COLORS) on the first screen. Live bytes fill
		# most of the overview strip and the LARGE rows; cached and free
		# chunks at least their legend swatch and per-arena bars.
		if [ -s "$WORK/shot.png" ]; then
			check screenshot "$WORK/shot_px.log" screenshot "$WORK/shot.png" \
				3867d6=5000 f7b731=200 eb5757=200
		else
			fail screenshot "chromium wrote no screenshot" "$WORK/dom.html.err"
		fi
	fi
fi
# The bare SVG: well-formed XML, and the same groups and summary.
[ -s "$PICT" ] && check dom_svg "$WORK/dom_svg.log" dom "$PICT" "$DUMP" "$SHOW"

finish
