#!/usr/bin/env python3
"""The report of cluster/bench/data-parallel.sh: per replica count R, bytes per replica per step, the reduce
time against the model 2·(R−1)/R·|g|/bandwidth, and the share of the reduce hidden behind compute.

Arguments: R=DIR for each run (DIR/coord/run/metrics.jsonl, DIR/coord/run/checkpoints, DIR/counters).
Reads the reduce's own per-worker fields from metrics.jsonl when the workers log them; otherwise the
hosts' interface counters (bytes) and wait_ms (time). Every number printed is measured here; the
models are printed beside them, never instead of them.
"""
import argparse, bisect, json, os, re, statistics, sys

import h5py


def gradient_bytes(run):
    """4 bytes per parameter of the run's latest checkpoint (fp32 gradients, as the reduce sends them)."""
    ckpts = os.path.join(run, "checkpoints")
    with open(os.path.join(ckpts, "latest")) as f:
        name = f.read().strip()
    with h5py.File(os.path.join(ckpts, name), "r") as h:
        return 4 * sum(d.size for d in h["params"].values())


def field(entry, pattern, exclude=None, exact=None):
    """Key `exact` of a stages[] entry when it has it, else the first key matching pattern (and not exclude), or None."""
    if exact in entry:
        return exact
    for k in sorted(entry):
        if re.search(pattern, k) and not (exclude and re.search(exclude, k)):
            return k
    return None


def counters(path):
    """{port: ([times], [rx], [tx])} from the sampler's "TIME PORT RX TX" lines."""
    out = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) != 4:
                continue
            t, port, rx, tx = float(p[0]), p[1], int(p[2]), int(p[3])
            s = out.setdefault(port, ([], [], []))
            s[0].append(t); s[1].append(rx); s[2].append(tx)
    return out


def at(series, t):
    """A counter at time t, interpolated between the samples around it."""
    times, values = series
    i = bisect.bisect_left(times, t)
    if i <= 0:
        return values[0]
    if i >= len(times):
        return values[-1]
    t0, t1 = times[i - 1], times[i]
    return values[i - 1] + (values[i] - values[i - 1]) * (t - t0) / max(t1 - t0, 1e-9)


