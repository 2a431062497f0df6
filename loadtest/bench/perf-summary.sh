#!/usr/bin/env bash
# Summarizes a `perf record -g` profile of a proxy by where its CPU went, in shares of all
# samples: the kernel by the system call it was serving (from the call chain; "no system call"
# is interrupts, softirqs and preemption outside one), user space by the crate of the function
# the sample landed in (Rust programs; a C program's own code is one category). Each category is
# also split by thread (at most three columns).
#
# Usage: loadtest/bench/perf-summary.sh PERF_DATA [MIN_PERCENT]
#
# loadtest/bench.sh --profile DIR runs it for every profile it records (DIR/ROW.summary.txt).
set -euo pipefail

[[ $# -ge 1 && -r $1 ]] || { echo "usage: $0 PERF_DATA [MIN_PERCENT]" >&2; exit 2; }
min=${2:-0.5}

perf script -i "$1" -F comm,tid,ip,sym,dso 2>/dev/null | awk -v min="$min" '
    function crate(sym,   s, first, n, i, known) {
        s = sym
        sub(/^</, "", s)
        first = s
        sub(/::.*/, "", first)
        sub(/<.*/, "", first)
        if (first == "" || first !~ /^[a-z_][a-z0-9_]*$/) {
            # `<T as pingora_core::...>`, closures of generic impls: the first known crate named.
            n = split("lockstep pingora tokio httparse http bytes tracing metrics", known, " ")
            for (i = 1; i <= n; i++) if (index(s, known[i])) return name(known[i])
            return "Rust, other"
        }
        return name(first)
    }
    function name(c) {
        if (c ~ /^lockstep/) return "lockstep (its own crates)"
        if (c ~ /^pingora/) return "pingora"
        if (c ~ /^tokio/) return "tokio"
        if (c == "http" || c == "httparse" || c == "bytes") return "http, httparse, bytes"
        if (c == "core" || c == "alloc" || c == "std") return "Rust std (core, alloc, std)"
        if (c == "__rustc") return "malloc, free (libc and Rust shims)"
        if (c ~ /^tracing/ || c ~ /^metrics/) return "tracing, metrics"
        return "Rust, other: " c
    }
    function sym_of(f,   s) {
        s = f
        sub(/^[ \t]*[0-9a-f]+ /, "", s); sub(/ \([^()]*\)$/, "", s); sub(/\+0x[0-9a-f]+$/, "", s)
        sub(/\.(isra|constprop|part|cold)\..*$/, "", s)
        return s
    }
    function classify(   i, j, f, sys) {
        if (nf == 0) return
        total++
        if (frames[1] ~ /\(\[kernel\.kallsyms\]\)$/) {
            # The system call: the frame called by do_syscall_64 (its handler, as __x64_sys_NAME,
            # do_NAME, ksys_NAME...), or when that is the return path (preemption), the libc
            # wrapper the call came from.
            sys = ""
            for (i = 2; i <= nf; i++) {
                if (frames[i] !~ / do_syscall_64 /) continue
                sys = sym_of(frames[i - 1])
                if (sys ~ /exit_to_user_mode|syscall_exit/) {
                    sys = ""
                    for (j = i + 1; j <= nf; j++) if (frames[j] !~ /\(\[kernel\.kallsyms\]\)$/) { sys = sym_of(frames[j]); break }
                    sub(/^(__GI_+|__libc_|__)/, "", sys); sub(/@.*/, "", sys)
                    if (sys == "" || sys ~ /unknown/) sys = "(unknown)"
                    sys = sys ", returning"
                } else {
                    sub(/^(__x64_sys_|__do_sys_|__se_sys_|ksys_|do_sys_|__sys_|do_)/, "", sys)
                }
                break
            }
            cat = (sys == "" ? "kernel, no system call (interrupts, softirqs, preemption)" : "kernel, system call " sys)
            for (i = 1; i <= nf; i++) if (frames[i] ~ / (__schedule|schedule) /) { sched[thread]++; scheds++; break }
        } else {
            f = frames[1]
            sub(/^[ \t]*[0-9a-f]+ /, "", f)
            dso = f; sub(/^.* \(/, "", dso); sub(/\)$/, "", dso)
            sym = f; sub(/ \([^()]*\)$/, "", sym); sub(/\+0x[0-9a-f]+$/, "", sym)
            if (dso ~ /libc\.so/) {
                if (sym ~ /^(_int_malloc|_int_free|malloc|cfree|free|realloc|_int_realloc|calloc|unlink_chunk|malloc_consolidate|tcache|__libc_malloc|__libc_free|__libc_calloc|__libc_realloc)/) cat = "malloc, free (libc and Rust shims)"
                else if (sym ~ /^__mem(move|cpy|set|cmp)|^mem(move|cpy|set|cmp)/) cat = "memcpy, memmove, memset (libc)"
                else cat = "libc, other (system call wrappers)"
            } else if (dso == "[vdso]") {
                cat = "libc, other (system call wrappers)"
            } else if (sym ~ /^\[unknown\]$/ || sym == "" || dso == "[unknown]") {
                cat = "unknown (no symbol)"
            } else if (dso ~ /\.so/) {
                base = dso; sub(/.*\//, "", base); sub(/\.so.*/, "", base)
                cat = "other libraries: " base
            } else if (sym ~ /::/ || sym ~ /^</) {
                cat = crate(sym)
            } else {
                # A C program (nginx, HAProxy): its own code, whatever the function.
                base = dso; sub(/.*\//, "", base)
                cat = base " (its own code)"
            }
        }
        n[cat]++
        t[cat, thread]++
        threads[thread]++
    }
    /^[^ \t]/ {
        classify()
        nf = 0
        thread = $0
        sub(/[ \t]+[0-9]+[ \t]*$/, "", thread)
        next
    }
    /^[ \t]+[0-9a-f]+ / { frames[++nf] = $0; next }
    END {
        classify()
        if (!total) { print "no samples"; exit 1 }
        nt = 0
        for (th in threads) tn[++nt] = th
        for (i = 1; i <= nt; i++) for (j = i; j > 1 && threads[tn[j - 1]] < threads[tn[j]]; j--) { x = tn[j]; tn[j] = tn[j - 1]; tn[j - 1] = x }
        printf "%d samples; threads:", total
        for (i = 1; i <= nt; i++) printf " %s %.1f%%%s", tn[i], 100 * threads[tn[i]] / total, (i < nt ? "," : "\n")
        printf "samples whose kernel call chain passes through the scheduler (a context switch): %.1f%%\n\n", 100 * scheds / total
        printf "| where | share |"
        for (i = 1; i <= nt && i <= 3; i++) printf " %s |", tn[i]
        printf "\n| --- | ---: |"
        for (i = 1; i <= nt && i <= 3; i++) printf " ---: |"
        printf "\n"
        m = 0
        for (c in n) cs[++m] = c
        for (i = 1; i <= m; i++) for (j = i; j > 1 && n[cs[j - 1]] < n[cs[j]]; j--) { x = cs[j]; cs[j] = cs[j - 1]; cs[j - 1] = x }
        rest = 0
        for (i = 1; i <= m; i++) {
            c = cs[i]
            if (100 * n[c] / total < min) { rest += n[c]; continue }
            printf "| %s | %.1f%% |", c, 100 * n[c] / total
            for (k = 1; k <= nt && k <= 3; k++) printf " %.1f%% |", 100 * t[c, tn[k]] / total
            printf "\n"
        }
        if (rest) printf "| (each below %s%%) | %.1f%% |\n", min, 100 * rest / total
    }'
