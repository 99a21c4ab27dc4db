#!/usr/bin/env python3
# keepalive-bench.py: what a lease keepalive costs next to a small PUT, on one node of the
# release build (CAIRN_BIN, default target/release/cairn) on a free loopback port: 16 threads,
# each on its own keep-alive connection, for 10 s per row, PUT and keepalive rows alternating.
# Prints requests per second and the server's CPU time per request (from /proc/PID/stat). The
# load generator shares the machine; read the two kinds against each other, not as a ceiling.
# Only the node this script started is signalled.
import http.client, json, os, socket, subprocess, sys, tempfile, threading, time
BIN = os.environ.get("CAIRN_BIN", "target/release/cairn")
def free_port():
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close(); return p
port = free_port()
d = tempfile.mkdtemp()
node = subprocess.Popen([BIN, "serve", "--listen", f"127.0.0.1:{port}", "--data-dir", d], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
def req(conn, method, path, body=None):
    conn.request(method, path, body=json.dumps(body) if body is not None else None, headers={"content-type": "application/json"})
    r = conn.getresponse(); data = r.read(); return r.status, data
deadline = time.time() + 20
while True:
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        st, _ = req(c, "GET", "/ready")
        if st == 200: break
    except Exception: pass
    if time.time() > deadline: node.kill(); sys.exit("no ready")
    time.sleep(0.1)
def cpu():
    f = open(f"/proc/{node.pid}/stat").read().split(")")[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
THREADS, SECS = 16, 10
def run(kind):
    counts = [0] * THREADS
    stop = time.time() + SECS
    def worker(i):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        if kind == "keepalive":
            st, data = req(c, "POST", "/leases", {"ttlSeconds": 60}); lid = json.loads(data)["data"]["id"]
        n = 0
        while time.time() < stop:
            if kind == "keepalive":
                st, _ = req(c, "POST", f"/leases/{lid}/keepalive")
            else:
                st, _ = req(c, "PUT", f"/kv/items/k{i}", {"value": {"n": n}})
            assert st == 200, st
            n += 1
        counts[i] = n
    c0 = cpu(); t0 = time.time()
    ts = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    [t.start() for t in ts]; [t.join() for t in ts]
    el = time.time() - t0; used = cpu() - c0; total = sum(counts)
    print(f"{kind}: {total} in {el:.1f} s = {total/el:.0f}/s, server CPU {used:.2f} s = {used/total*1e6:.0f} us per request")
try:
    for kind in ["put", "keepalive", "put", "keepalive"]:
        run(kind)
finally:
    node.terminate(); node.wait(timeout=20)
    import shutil; shutil.rmtree(d, ignore_errors=True)
