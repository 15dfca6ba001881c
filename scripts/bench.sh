#!/usr/bin/env bash
# scripts/bench.sh - compare ft_malloc with glibc, jemalloc, tcmalloc and
# mimalloc on the workload programs in bench/ (see bench/README.md).
#
#   bash scripts/bench.sh                 # full run (about 5 minutes, 2 cores)
#   BENCH_QUICK=1 bash scripts/bench.sh   # quick run (under 2 minutes)
#
# Environment:
#   BENCH_QUICK=1        smaller iteration counts and 3 measured runs
#   BENCH_RUNS=N         measured runs per command (default 9, quick 3)
#   BENCH_SEED=S         seed given to every workload (default 42)
#   BENCH_ALLOCATORS=... space-separated subset of
#                        "glibc jemalloc tcmalloc mimalloc ft_malloc"
#   BENCH_WORKLOADS=...  space-separated subset of the workload names
#   BENCH_THREADS="1 2 4 8 16"
#                        thread counts of the multithreaded workloads, in place
#                        of 1, N and 4N (the single-thread ones keep 1)
#   BENCH_NAME=NAME      results file name (default latest): scaling runs
#                        keep their own table beside the main one
#   BENCH_SCALING=1      the thread-scaling run (`make bench-scaling`, for a
#                        16-core machine): the multithreaded workloads at 1,
#                        2, 4, 8 and 16 threads into bench/results/scaling.*,
#                        the peers from bench/peers when bench-pack.sh
#                        filled it; the variables above still override
#   BENCH_LIBDIR=DIR     a machine without network: take the peers' libraries
#                        from DIR, and hyperfine and GNU time from DIR/bin,
#                        install nothing (scripts/bench-pack.sh fills DIR)
#   BENCH_PROGRAM='CMD'  measure a command line of your own instead of the
#                        workloads, run by sh and preloaded like them (for
#                        instance BENCH_PROGRAM='jq length big.json', in the
#                        directory bench.sh was called from): every
#                        allocator must exit 0 and print exactly what the
#                        first one printed; results as bench/results/program.*
#                        unless BENCH_NAME says otherwise
#   BENCH_PROGRAM_NAME=N its name in the tables (default program)
#   CC                   compiler for the workloads (default cc); on a
#                        machine without it, the workloads in bench/build
#                        and the libft_malloc.so already built are used
#
# For each workload and thread count (1, the number of cores, 4x that):
#   1. a check run of every allocator, which doubles as the warm-up: its
#      output must be `checksum=...` identical to the first allocator's
#      (glibc), and it must exit 0 within the time limit; an allocator that
#      fails is reported with its command line and left out of that case;
#   2. RUNS rounds, each one hyperfine invocation (`--runs 1`) running every
#      allocator once, the order rotated by one allocator each round, so that
#      slow drifts of a noisy machine hit every allocator alike.
# Every command runs as `/usr/bin/time -f '%e %U %S %M' timeout LIMIT env
# LD_PRELOAD=LIB PROGRAM THREADS ITERS SEED`: hyperfine gives the wall time,
# /usr/bin/time the user and system CPU seconds and the peak RSS.  LIMIT is
# 50 times glibc's check run (at least 30 s): a run that exceeds it counts as
# a timeout (the limit only stops hung or pathological runs).  Medians,
# ratios and geometric means are computed at the end (python3, below).
#
# Output: bench/results/NAME.json (every raw number), NAME.md (tables),
# NAME.svg (chart), NAME being BENCH_NAME (latest).  Scratch files go to
# bench/build/ (not versioned).
set -euo pipefail

CALLER_DIR=$PWD
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

if [ "${BENCH_SCALING:-0}" = 1 ]; then
	: "${BENCH_NAME:=scaling}" "${BENCH_THREADS:=1 2 4 8 16}"
	: "${BENCH_WORKLOADS:=mixed threads prodcons larson thread_churn}"
	if [ -f bench/peers/VERSIONS ]; then : "${BENCH_LIBDIR:=bench/peers}"; fi
fi

QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then RUNS=${BENCH_RUNS:-3}; else RUNS=${BENCH_RUNS:-9}; fi
SEED=${BENCH_SEED:-42}
read -r -a ALLOCATORS <<<"${BENCH_ALLOCATORS:-glibc jemalloc tcmalloc mimalloc ft_malloc}"
CC=${CC:-cc}
PROGRAM=${BENCH_PROGRAM:-}
if [ -n "$PROGRAM" ]; then NAME=${BENCH_NAME:-program}; else NAME=${BENCH_NAME:-latest}; fi
LIBDIR=${BENCH_LIBDIR:-}
TIME=/usr/bin/time
BUILD=bench/build
RAW=$BUILD/raw
OUT=bench/results
NPROC=$(nproc)
CHECK_LIMIT=300		# seconds allowed to the reference allocator's check run
LIMIT_FACTOR=50		# others get LIMIT_FACTOR times the reference's time...
MIN_LIMIT=30		# ...but at least MIN_LIMIT seconds

# Workloads: name, thread counts, ITERS for a full run, ITERS for a quick run.
# bench/w_NAME.c is built; bench/p_NAME.* is a script run by a real
# interpreter (Perl, CPython), preloaded like the C programs, or one that
# drives a real server (redis-server, preloaded alone: see p_redis.sh).
# Thread counts: 1 = one thread, N = cores, 4N = four threads per core.
# Iteration counts give roughly 0.5-1.5 s per run under glibc on a 2-core
# machine (quick: about 8 times less).
WORKLOADS=(
	"churn        1       40000000 4000000"
	"mixed        1,N,4N  500000   50000"
	"threads      1,N,4N  15000000 2000000"
	"prodcons     N,4N    1000000  125000"
	"larson       1,N,4N  8000000  750000"
	"realloc      1       800000   100000"
	"thread_churn 1,N,4N  2000     250"
	"perl         1       30000    5000"
	"python       1       1200     200"
	"redis        1       400000   50000"
)

# A program of the user's: one case, no thread count or iterations ("-").
if [ -n "$PROGRAM" ]; then
	WORKLOADS=("${BENCH_PROGRAM_NAME:-program} 1 - -")
fi

log() { printf '%s\n' "$*" >&2; }
die() { log "bench.sh: $*"; exit 1; }

# ---- dependencies -----------------------------------------------------------
if [ -n "$LIBDIR" ]; then
	LIBDIR=$(cd "$LIBDIR" && pwd) || die "BENCH_LIBDIR: no such directory"
	PATH=$LIBDIR/bin:$PATH
	[ -x "$LIBDIR/bin/time" ] && TIME=$LIBDIR/bin/time
elif [ -f scripts/deps.sh ]; then
	bash scripts/deps.sh bench
fi
for tool in hyperfine python3 timeout; do
	command -v "$tool" >/dev/null || die "$tool is missing (bash scripts/deps.sh bench)"
done
[ -x "$TIME" ] || die "$TIME is missing (Debian package: time)"

