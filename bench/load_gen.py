#!/usr/bin/env python3
"""load_gen.py - a loopback load generator for ditserve (standard library only).

    python3 bench/load_gen.py --port PORT [--clients 64] [--seconds 60] [--model dit] [--out report.json]

CLIENTS threads, each with its own keep-alive connection to 127.0.0.1:PORT, loop for SECONDS picking at random:
  /health (40%), GET /v1/jobs/<id> of a job it knows (25%), POST /v1/generate mode async (12%) and sync (10%)
  (dit, 1 label by id or ImageNet name, 2-6 steps, random cache config none / string / object),
  GET /v1/stats/<id> (5%), DELETE /v1/jobs/<id> of an async job (3%; about one async job in five is
  cancelled, each once; otherwise /health), GET /metrics (5%). A 429 makes the client wait Retry-After
  (at most 1 s), as a polite client would.
Then it drains: every accepted job (200 sync, 202 async) is polled until it reaches a final state
(done | failed | cancelled; at most --drain-seconds), and its timings are read from GET /v1/jobs/<id>. A job
already evicted (404: the server keeps at most 1024 finished jobs, and --max-retained-mb) is accounted for by
the server's books instead: /metrics must show jobs_total{submitted} == done + failed + cancelled == the
number of jobs the clients saw accepted, an empty queue and no running job.
Prints and writes a JSON report: requests and status codes per route, latency percentiles per route,
accepted / final / stuck jobs, and the server-side overhead per job:
  overhead_ms     = total_ms - queue_ms - denoise_ms - decode_ms - encode_ms  (= run_ms - denoise - decode:
                    the worker's own bookkeeping; queue wait is not overhead)
  total_minus_ms  = total_ms - denoise_ms - decode_ms - encode_ms              (the same plus the queue wait)
  http_ms (sync)  = client-observed latency - total_ms of the reply            (parse, submit, wake-up, JSON,
                    base64 and HTTP I/O around the job)
Exit 0 when every accepted job reached a final state (seen, or in the server's books), and no request failed at
the transport level or got a 5xx; 1 otherwise.
"""
import argparse
import http.client
import json
import random
import sys
import threading
import time

NAMES = ["goldfish", "golden retriever", "tench", "great white shark", "white shark"]  # in dit-tiny's id2label


def pct(xs, p):
    if not xs:
        return None
    s = sorted(xs)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * (len(s) - 1)))))
    return s[k]


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.lat = {}       # route -> [ms]
        self.codes = {}     # route -> {code: n}
        self.transport_errors = []
        self.jobs = {}      # id -> {"mode", "sync_ms", "sync_total_ms"}
        self.async_ids = []  # async jobs not yet cancelled
        self.n_async = 0
        self.n_cancelled = 0
        self.bad_5xx = []

    def record(self, route, code, ms):
        with self.lock:
            self.lat.setdefault(route, []).append(ms)
            c = self.codes.setdefault(route, {})
            c[code] = c.get(code, 0) + 1


