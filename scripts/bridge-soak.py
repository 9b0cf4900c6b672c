#!/usr/bin/env python3
"""The bridge outage, measured: an edge broker (databus broker or mosquitto) bridged to a central
mosquitto; the central broker is stopped, cameras publish QoS 1 detections to the edge, the edge
may be killed with SIGKILL in the middle (KILL=1), then the central broker comes back and the
backlog drains to a paho-mqtt subscriber there.

Prints, per edge: detections acknowledged to the cameras, arrived at the central subscriber,
missing (acknowledged, never arrived), duplicates, out of order (per camera), the drain rate,
the edge's memory during the outage, and the latency of live traffic with no backlog and during
the drain (a camera publishing 10/s to a subscriber on the edge itself, and the same messages at
the central broker).

Run through scripts/bridge-soak, which builds databus; the knobs are environment variables:
MESSAGES (36000), CAMERAS (100), PACED (0: as fast as possible; 1: one per camera per second, so
MESSAGES=360000 PACED=1 is the full hour), KILL (1), EDGES ("databus mosquitto").
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

import paho.mqtt.client as mqtt

DATABUS = os.environ["DATABUS"]
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
MESSAGES = int(os.environ.get("MESSAGES", "36000"))
CAMERAS = int(os.environ.get("CAMERAS", "100"))
PACED = os.environ.get("PACED", "0") == "1"
KILL = os.environ.get("KILL", "1") == "1"
EDGES = os.environ.get("EDGES", "databus mosquitto").split()
PER_CAMERA = max(1, MESSAGES // CAMERAS)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_listening(port, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        s = socket.socket()
        s.settimeout(0.2)
        if s.connect_ex(("127.0.0.1", port)) == 0:
            s.close()
            return
        s.close()
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def rss_bytes(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Broker:
    """A broker process started from a configuration file, restartable with the same one."""

    def __init__(self, argv, conf, port, log):
        self.argv, self.conf, self.port, self.log = argv, conf, port, log
        self.process = None

    def start(self):
        self.process = subprocess.Popen(self.argv + ["-c", self.conf], stdout=subprocess.DEVNULL, stderr=open(self.log, "a"))
        wait_listening(self.port)

    def terminate(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)

    def kill(self):
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)


def retained(port, topic, payload, seconds=30):
    """Waits until `topic` holds `payload` as its retained message."""
    deadline = time.time() + seconds
    while time.time() < deadline:
        got = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"watch-{time.time_ns()}")

        def on_message(c, u, message):
            if message.retain and message.payload.decode() == payload:
                got.set()

        client.on_message = on_message
        try:
            client.connect("127.0.0.1", port)
            client.subscribe(topic)
            client.loop_start()
            if got.wait(1):
                return
        except OSError:
            pass
        finally:
            client.loop_stop()
            client.disconnect()
        time.sleep(0.2)
    raise RuntimeError(f"{topic} on {port} is not {payload} after {seconds} s")


class Subscriber:
    """The LPR server at the central broker: a persistent session that reconnects on its own."""

    def __init__(self, port):
        self.lock = threading.Lock()
        self.first = {}  # payload -> arrival time
        self.lines = 0
        self.order = {}  # camera -> sequences in order of first arrival
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="lpr-server", clean_session=False)
        self.client.max_inflight_messages_set(100)
        self.client.reconnect_delay_set(1, 1)
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, r, p: c.subscribe("site7/lpr/#", qos=1)
        self.client.on_subscribe = lambda c, u, m, r, p: self.subscribed.set()
        self.client.on_message = self.on_message
        self.client.connect("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def on_message(self, client, userdata, message):
        now = time.time()
        payload = message.payload.decode()
        with self.lock:
            self.lines += 1
            if payload in self.first:
                return
            self.first[payload] = now
            camera, sequence = payload.split("-")[:2]
            self.order.setdefault(camera, []).append(int(sequence))

    def stop(self):
        self.client.loop_stop()
        self.client.disconnect()


def measure_local_latency(port, seconds, prefix):
    """A camera publishing 10/s at QoS 1 to a subscriber on the same broker for `seconds`:
    the latencies (s), publish to delivery."""
    sent, latencies = {}, []
    watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-watcher")
    publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"{prefix}-camera")
    subscribed = threading.Event()
    watcher.on_subscribe = lambda c, u, m, r, p: subscribed.set()
    watcher.on_message = lambda c, u, m: latencies.append(time.time() - sent[m.payload.decode()]) if m.payload.decode() in sent else None
    watcher.connect("127.0.0.1", port)
    watcher.loop_start()
    watcher.subscribe(f"lpr/{prefix}/#", qos=1)
    subscribed.wait(10)
    publisher.connect("127.0.0.1", port)
    publisher.loop_start()
    end = time.time() + seconds
    number = 0
    while time.time() < end:
        number += 1
        payload = f"{prefix}-{number}"
        sent[payload] = time.time()
        publisher.publish(f"lpr/{prefix}/detections", payload, qos=1)
        time.sleep(0.1)
    time.sleep(1)
    for client in (publisher, watcher):
        client.loop_stop()
        client.disconnect()
    return latencies


def publish_outage(port, kill_at, edge):
    """CAMERAS cameras publish PER_CAMERA QoS 1 detections each to the edge; the edge is killed
    (and restarted) once `kill_at` were acknowledged, and paho sends again what was not.
    Returns the payloads the edge acknowledged."""
    lock = threading.Lock()
    killed = threading.Event()
    total = [0]

    def kill_and_restart():
        edge.kill()
        time.sleep(0.5)
        edge.start()

    def on_publish(client, userdata, mid, reason, properties):
        with lock:
            total[0] += 1
            count = total[0]
        if KILL and not killed.is_set() and count >= kill_at:
            killed.set()
            threading.Thread(target=kill_and_restart).start()

    clients = []
    for camera in range(CAMERAS):
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"camera-{camera}")
        client.reconnect_delay_set(0.2, 1)
        client.on_publish = on_publish
        client.connect("127.0.0.1", port)
        client.loop_start()
        clients.append(client)
    sent = [[] for _ in range(CAMERAS)]

    def run(camera):
        client = clients[camera]
        for sequence in range(1, PER_CAMERA + 1):
            payload = f"cam{camera}-{sequence}"
            # Not connected (the edge was killed): paho keeps QoS 1 messages and sends them on reconnecting.
            info = client.publish(f"lpr/cam{camera}/detections", payload, qos=1)
            sent[camera].append((info, payload))
            if PACED:
                time.sleep(1)
            elif sequence % 20 == 0:
                time.sleep(0.001)

    threads = [threading.Thread(target=run, args=(camera,)) for camera in range(CAMERAS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    def acknowledged(info):
        # A message published while the edge was down has rc "not connected" but is queued:
        # paho sends it on reconnecting and marks it published at its PUBACK.
        with info._condition:
            return info._published

    deadline = time.time() + 600
    while time.time() < deadline and not all(acknowledged(info) for infos in sent for info, _ in infos):
        time.sleep(0.1)
    for client in clients:
        client.loop_stop()
        client.disconnect()
    return {payload for infos in sent for info, payload in infos if acknowledged(info)}


def run(kind, work):
    central_port, edge_port = free_port(), free_port()
    store = os.path.join(work, f"{kind}-store")
    central_store = os.path.join(work, f"{kind}-central-store")
    for folder in (store, central_store):
        os.makedirs(folder)
        os.chmod(folder, 0o777)
    central_conf = os.path.join(work, f"{kind}-central.conf")
    with open(central_conf, "w") as f:
        f.write(f"listener {central_port} 127.0.0.1\nallow_anonymous true\npersistence true\npersistence_location {central_store}/\n"
                "max_queued_messages 0\nmax_inflight_messages 100\nlog_dest none\n")
    edge_conf = os.path.join(work, f"{kind}-edge.conf")
    with open(edge_conf, "w") as f:
        f.write(f"""listener {edge_port} 127.0.0.1