# Path of a shared library: from BENCH_LIBDIR when set, else from its Debian
# package's file list, else a glob over the usual library directories (any
# architecture).
find_lib() {
	local soname=$1 pkg f
	shift
	if [ -n "$LIBDIR" ]; then
		[ -e "$LIBDIR/$soname" ] && echo "$LIBDIR/$soname"
		return
	fi
	for pkg in "$@"; do
		f=$(dpkg -L "$pkg" 2>/dev/null | grep -m1 "/$soname\$" || true)
		if [ -n "$f" ] && [ -e "$f" ]; then
			echo "$f"
			return 0
		fi
	done
	for f in /usr/lib/*/"$soname" /usr/lib64/"$soname" /usr/lib/"$soname" \
		/usr/local/lib/"$soname"; do
		if [ -e "$f" ]; then
			echo "$f"
			return 0
		fi
	done
	return 1
}

declare -A LIB
for a in "${ALLOCATORS[@]}"; do
	case $a in
	glibc) LIB[$a]= ;;
	jemalloc) LIB[$a]=$(find_lib libjemalloc.so.2 libjemalloc2) ||
		die "libjemalloc.so.2 not found" ;;
	tcmalloc) LIB[$a]=$(find_lib libtcmalloc_minimal.so.4 \
		libtcmalloc-minimal4 libtcmalloc-minimal4t64) ||
		die "libtcmalloc_minimal.so.4 not found" ;;
	mimalloc) LIB[$a]=$(find_lib libmimalloc.so.2 libmimalloc2.0 libmimalloc2) ||
		die "libmimalloc.so.2 not found" ;;
	ft_malloc)
		# a lent machine may have no compiler: the library built here
		# and carried over is used as it is
		if command -v make >/dev/null && command -v "$CC" >/dev/null; then
			make >&2 || die "make failed"
		fi
		[ -e libft_malloc.so ] || die "no libft_malloc.so, and no make and $CC to build it"
		LIB[$a]=$ROOT/libft_malloc.so ;;
	*) die "unknown allocator '$a'" ;;
	esac
done

# ---- workload programs --------------------------------------------------------
mkdir -p "$BUILD" "$OUT"
rm -rf "$RAW"
mkdir -p "$RAW"
if [ -n "$PROGRAM" ]; then
	# Run where bench.sh was called from, so that relative paths work.
	printf "cd '%s' || exit 1\n%s\n" "${CALLER_DIR//\'/\'\\\'\'}" "$PROGRAM" >"$RAW/program.sh"
else
	for src in bench/w_*.c; do
		name=$(basename "$src" .c)
		if command -v "$CC" >/dev/null; then
			"$CC" -O2 -pthread -o "$BUILD/$name" "$src" ||
				die "cannot build $src"
		else
			[ -x "$BUILD/$name" ] || die "no $CC to build $src, and no $BUILD/$name"
		fi
	done
fi

# ---- measurements -------------------------------------------------------------
# The command line of one run, in the array CMD: $1 allocator, $2 time limit
# (the program and its arguments come from the loop below).
set_cmd() {
	CMD=(timeout -k 5 "$2" env "LD_PRELOAD=${LIB[$1]}")
	if [ -n "$PROGRAM" ]; then
		CMD+=(sh "$ROOT/$RAW/program.sh")
	else
		CMD+=("$prog" "$t" "$iters" "$SEED")
	fi
}

TIMEFMT='%e %U %S %M'
MANIFEST=$RAW/manifest.tsv
: >"$MANIFEST"
START=$(date +%s)
ncase=0

for spec in "${WORKLOADS[@]}"; do
	read -r wl tlist full quick <<<"$spec"
	if [ -n "${BENCH_WORKLOADS:-}" ] && [[ " $BENCH_WORKLOADS " != *" $wl "* ]]; then
		continue
	fi
	if [ "$QUICK" = 1 ]; then iters=$quick; else iters=$full; fi
	prog=$ROOT/$BUILD/w_$wl
	for script in "$ROOT"/bench/p_"$wl".*; do
		[ -x "$script" ] && prog=$script
	done
	[ -n "$PROGRAM" ] && prog="sh $ROOT/$RAW/program.sh"
	threads_seen=" "
	if [ -n "${BENCH_THREADS:-}" ] && [ "$tlist" != 1 ]; then
		tlist=$BENCH_THREADS
	fi
	for t in ${tlist//,/ }; do
		case $t in
		N) t=$NPROC ;;
		4N) t=$((4 * NPROC)) ;;
		esac
		[[ "$threads_seen" == *" $t "* ]] && continue
		threads_seen+="$t "
		case_id="$wl-t$t"
		args="$t $iters $SEED"
		[ -n "$PROGRAM" ] && args=

		# 1. Check run (and warm-up), reference allocator first.
		limit=$CHECK_LIMIT
		ref=
		ok=()
		for a in "${ALLOCATORS[@]}"; do
			set_cmd "$a" "$limit"
			rc=0
			"$TIME" -f "$TIMEFMT" -o "$RAW/$case_id.$a.check" \
				"${CMD[@]}" >"$RAW/$case_id.$a.out" 2>"$RAW/$case_id.$a.err" || rc=$?
			if [ -n "$PROGRAM" ]; then
				out="output $(cksum <"$RAW/$case_id.$a.out" | tr ' ' :)"
			else
				out=$(cat "$RAW/$case_id.$a.out")
			fi
			status=ok
			detail=
			if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
				status=timeout
				detail="over ${limit}s"
			elif [ "$rc" -gt 128 ]; then
				status=crash
				detail="signal $((rc - 128))"
			elif [ "$rc" -ne 0 ]; then
				status=error
				detail="exit status $rc"
			elif [ -z "$PROGRAM" ] && [[ "$out" != checksum=* ]]; then
				status=error
				detail="no checksum printed"
			elif [ -z "$ref" ]; then
				ref=$out
				# Time limit of every other run of this case.
				wall=$(tail -n 1 "$RAW/$case_id.$a.check" | cut -d' ' -f1)
				limit=$(awk -v w="$wall" -v f="$LIMIT_FACTOR" -v m="$MIN_LIMIT" \
					'BEGIN { l = int(f * w + 1); print (l > m ? l : m) }')
			elif [ "$out" != "$ref" ] && [ -n "$PROGRAM" ]; then
				status=output
				detail="printed other than ${ALLOCATORS[0]} (see $ROOT/$RAW/$case_id.*.out)"
			elif [ "$out" != "$ref" ]; then
				status=checksum
				detail="got ${out#checksum=}, expected ${ref#checksum=}"
			fi
			if [ "$status" != ok ]; then
				log "!! $a failed on $case_id ($status: $detail): LD_PRELOAD=${LIB[$a]} $prog $args"
				sed 's/^/   | /' "$RAW/$case_id.$a.err" | tail -n 5 >&2
			else
				ok+=("$a")
			fi
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$case_id" "$wl" "$t" \
				"$iters" "$a" "$status" "$detail" "${out#checksum=}" \
				"LD_PRELOAD=${LIB[$a]} $prog $args" >>"$MANIFEST"
		done

		# 2. Measured rounds, allocator order rotated every round.
		n=${#ok[@]}
		for ((r = 0; r < RUNS && n > 0; r++)); do
			hf=(hyperfine -N -i --runs 1 --style none
				--export-json "$RAW/$case_id.r$r.json")
			for ((k = 0; k < n; k++)); do
				a=${ok[$(((k + r + ncase) % n))]}
				set_cmd "$a" "$limit"
				hf+=(-n "$a" "$TIME -f '$TIMEFMT' -a -o $RAW/$case_id.$a.time ${CMD[*]}")
			done
			"${hf[@]}" >/dev/null 2>"$RAW/$case_id.r$r.log" ||
				die "hyperfine failed on $case_id (see $RAW/$case_id.r$r.log)"
		done
		ncase=$((ncase + 1))
		log "== $case_id done ($(($(date +%s) - START)) s elapsed)"
	done
done

# ---- results ------------------------------------------------------------------
# The metadata pipelines below stop reading early (head, grep -m1): the
# writer's SIGPIPE is expected, not an error.
set +o pipefail
cpu=$(grep -m1 -E '^(model name|Model name|Hardware|cpu model)' /proc/cpuinfo |
	cut -d: -f2- | sed 's/^ *//' || true)
[ -n "$cpu" ] || cpu=$(lscpu 2>/dev/null | sed -n 's/^Model name: *//p' | head -n 1)
versions=
for a in "${ALLOCATORS[@]}"; do
	case $a in
	glibc) v=$(ldd --version 2>/dev/null | head -n 1 | awk '{print $NF}') ;;
	ft_malloc) v=$(git describe --always --dirty 2>/dev/null || echo "working tree") ;;
	*) if [ -n "$LIBDIR" ]; then
		v=$(sed -n "s/^$a //p" "$LIBDIR/VERSIONS" 2>/dev/null)
	else
		v=$(dpkg-query -W -f '${Version}' "$(dpkg -S "${LIB[$a]}" 2>/dev/null |
			head -n 1 | cut -d: -f1)" 2>/dev/null)
	fi
	v=${v:-?} ;;
	esac
	versions+="$a $v;"