class Client:
    def __init__(self, port, timeout):
        self.port = port
        self.timeout = timeout
        self.conn = None
        self.retry_after = None

    def request(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json"} if data else {}
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            t0 = time.perf_counter()
            try:
                self.conn.request(method, path, body=data, headers=hdrs)
                r = self.conn.getresponse()
                raw = r.read()
                ms = (time.perf_counter() - t0) * 1e3
                if r.getheader("Connection", "").lower() == "close":
                    self.conn.close()
                    self.conn = None
                self.retry_after = r.getheader("Retry-After")
                return r.status, raw, ms
            except (http.client.HTTPException, OSError) as e:
                self.conn.close()
                self.conn = None
                # a keep-alive connection the server closed between requests: retry once on a fresh one
                if attempt == 1 or not isinstance(e, (http.client.RemoteDisconnected, BrokenPipeError,
                                                      ConnectionResetError)):
                    raise
        raise RuntimeError("unreachable")


def gen_body(model, mode, rnd):
    label = rnd.choice(NAMES) if rnd.random() < 0.5 else rnd.randrange(1000)
    body = {"model": model, "class_labels": [label], "steps": rnd.randint(2, 6), "mode": mode,
            "seed": rnd.randrange(1 << 31)}
    c = rnd.random()
    if c < 0.3:
        body["cache_config"] = "none"
    elif c < 0.6:
        body["cache_config"] = "F1B0_W1MC1_T0O1_R0.2"
    elif c < 0.8:
        body["cache_config"] = {"Fn_compute_blocks": 1, "max_warmup_steps": 1, "residual_diff_threshold": 0.3}
    return body


def worker(idx, args, st, deadline):
    rnd = random.Random(1000 + idx)
    cl = Client(args.port, args.timeout)
    mine = []
    while time.monotonic() < deadline:
        r = rnd.random()
        try:
            if r < 0.40 or (r < 0.65 and not mine):
                code, _, ms = cl.request("GET", "/health")
                st.record("health", code, ms)
            elif r < 0.65:
                code, _, ms = cl.request("GET", "/v1/jobs/" + rnd.choice(mine))
                st.record("job_status", code, ms)
            elif r < 0.87:
                mode = "async" if r < 0.77 else "sync"
                code, raw, ms = cl.request("POST", "/v1/generate", gen_body(args.model, mode, rnd))
                st.record("generate_" + mode, code, ms)
                if code in (200, 202):
                    d = json.loads(raw)
                    jid = d["id"]
                    mine.append(jid)
                    with st.lock:
                        info = {"mode": mode}
                        if code == 200:
                            info["sync_ms"] = ms
                            info["sync_total_ms"] = d.get("timings", {}).get("total_ms")
                            info["sync_state"] = d.get("state")
                        else:
                            st.async_ids.append(jid)
                            st.n_async += 1
                        st.jobs[jid] = info
                elif code == 429:
                    # a polite client: wait as told (at most 1 s), so the mix stays mixed
                    try:
                        time.sleep(min(1.0, float(cl.retry_after or 1)))
                    except ValueError:
                        time.sleep(1.0)
                elif code >= 500:
                    with st.lock:
                        st.bad_5xx.append(("generate_" + mode, code, raw[:300].decode("utf-8", "replace")))
            elif r < 0.92:
                if mine:
                    code, _, ms = cl.request("GET", "/v1/stats/" + rnd.choice(mine))
                    st.record("stats", code, ms)
                else:
                    code, _, ms = cl.request("GET", "/v1/models")
                    st.record("models", code, ms)
            elif r < 0.95:
                # cancel about one async job in five, each at most once
                with st.lock:
                    jid = None
                    if st.async_ids and st.n_cancelled * 5 < len(st.async_ids) + st.n_cancelled:
                        jid = st.async_ids.pop(rnd.randrange(len(st.async_ids)))
                        st.n_cancelled += 1
                if jid:
                    code, _, ms = cl.request("DELETE", "/v1/jobs/" + jid)
                    st.record("cancel", code, ms)
                else:
                    code, _, ms = cl.request("GET", "/health")
                    st.record("health", code, ms)
            else:
                code, _, ms = cl.request("GET", "/metrics")
                st.record("metrics", code, ms)
        except Exception as e:  # noqa: BLE001 - every transport failure is a finding
            with st.lock:
                st.transport_errors.append("%s: %s" % (type(e).__name__, e))
            time.sleep(0.05)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--clients", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--drain-seconds", type=float, default=120)
    ap.add_argument("--timeout", type=float, default=180)
    ap.add_argument("--model", default="dit")
    ap.add_argument("--out")
    args = ap.parse_args()

    st = Stats()
    t0 = time.monotonic()
    deadline = t0 + args.seconds
    threads = [threading.Thread(target=worker, args=(i, args, st, deadline), daemon=True) for i in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(args.seconds + args.timeout + 30)
    load_s = time.monotonic() - t0
    alive = sum(t.is_alive() for t in threads)

    # drain: every accepted job must reach a final state
    cl = Client(args.port, args.timeout)
    final, stuck, lost, evicted = {}, [], [], []
    overhead, total_minus, http_ms, queue_ms, denoise_ms = [], [], [], [], []
    drain_end = time.monotonic() + args.drain_seconds
    for jid, info in list(st.jobs.items()):
        while True:
            code, raw, _ = cl.request("GET", "/v1/jobs/" + jid)
            if code == 404:
                evicted.append(jid)  # already final and evicted (count / memory bound): checked via /metrics
                break
            if code != 200:
                lost.append((jid, code))
                break
            d = json.loads(raw)
            if d["state"] in ("done", "failed", "cancelled"):
                final[d["state"]] = final.get(d["state"], 0) + 1
                t = d.get("timings", {})
                if d["state"] == "done" and "denoise_ms" in t:
                    overhead.append(t["total_ms"] - t["queue_ms"] - t["denoise_ms"] - t["decode_ms"] - t["encode_ms"])
                    total_minus.append(t["total_ms"] - t["denoise_ms"] - t["decode_ms"] - t["encode_ms"])
                    queue_ms.append(t["queue_ms"])
                    denoise_ms.append(t["denoise_ms"])
                if info.get("sync_total_ms") is not None:
                    http_ms.append(info["sync_ms"] - info["sync_total_ms"])
                break
            if time.monotonic() > drain_end:
                stuck.append((jid, d["state"]))
                break
            time.sleep(0.2)

    # the server's own books: every submitted job is final, nothing queued or running, and it accepted
    # exactly the jobs the clients were told it accepted (nobody else talks to this server)
    code, raw, _ = cl.request("GET", "/metrics")
    m = {}
    for line in raw.decode().splitlines():
        if line.startswith("ditserve_jobs_total{state=") or line.startswith("ditserve_queue_depth ") or \
                line.startswith("ditserve_jobs_running "):
            k, v = line.rsplit(" ", 1)
            m[k] = float(v)
    sub = m.get('ditserve_jobs_total{state="submitted"}', -1)
    fin = sum(m.get('ditserve_jobs_total{state="%s"}' % x, 0) for x in ("done", "failed", "cancelled"))
    books = {"submitted": sub, "final": fin, "queue_depth": m.get("ditserve_queue_depth", -1),
             "running": m.get("ditserve_jobs_running", -1)}
    books_ok = (code == 200 and sub == fin == len(st.jobs) and books["queue_depth"] == 0 and books["running"] == 0)

    routes = {}
    for route, xs in sorted(st.lat.items()):
        routes[route] = {"n": len(xs), "codes": st.codes[route], "p50_ms": pct(xs, 50), "p90_ms": pct(xs, 90),
                         "p99_ms": pct(xs, 99), "max_ms": max(xs)}

    def summ(xs):
        return {"n": len(xs), "p50_ms": pct(xs, 50), "p99_ms": pct(xs, 99),
                "mean_ms": (sum(xs) / len(xs)) if xs else None, "max_ms": max(xs) if xs else None}

    total_req = sum(len(x) for x in st.lat.values())
    rep = {
        "clients": args.clients, "seconds": round(load_s, 1), "requests": total_req,
        "requests_per_s": round(total_req / load_s, 1), "threads_still_running": alive,
        "routes": routes, "transport_errors": len(st.transport_errors),
        "transport_error_samples": st.transport_errors[:5], "server_5xx": st.bad_5xx[:5],
        "jobs_accepted": len(st.jobs), "jobs_async": st.n_async, "cancel_requests": st.n_cancelled,
        "jobs_final_seen": final, "jobs_evicted_before_drain": len(evicted), "jobs_stuck": stuck,
        "jobs_lost": lost[:10], "n_jobs_lost": len(lost), "server_books": books, "server_books_ok": books_ok,
        "overhead_ms": summ(overhead), "total_minus_denoise_decode_encode_ms": summ(total_minus),
        "sync_http_ms": summ(http_ms), "queue_ms": summ(queue_ms), "denoise_ms": summ(denoise_ms),
    }
    txt = json.dumps(rep, indent=1)
    print(txt)
    if args.out:
        with open(args.out, "w") as f:
            f.write(txt + "\n")
    ok = not stuck and not lost and books_ok and not st.transport_errors and not st.bad_5xx and alive == 0
    print("load_gen: %s" % ("PASS" if ok else "FAIL"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