allow_anonymous true
persistence true
persistence_location {store}/
max_queued_messages 0
log_dest stderr
connection central
address 127.0.0.1:{central_port}
remote_clientid edge-7
notification_topic bridges/edge-7/state
restart_timeout 1
keepalive_interval 5
topic lpr/# out 1 "" site7/
""")
    for path in (central_conf, edge_conf):
        os.chmod(path, 0o644)
    central = Broker([MOSQUITTO], central_conf, central_port, os.path.join(work, f"{kind}-central.log"))
    edge = Broker([DATABUS, "broker"] if kind == "databus" else [MOSQUITTO], edge_conf, edge_port, os.path.join(work, f"{kind}-edge.log"))
    central.start()
    subscriber = Subscriber(central_port)
    subscriber.subscribed.wait(10)
    edge.start()
    try:
        retained(central_port, "bridges/edge-7/state", "1")
        idle_rss = rss_bytes(edge.process.pid)
        # Live traffic with the bridge connected and nothing queued, to compare with the drain.
        baseline = sorted(measure_local_latency(edge_port, 5, "baseline"))
        central.terminate()
        retained(edge_port, "bridges/edge-7/state", "0")

        # The outage: sample the edge's memory while the cameras publish.
        peak = [0]
        sampling = threading.Event()

        def sample():
            while not sampling.is_set():
                peak[0] = max(peak[0], rss_bytes(edge.process.pid))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        started = time.time()
        acknowledged = publish_outage(edge_port, CAMERAS * PER_CAMERA // 2, edge)
        publish_seconds = time.time() - started
        time.sleep(1)
        sampling.set()
        sampler.join()
        outage_rss = rss_bytes(edge.process.pid)

        # Live traffic during the drain: 10/s to a subscriber on the edge (and on to the central broker).
        live_sent = {}
        local_latency = []
        live = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="live-camera")
        watcher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="live-watcher")

        def on_live(c, u, message):
            sent = live_sent.get(message.payload.decode())
            if sent:
                local_latency.append(time.time() - sent)

        watcher.on_message = on_live
        watcher.connect("127.0.0.1", edge_port)
        watcher.subscribe("lpr/live/#", qos=1)
        watcher.loop_start()
        live.connect("127.0.0.1", edge_port)
        live.loop_start()
        stop_live = threading.Event()

        def live_loop():
            number = 0
            while not stop_live.is_set():
                number += 1
                payload = f"live-{number}"
                live_sent[payload] = time.time()
                live.publish("lpr/live/detections", payload, qos=1)
                time.sleep(0.1)

        # The uplink comes back.
        drain_start = time.time()
        central.start()
        live_thread = threading.Thread(target=live_loop)
        live_thread.start()
        deadline = drain_start + (600 if not PACED else 3600)
        last_count, last_change = -1, time.time()
        while time.time() < deadline:
            with subscriber.lock:
                missing = sum(1 for p in acknowledged if p not in subscriber.first)
            # Only the backlog counts: the live messages keep arriving.
            count = len(acknowledged) - missing
            if missing == 0:
                break
            if count != last_count:
                last_count, last_change = count, time.time()
            elif time.time() - last_change > 30:
                break  # nothing more is coming
            time.sleep(0.05)
        drained_at = max((subscriber.first.get(p, 0) for p in acknowledged), default=drain_start)
        first_at = min((subscriber.first[p] for p in acknowledged if p in subscriber.first), default=drained_at)
        stop_live.set()
        live_thread.join()
        time.sleep(1.5)
        live.loop_stop()
        watcher.loop_stop()
        with subscriber.lock:
            arrived = sum(1 for p in subscriber.first if p.startswith("cam"))
            missing = sum(1 for p in acknowledged if p not in subscriber.first)
            duplicates = subscriber.lines - len(subscriber.first)
            out_of_order = sum(sum(1 for a, b in zip(s, s[1:]) if a >= b) for c, s in subscriber.order.items() if c.startswith("cam"))
            central_live = [subscriber.first[p] - live_sent[p] for p in live_sent if p in subscriber.first]
            backlog_arrived = sum(1 for p in acknowledged if p in subscriber.first)
        drain = max(drained_at - drain_start, 0.001)
        backlog = len(acknowledged)
        return {
            "edge": kind, "acknowledged": backlog, "arrived": arrived, "missing": missing, "duplicates": duplicates,
            "out_of_order": out_of_order, "publish_s": publish_seconds, "drain_s": drain,
            "first_s": max(first_at - drain_start, 0.0), "drain_rate": backlog_arrived / max(drained_at - first_at, 0.001),
            "idle_rss": idle_rss, "peak_rss": peak[0], "outage_rss": outage_rss,
            "baseline_p50_ms": baseline[len(baseline) // 2] * 1000 if baseline else None,
            "baseline_max_ms": baseline[-1] * 1000 if baseline else None,
            "local_live_p50_ms": sorted(local_latency)[len(local_latency) // 2] * 1000 if local_latency else None,
            "local_live_max_ms": max(local_latency) * 1000 if local_latency else None,
            "central_live_max_s": max(central_live) if central_live else None,
            "store_bytes": sum(os.path.getsize(os.path.join(store, f)) for f in os.listdir(store)) if kind == "databus" else None,
        }
    finally:
        subscriber.stop()
        edge.terminate()
        central.terminate()


def main():
    work = tempfile.mkdtemp(prefix="databus-bridge-soak-")
    os.chmod(work, 0o777)
    print(f"{CAMERAS} cameras x {PER_CAMERA} QoS 1 detections ({CAMERAS * PER_CAMERA}) while the central broker is down"
          f"{', the edge killed with SIGKILL half-way' if KILL else ''}{', paced at 1/s per camera' if PACED else ''}")
    results = []
    try:
        for kind in EDGES:
            results.append(run(kind, work))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    mib = lambda b: f"{b / 1048576:.1f} MiB" if b else "-"
    rows = [
        ("acknowledged to the cameras", lambda r: f"{r['acknowledged']}"),
        ("arrived at the central subscriber", lambda r: f"{r['arrived']}"),
        ("missing (acknowledged, never arrived)", lambda r: f"{r['missing']}"),
        ("duplicates", lambda r: f"{r['duplicates']}"),
        ("out of order (per camera)", lambda r: f"{r['out_of_order']}"),
        ("outage publishing time", lambda r: f"{r['publish_s']:.1f} s"),
        ("uplink back -> first detection forwarded", lambda r: f"{r['first_s']:.1f} s"),
        ("uplink back -> backlog drained", lambda r: f"{r['drain_s']:.1f} s"),
        ("drain rate (arrived, first to last)", lambda r: f"{r['drain_rate']:,.0f} msg/s"),
        ("edge RSS before the outage", lambda r: mib(r["idle_rss"])),
        ("edge RSS peak during the outage", lambda r: mib(r["peak_rss"])),
        ("edge store on disk", lambda r: mib(r["store_bytes"])),
        ("live, edge subscriber, no backlog, p50 / max", lambda r: f"{r['baseline_p50_ms']:.1f} / {r['baseline_max_ms']:.1f} ms" if r["baseline_max_ms"] is not None else "-"),
        ("live, edge subscriber, during the drain, p50 / max", lambda r: f"{r['local_live_p50_ms']:.1f} / {r['local_live_max_ms']:.1f} ms" if r["local_live_max_ms"] is not None else "-"),
        ("live, central subscriber, max", lambda r: f"{r['central_live_max_s']:.1f} s" if r["central_live_max_s"] is not None else "-"),
    ]
    width = max(len(name) for name, _ in rows)
    print(f"| {'':{width}} | " + " | ".join(r["edge"] for r in results) + " |")
    print(f"| {'-' * width} | " + " | ".join("---:" for _ in results) + " |")
    for name, cell in rows:
        print(f"| {name:{width}} | " + " | ".join(cell(r) for r in results) + " |")


if __name__ == "__main__":
    main()