done

BENCH_META_DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
BENCH_META_HOST=$(hostname 2>/dev/null || echo unknown)
BENCH_META_CPU=${cpu:-unknown}
BENCH_META_NPROC=$NPROC
BENCH_META_RUNS=$RUNS
BENCH_META_QUICK=$QUICK
BENCH_META_SEED=$SEED
BENCH_META_KERNEL=$(uname -srm)
BENCH_META_VERSIONS=$versions
BENCH_META_ALLOCATORS="${ALLOCATORS[*]}"
BENCH_META_ELAPSED=$(($(date +%s) - START))
export BENCH_META_DATE BENCH_META_HOST BENCH_META_CPU BENCH_META_NPROC \
	BENCH_META_RUNS BENCH_META_QUICK BENCH_META_SEED BENCH_META_KERNEL \
	BENCH_META_VERSIONS BENCH_META_ALLOCATORS BENCH_META_ELAPSED

python3 - "$RAW" "$OUT" "$NAME" <<'PY'
import json, math, os, re, shutil, subprocess, sys

raw, out, name = sys.argv[1], sys.argv[2], sys.argv[3]
env = os.environ
allocs = env["BENCH_META_ALLOCATORS"].split()
ours = "ft_malloc"
peers = [a for a in allocs if a != ours]


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if n == 0:
        return None
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


