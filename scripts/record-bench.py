"""`skelseg record` at scale (BENCHMARKS.md, "record keeps every frame"): 4 TCP clients each send
18,000 frames paced at 30 fps (10 minutes) to `skelseg record --source tcp-listen:127.0.0.1:PORT`,
then the recorder gets SIGTERM once its files hold every frame. Prints one JSON object: frames
sent per client, frames in each file, file sizes, the recorder's CPU time and its own report.

Usage: python3 scripts/record-bench.py SKELSEG_BINARY OUT_DIR PORT"""
import socket, subprocess, sys, threading, time, json, os, resource
B, out, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
CLIENTS, FPS, SECS = 4, 30.0, 600
N = int(FPS * SECS)
rec = subprocess.Popen(["nice", "-n", "10", B, "record", "--source", f"tcp-listen:127.0.0.1:{port}",
                        "--out", out, "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
def connect():
    for _ in range(600):
        try:
            return socket.create_connection(("127.0.0.1", port))
        except OSError:
            time.sleep(0.1)
    raise SystemExit("no listener")
sent = [0] * CLIENTS
late = [0.0] * CLIENTS
def client(c):
    s = connect()
    t0 = time.monotonic()
    for i in range(N):
        due = t0 + i / FPS
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        else:
            late[c] = max(late[c], now - due)
        joints = ",".join(f"[{c + 0.001 * (i % 1000)},{0.05 * j:.2f},2.5]" for j in range(25))
        line = ('{"type":"frame","frame_id":%d,"timestamp_usec":%d,"bodies":[{"body_id":1,"joint_positions":[%s]}]}\n'
                % (i, round(i / FPS * 1e6), joints))
        s.sendall(line.encode())
        sent[c] += 1
    s.close()
start = time.time()
ts = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
for t in ts: t.start()
for t in ts: t.join()
sent_done = time.time()
# Wait until the files hold every frame (header + N lines each), then SIGTERM the recorder.
deadline = time.time() + 120
def lines():
    return {f: sum(1 for _ in open(os.path.join(out, f))) for f in sorted(os.listdir(out))} if os.path.isdir(out) else {}
while time.time() < deadline and sum(v - 1 for v in lines().values()) < CLIENTS * N:
    time.sleep(0.5)
rec.terminate()
stdout, stderr = rec.communicate(timeout=60)
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
files = lines()
print(json.dumps({
    "clients": CLIENTS, "fps": FPS, "frames_sent": sent, "frames_sent_total": sum(sent),
    "frames_in_files": {f: n - 1 for f, n in files.items()},
    "frames_in_files_total": sum(n - 1 for n in files.values()),
    "bytes": {f: os.path.getsize(os.path.join(out, f)) for f in files},
    "send_wall_s": round(sent_done - start, 1), "max_sender_lateness_s": round(max(late), 3),
    "recorder_cpu_user_s": ru.ru_utime, "recorder_cpu_sys_s": ru.ru_stime,
    "recorder_maxrss_kb": ru.ru_maxrss, "recorder_exit": rec.returncode,
    "recorder_report": stdout.decode().strip(), "recorder_stderr_tail": stderr.decode()[-500:],
}, indent=1))