def report(r, d, bandwidth_bytes, warmup):
    run = os.path.join(d, "coord", "run")
    lines = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if l.strip()]
    window = [m for m in lines if m["step"] > warmup]
    if len(window) < 2:
        sys.exit(f"data-parallel: R = {r}: only {len(window)} steps after the warm-up of {warmup}")
    start = next(m for m in lines if m["step"] == warmup)["time"] if warmup > 0 else window[0]["time"] - window[0]["step_ms"] / 1000
    end, n = window[-1]["time"], len(window)
    g = gradient_bytes(run)
    entry = window[0]["stages"][0]
    sent_k = field(entry, r"reduce.*(sent|tx)")
    recv_k = field(entry, r"reduce.*(recv|received|rx)")
    time_k = field(entry, r"reduce.*(_ms|time)", exclude=r"wait|exposed|blocked|idle|window", exact="reduce_ms")
    blocked_k = field(entry, r"reduce.*(wait|exposed|blocked)", exact="reduce_wait_ms")
    idle_k = "reduce_idle_ms" if "reduce_idle_ms" in entry else None
    window_k = "reduce_window_ms" if "reduce_window_ms" in entry else None
    ports = counters(os.path.join(d, "counters"))
    replicas = []
    for rep in sorted({s["replica"] for s in window[0]["stages"]}):
        per = [next(s for s in m["stages"] if s["replica"] == rep) for m in window]
        worker = per[0]["worker"]
        port = ports.get("port-" + worker)
        # The interface counters are read whatever else there is: a cross-check of the reduce's own counts.
        iface = (None, None)
        if port:
            iface = tuple((at((port[0], port[k]), end) - at((port[0], port[k]), start)) / n for k in (1, 2))
        if sent_k and recv_k:
            sent = statistics.mean(s[sent_k] for s in per)
            recv = statistics.mean(s[recv_k] for s in per)
            source = "metrics"
        elif port:
            sent, recv = iface
            source = "interface counters"
        else:
            sent = recv = float("nan"); source = "none"
        reduce_ms = statistics.median(s[time_k] if time_k else s["wait_ms"] for s in per)
        blocked_ms = statistics.median(s[blocked_k] if blocked_k else s["wait_ms"] for s in per)
        compute_ms = statistics.median(s["forward_ms"] + s["backward_ms"] for s in per)
        backward_ms = statistics.median(s["backward_ms"] for s in per)
        idle_ms = statistics.median(s[idle_k] for s in per) if idle_k else None
        # The reduce at work: its span less the time it had nothing under way (every started piece done, the
        # next bucket not final yet). Waiting for a partner's segment counts as work.
        busy_ms = statistics.median(s[time_k] - s[idle_k] for s in per) if idle_k and time_k else None
        window_ms = statistics.median(s[window_k] for s in per) if window_k else None
        replicas.append(dict(replica=rep, worker=worker, bytes_sent=sent, bytes_received=recv, bytes_source=source,
                             interface_sent=iface[0], interface_received=iface[1],
                             reduce_ms=reduce_ms, blocked_ms=blocked_ms, compute_ms=compute_ms, backward_ms=backward_ms,
                             idle_ms=idle_ms, window_ms=window_ms, busy_ms=busy_ms))
    model_s = 2 * (r - 1) / r * g / bandwidth_bytes
    star_s = (r - 1) * g / bandwidth_bytes  # replica 0 sends and receives (R−1)·|g| (full duplex)
    reduce_ms = statistics.mean(x["reduce_ms"] for x in replicas)
    blocked_ms = statistics.mean(x["blocked_ms"] for x in replicas)
    mean_of = lambda k: statistics.mean(x[k] for x in replicas) if all(x[k] is not None for x in replicas) else None
    busy_ms = mean_of("busy_ms")
    # Each direction of a link is a bandwidth of its own: what a replica sends, and what it receives,
    # are each 2·(R−1)/R·|g| for a bandwidth-optimal all-reduce; a star's replica 0 sends and receives (R−1)·|g|.
    per_bytes = [max(x["bytes_sent"], x["bytes_received"]) for x in replicas]
    return dict(replicas=r, steps=n, gradient_bytes=g, step_ms=statistics.median(m["step_ms"] for m in window),
                compute_ms=statistics.mean(x["compute_ms"] for x in replicas), backward_ms=mean_of("backward_ms"),
                blocked_ms=blocked_ms, idle_ms=mean_of("idle_ms"), window_ms=mean_of("window_ms"),
                bytes_per_replica_per_step=per_bytes, bytes_spread=(max(per_bytes) / min(per_bytes) - 1) if min(per_bytes) > 0 else None,
                model_bytes_per_replica=2 * (r - 1) / r * g, star_bytes_replica0=(r - 1) * g, reduce_ms=reduce_ms, model_reduce_ms=model_s * 1000,
                star_model_reduce_ms=star_s * 1000, reduce_vs_model=(reduce_ms / (model_s * 1000)) if r > 1 else None,
                hidden_share=(1 - blocked_ms / reduce_ms) if r > 1 and reduce_ms > 0 else None,
                # The same against the model: a reduce stretched over the backward pass (waiting for buckets) looks more
                # hidden by the line above than it is; this one asks how much of the bandwidth-bound time nobody waited for.
                hidden_vs_model=(1 - blocked_ms / (model_s * 1000)) if r > 1 else None,
                # The bandwidth model predicts the time the links carry the reduce, not its span over a backward
                # pass that makes buckets final one by one: the busy time is what compares with it, and the
                # share of that busy time nobody waited for is the hidden share it implies.
                busy_ms=busy_ms,
                busy_vs_model=(busy_ms / (model_s * 1000)) if r > 1 and busy_ms is not None else None,
                hidden_of_busy=(1 - blocked_ms / busy_ms) if r > 1 and (busy_ms or 0) > 0 else None,
                fields=dict(sent=sent_k, received=recv_k, time=time_k, blocked=blocked_k), per_replica=replicas)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs", nargs="+", help="R=DIR")
    ap.add_argument("--bandwidth-mbit", type=float, required=True)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    bw = a.bandwidth_mbit * 1e6 / 8
    rows = [report(int(x.split("=", 1)[0]), x.split("=", 1)[1], bw, a.warmup) for x in a.runs]
    mb = lambda b: f"{b / 1e6:.2f}"
    print(f"Data parallel, one stage × R replicas, links {a.bandwidth_mbit:g} Mbit/s each way, |g| = {mb(rows[0]['gradient_bytes'])} MB")
    print("   R  step ms  compute ms  MB sent/received per step, each replica           model MB  reduce ms  model ms  star model ms  reduce/model  hidden")
    for x in rows:
        per = ", ".join(f"{mb(p['bytes_sent'])}/{mb(p['bytes_received'])}" for p in x["per_replica"])
        ratio = f"{x['reduce_vs_model']:.2f}" if x["reduce_vs_model"] is not None else "—"
        hidden = f"{100 * x['hidden_share']:.0f}%" if x["hidden_share"] is not None else "—"
        print(f"{x['replicas']:4d} {x['step_ms']:8.0f} {x['compute_ms']:11.0f}  {per:52s} {mb(x['model_bytes_per_replica']):>9} {x['reduce_ms']:10.0f}"
              f" {x['model_reduce_ms']:9.0f} {x['star_model_reduce_ms']:14.0f} {ratio:>13} {hidden:>7}")
    if any(x["window_ms"] is not None for x in rows if x["replicas"] > 1):
        # Where the reduce's time goes: waited for by the training thread (exposed), the reduce thread idle for
        # want of a final bucket, the window (first bucket final to the last) that is all it can hide behind,
        # and the share of the model's time nobody waited for (1 − exposed / model ms).
        print("   R  backward ms  window ms  reduce ms  exposed ms  reduce idle ms  after the last bucket final ms  hidden vs model"
              "  busy ms  busy/model  hidden of busy")
        for x in rows:
            if x["replicas"] > 1 and x["window_ms"] is not None:
                busy = (f" {x['busy_ms']:8.0f} {x['busy_vs_model']:11.2f} {100 * x['hidden_of_busy']:14.0f}%"
                        if x["busy_ms"] is not None else "")
                print(f"{x['replicas']:4d} {x['backward_ms']:12.0f} {x['window_ms']:10.0f} {x['reduce_ms']:10.0f} {x['blocked_ms']:11.0f}"
                      f" {x['idle_ms']:15.0f} {x['reduce_ms'] - x['window_ms']:31.0f} {100 * x['hidden_vs_model']:15.0f}%{busy}")
        print("busy ms: the reduce's span less the time it had nothing under way (the links' work, which the bandwidth model"
              " predicts); hidden of busy: 1 − exposed / busy")
    src = {p["bytes_source"] for x in rows for p in x["per_replica"]}
    f = rows[-1]["fields"]
    for x in rows:
        if any(p["bytes_source"] == "metrics" and p["interface_sent"] is not None for p in x["per_replica"]):
            print(f"R = {x['replicas']}, the hosts' interface counters (everything, control messages included), MB sent/received per step: "
                  + ", ".join(f"{mb(p['interface_sent'])}/{mb(p['interface_received'])}" for p in x["per_replica"]))
    print("compute ms: forward + backward per replica (what a reduce can hide behind); model MB: 2·(R−1)/R·|g| each way (bandwidth-optimal); model ms: that over the link; star model ms: (R−1)·|g| over the link "
          "(replica 0 of a star); reduce/model: measured reduce ms over model ms")
    print(f"bytes from: {', '.join(sorted(src))}; reduce time from: {f['time'] or 'wait_ms (one stage: all waiting is the reduce)'}; "
          f"blocked time from: {f['blocked'] or 'wait_ms'}")
    if a.json:
        with open(a.json, "w") as out:
            json.dump(dict(bandwidth_mbit=a.bandwidth_mbit, warmup=a.warmup, runs=rows), out, indent=1)


if __name__ == "__main__":
    main()