def time_lines(path):
    """Lines 'wall user sys maxrss' written by /usr/bin/time, in run order."""
    rows = []
    if os.path.exists(path):
        for line in open(path):
            f = line.split()
            if len(f) == 4 and all(re.fullmatch(r"[0-9.]+", x) for x in f):
                rows.append([float(x) for x in f])
    return rows


# Cases in the order they ran, with per-allocator check results.
cases = []
byid = {}
for line in open(os.path.join(raw, "manifest.tsv")):
    cid, wl, t, iters, a, status, detail, checksum, cmd = line.rstrip("\n").split("\t")
    if cid not in byid:
        byid[cid] = {"case": cid, "workload": wl, "threads": int(t),
                     "iters": int(iters) if iters.isdigit() else iters, "allocators": {}}
        cases.append(byid[cid])
    byid[cid]["allocators"][a] = {"status": status, "detail": detail,
                                  "checksum": checksum, "command": cmd,
                                  "wall_s": [], "cpu_s": [], "user_s": [],
                                  "sys_s": [], "maxrss_kib": [], "exit_codes": []}

for c in cases:
    cid = c["case"]
    r = 0
    while os.path.exists(os.path.join(raw, f"{cid}.r{r}.json")):
        for res in json.load(open(os.path.join(raw, f"{cid}.r{r}.json")))["results"]:
            d = c["allocators"][res["command"]]
            d["wall_s"] += res["times"]
            d["exit_codes"] += res.get("exit_codes", [0] * len(res["times"]))
        r += 1
    for a, d in c["allocators"].items():
        for wall, user, sys_, rss in time_lines(os.path.join(raw, f"{cid}.{a}.time")):
            d["user_s"].append(user)
            d["sys_s"].append(sys_)
            d["cpu_s"].append(round(user + sys_, 2))
            d["maxrss_kib"].append(int(rss))
        bad = [x for x in d["exit_codes"] if x != 0]
        if d["status"] == "ok" and bad:
            x = bad[0]
            d["status"] = ("timeout" if x in (124, 137) else
                           "crash" if x > 128 else "error")
            d["detail"] = (f"signal {x - 128}" if d["status"] == "crash"
                           else f"exit status {x}") + f" in {len(bad)} measured run(s)"
        ok = d["status"] == "ok" and d["wall_s"]
        d["median_wall_s"] = median(d["wall_s"]) if ok else None
        d["median_cpu_s"] = median(d["cpu_s"]) if ok else None
        d["median_maxrss_kib"] = median(d["maxrss_kib"]) if ok else None

metrics = [("wall", "median_wall_s"), ("rss", "median_maxrss_kib"),
           ("cpu", "median_cpu_s")]
# Each metric's per-run values, in round order.
runs_of = {"wall": "wall_s", "rss": "maxrss_kib", "cpu": "cpu_s"}
geo = {}
for c in cases:
    c["ratios"] = {}
    us = c["allocators"].get(ours)
    for m, key in metrics:
        c["ratios"][m] = {}
        for p in peers:
            pv = c["allocators"].get(p)
            # The ratio within each round, then the median over rounds: the
            # two runs of a round are seconds apart, and this machine changes
            # speed (by up to 1.7x) on about that scale, so a ratio of the
            # two medians, taken from runs minutes apart, moves with it.
            r = None
            if us and pv and us[key] and pv[key]:
                xs, ys = us[runs_of[m]], pv[runs_of[m]]
                pairs = [x / y for x, y in zip(xs, ys) if y] if len(xs) == len(ys) else []
                r = median(pairs) if pairs else us[key] / pv[key]
            c["ratios"][m][p] = r
for m, _ in metrics:
    geo[m] = {}
    for p in peers:
        rs = [c["ratios"][m][p] for c in cases if c["ratios"][m][p]]
        geo[m][p] = {"geomean": math.exp(sum(map(math.log, rs)) / len(rs)) if rs else None,
                     "cases": len(rs)}

meta = {k[len("BENCH_META_"):].lower(): v for k, v in env.items()
        if k.startswith("BENCH_META_")}
meta["versions"] = dict(x.split(" ", 1) for x in meta["versions"].split(";") if x)
meta["allocators"] = allocs
json.dump({"meta": meta, "cases": cases, "geomean": geo},
          open(os.path.join(out, name + ".json"), "w"), indent=1)

# ---- Markdown ----
def cell(d, key, scale, fmt):
    if d is None:
        return "-"
    if d["status"] != "ok":
        return f"**{d['status']}**"
    return fmt.format(d[key] * scale)


def ratio(r):
    return "-" if r is None else f"{r:.2f}"


md = []
md.append("# ft_malloc benchmark results\n")
md.append(f"- date: {meta['date']}; host: {meta['host']}; kernel: {meta['kernel']}")
md.append(f"- CPU: {meta['cpu']}; cores (nproc): {meta['nproc']}")
md.append(f"- runs: {meta['runs']} measured per command, after 1 check/warm-up run"
          f"{' (BENCH_QUICK=1: reduced iteration counts)' if meta['quick'] == '1' else ''}"
          f"; seed {meta['seed']}; total {meta['elapsed']} s")
md.append("- versions: " + ", ".join(f"{a} {v}" for a, v in meta["versions"].items()))
md.append("- each cell is the median over the runs; `ft/X` is the median over the "
          "rounds of ft_malloc's run divided by X's run of the same round (below 1: "
          "ft_malloc is faster or smaller); the last row is the geometric mean of "
          "the ratios over the cases where both ran.\n")
tables = [("Wall time (ms)", "wall", "median_wall_s", 1000, "{:.0f}"),
          ("Peak RSS (MiB)", "rss", "median_maxrss_kib", 1 / 1024, "{:.1f}"),
          ("CPU time, user + system (s)", "cpu", "median_cpu_s", 1, "{:.2f}")]
for title, m, key, scale, fmt in tables:
    md.append(f"## {title}\n")
    head = ["workload", "threads", "iters"] + allocs
    if ours in allocs:
        head += [f"{ours.split('_')[0]}/{p}" for p in peers]
    md.append("| " + " | ".join(head) + " |")
    md.append("|" + "---|" * 3 + "---:|" * (len(head) - 3))
    for c in cases:
        row = [c["workload"], str(c["threads"]), str(c["iters"])]
        row += [cell(c["allocators"].get(a), key, scale, fmt) for a in allocs]
        if ours in allocs:
            row += [ratio(c["ratios"][m][p]) for p in peers]
        md.append("| " + " | ".join(row) + " |")
    if ours in allocs:
        row = ["**geometric mean**", "", ""] + [""] * len(allocs)
        for p in peers:
            g = geo[m][p]
            row.append(ratio(g["geomean"]) + ("" if g["cases"] == len(cases)
                       else f" ({g['cases']}/{len(cases)} cases)"))
        md.append("| " + " | ".join(row) + " |")
    md.append("")
# Speed-up of each allocator over its own time at the workload's fewest
# threads: ITERS is the same total work at every thread count, so on C cores
# the ideal is min(T, C) / min(T0, C).
workloads = {}
for c in cases:
    workloads.setdefault(c["workload"], []).append(c)
scaled = {w: sorted(cs, key=lambda c: c["threads"]) for w, cs in workloads.items()
          if len(cs) > 1}
if scaled:
    md.append("## Scaling: wall time at the fewest threads / wall time\n")
    md.append("| workload | threads | " + " | ".join(allocs) + " |")
    md.append("|---|---|" + "---:|" * len(allocs))
    for w, cs in scaled.items():
        for c in cs:
            row = [w, str(c["threads"])]
            for a in allocs:
                d0, d = cs[0]["allocators"].get(a), c["allocators"].get(a)
                ok = d0 and d and d0["median_wall_s"] and d["median_wall_s"]
                row.append(f"{d0['median_wall_s'] / d['median_wall_s']:.2f}" if ok else "-")
            md.append("| " + " | ".join(row) + " |")
    md.append("")
fails = [(c["case"], a, d) for c in cases for a, d in c["allocators"].items()
         if d["status"] != "ok"]
if fails:
    md.append("## Failures\n")
    for cid, a, d in fails:
        md.append(f"- {a} on {cid}: {d['status']} ({d['detail']}): `{d['command']}`")
    md.append("")
md.append(f"![wall time and peak RSS relative to glibc]({name}.svg)\n")
open(os.path.join(out, name + ".md"), "w").write("\n".join(md))

# ---- chart (gnuplot): time and RSS normalized to glibc, log scale ----
gp = shutil.which("gnuplot")
base = "glibc" if "glibc" in allocs else allocs[0]
if gp:
    dat = os.path.join(raw, "chart.dat")
    yrange = []
    with open(dat, "w") as f:
        for m, key in metrics[:2]:
            seen = [1.0]
            for c in cases:
                b = c["allocators"].get(base)
                vals = []
                for a in allocs:
                    d = c["allocators"].get(a)
                    if b and b[key] and d and d[key]:
                        vals.append(f"{d[key] / b[key]:.4f}")
                        seen.append(d[key] / b[key])
                    else:
                        vals.append("?")
                f.write(f"{c['workload']}/{c['threads']} " + " ".join(vals) + "\n")
            f.write("\n\n")
            # Powers of 2 around the data, with room below the lowest bar.
            yrange.append((2.0 ** (math.floor(math.log2(min(seen))) - 1),
                           2.0 ** math.ceil(math.log2(max(seen) * 1.05))))
    width = max(900, 70 * len(cases) + 200)
    colors = {"glibc": "#7f7f7f", "jemalloc": "#1f77b4", "tcmalloc": "#2ca02c",
              "mimalloc": "#9467bd", "ft_malloc": "#d62728"}
    plots = []
    for i, a in enumerate(allocs):
        plots.append(f"'{dat}' index IDX using {i + 2}:xtic(1) title '{a}' "
                     f"lc rgb '{colors[a]}'")
    plot = ", ".join(plots)
    script = f"""
set terminal svg size {width},760 dynamic noenhanced font 'sans,11' background '#ffffff'
set output '{os.path.join(out, name + '.svg')}'
set datafile missing '?'
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 noborder
set boxwidth 0.9
set xrange [-0.6:{len(cases) - 0.4}]
set logscale y 2
set grid ytics
set key outside right top
set xtics rotate by -35 font ',10'
set arrow from graph 0, first 1 to graph 1, first 1 nohead dt 2 lc rgb '#000000'
set multiplot layout 2,1 title "{meta['date']}, {meta['cpu']}, {meta['nproc']} cores, median of {meta['runs']} runs (workload/threads)"
set ylabel 'wall time / {base} (log scale)'
set yrange [{yrange[0][0]}:{yrange[0][1]}]
plot {plot.replace('IDX', '0')}
set ylabel 'peak RSS / {base} (log scale)'
set yrange [{yrange[1][0]}:{yrange[1][1]}]
plot {plot.replace('IDX', '1')}
unset multiplot
"""
    open(os.path.join(raw, "chart.gp"), "w").write(script)
    if subprocess.call([gp, os.path.join(raw, "chart.gp")]) != 0:
        print("bench.sh: gnuplot failed, no chart", file=sys.stderr)
else:
    print("bench.sh: gnuplot not found, no chart", file=sys.stderr)

print("\n".join(md))
PY
log "results: $OUT/$NAME.md, $OUT/$NAME.json, $OUT/$NAME.svg"
