#!/usr/bin/env python3
"""Figures for `databus up`, printed, never asserted: run with a release build.

    swift build -c release --product databus && python3 scripts/bench-up.py

1. memory (RSS) at rest, and under 2,000 detections/s for 30 s (paho-mqtt, QoS 1);
2. publish -> page: 1,000 detections published one by one, each timed until it is in the
   dashboard's feed in headless Chromium (a MutationObserver notes when), p50/p99;
3. REST plate search over 1,000,000 stored detections: exact, prefix and fuzzy, p50/p99 of 200
   requests each. The million rows are written straight into lpr.sqlite (same schema, same
   normalised and folded plate forms) while databus up is stopped, then it is started again.

Needs mosquitto-clients, paho-mqtt, selenium, Debian's chromium and chromedriver (scripts/test
installs them). Uses a temporary data folder and loopback ports; stops what it starts.
"""
import argparse
import json
import os
import random
import re
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid

import paho.mqtt.client as mqtt

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def detection(message_id, camera, plate, when=None):
    return {
        "message_id": message_id,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(when or time.time())),
        "camera_id": camera, "checkpoint_id": "CP" + camera[-2:],
        "detection_data": {
            "vehicles_count": 1, "plates_count": 1, "processing_time_ms": 150, "confidence_score": 0.95, "detection_type": "lpr",
            "vehicles": [{"vehicle_index": 0, "bbox": [100, 100, 200, 200], "confidence": 0.95, "vehicle_class": "car",
                          "vehicle_type": "sedan", "color": "white", "brand": "Toyota", "model": "Camry", "year": 2020}],
            "plates": [{"plate_index": 0, "plate_number": plate, "bbox": [150, 120, 180, 140], "confidence": 0.92,
                        "plate_type": "standard", "country": "TH", "province": "Bangkok", "is_valid": True}],
        },
        "metadata": {"image_path": f"/storage/images/{camera}.jpg", "weather": "clear", "lighting": "daylight"},
    }


def random_plate(rng):
    letters = "ABCDEFGHJKLMNPRSTUVWXYZ"
    return "".join(rng.choice(letters) for _ in range(2)) + str(rng.randint(10, 99)) + "".join(rng.choice(letters) for _ in range(3))


FOLD = str.maketrans({"O": "0", "D": "0", "Q": "0", "I": "1", "L": "1", "B": "8", "S": "5", "Z": "2", "G": "6"})


def normalize(plate):
    return re.sub(r"[^A-Z0-9]", "", plate.upper())


class Up:
    def __init__(self, executable, data):
        self.executable, self.data = executable, data
        self.process = None

    def start(self):
        self.err = open(os.path.join(os.path.dirname(self.data), "up.err"), "a")
        self.process = subprocess.Popen(
            [self.executable, "up", "--data", self.data, "--mqtt", "127.0.0.1:0", "--http", "127.0.0.1:0", "--log-level", "warning"],
            stdout=subprocess.PIPE, stderr=self.err, text=True)
        banner = ""
        deadline = time.time() + 120
        while "The REST API:" not in banner:
            line = self.process.stdout.readline()
            if not line:
                raise SystemExit("databus up exited: " + open(self.err.name).read()[-2000:])
            banner += line
            if time.time() > deadline:
                raise SystemExit("databus up did not start")
        threading.Thread(target=self.process.stdout.read, daemon=True).start()
        self.http = re.search(r"Dashboard\s+(\S+)", banner).group(1)
        self.mqtt_port = int(re.search(r"MQTT\s+mqtt://[^:]+:(\d+)", banner).group(1))
        self.token = open(os.path.join(self.data, "api-token")).read().strip()

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)

    def get(self, path):
        request = urllib.request.Request(self.http.rstrip("/") + path, headers={"Authorization": "Bearer " + self.token})
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())


def connect(port, name):
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=name, protocol=mqtt.MQTTv311)
    client.max_inflight_messages_set(200)
    client.max_queued_messages_set(0)
    client.connect("127.0.0.1", port)
    client.loop_start()
    return client


def memory_under_load(up, rate, seconds):
    """Publishes `rate` detections/s for `seconds` from 4 clients; returns (peak RSS KiB, sent, stored)."""
    clients = [connect(up.mqtt_port, f"bench-load-{i}") for i in range(4)]
    before = up.get("/api/stats")
    peak = rss_kib(up.process.pid)
    sent = 0
    rng = random.Random(1)
    started = time.monotonic()
    payloads = [json.dumps(detection("x", f"LOAD{i % 4:02d}", random_plate(rng))) for i in range(64)]
    tick = 0.01
    while sent < rate * seconds:
        due = min(rate * seconds, int((time.monotonic() - started) * rate))
        while sent < due:
            client = clients[sent % 4]
            camera = f"LOAD{sent % 4:02d}"
            payload = payloads[sent % 64].replace('"message_id": "x"', f'"message_id": "load-{sent}"', 1)
            client.publish(f"lprserver/cameras/{camera}/detection", payload, qos=1)
            sent += 1
        peak = max(peak, rss_kib(up.process.pid))
        time.sleep(tick)
    deadline = time.time() + 60
    stored = 0
    while time.time() < deadline:
        stored = sum(item["count"] for item in up.get("/api/stats")["items"]) - sum(item["count"] for item in before["items"])
        peak = max(peak, rss_kib(up.process.pid))
        if stored >= sent:
            break
        time.sleep(0.5)
    drained = time.monotonic() - started
    for client in clients:
        client.loop_stop()
        client.disconnect()
    return peak, sent, stored, drained


def publish_to_page(up, count, interval):
    os.environ["SE_OFFLINE"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1920,1080"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(up.http)
        WebDriverWait(driver, 15).until(EC.visibility_of_element_located((By.ID, "token-input"))).send_keys(up.token)
        driver.find_element(By.ID, "login-button").click()
        WebDriverWait(driver, 15).until(EC.text_to_be_present_in_element((By.ID, "live-text"), "Live"))
        driver.execute_script("""
            window.__arrivals = {};
            new MutationObserver((mutations) => {
              const now = Date.now();
              for (const m of mutations) for (const n of m.addedNodes)
                if (n.dataset && n.dataset.messageId && !(n.dataset.messageId in window.__arrivals)) window.__arrivals[n.dataset.messageId] = now;
            }).observe(document.getElementById('feed'), { childList: true });
        """)
        client = connect(up.mqtt_port, "bench-page")
        published = {}
        for i in range(count):
            message_id = f"page-{i}-{uuid.uuid4().hex[:8]}"
            payload = json.dumps(detection(message_id, "PAGE01", "PG" + str(1000 + i)))
            published[message_id] = time.time() * 1000
            client.publish("lprserver/cameras/PAGE01/detection", payload, qos=1)
            time.sleep(interval)
        time.sleep(3)
        arrivals = driver.execute_script("return window.__arrivals;")
        client.loop_stop()
        client.disconnect()
    finally:
        driver.quit()
    latencies = [arrivals[m] - t for m, t in published.items() if m in arrivals]
    return latencies, count - len(latencies)


def load_million(up, total, rng):
    """Writes `total` detections straight into lpr.sqlite; returns a few plates that are stored."""
    database = sqlite3.connect(os.path.join(up.data, "lpr.sqlite"))
    database.execute("PRAGMA journal_mode=WAL")
    database.execute("PRAGMA synchronous=OFF")
    start = time.time() - total * 0.05
    known = []
    batch_d, batch_p = [], []
    base = database.execute("SELECT COALESCE(MAX(sequence), 0) FROM detection").fetchone()[0]
    for i in range(total):
        plate = random_plate(rng)
        if i % 100_000 == 0:
            known.append(plate)
        when = start + i * 0.05
        camera = f"CAM{i % 40:02d}"
        message_id = f"m-{i}"
        payload = json.dumps(detection(message_id, camera, plate, when), separators=(",", ":"))
        sequence = base + i + 1
        batch_d.append((sequence, message_id, camera, "CP" + camera[-2:], when, when, 0.95, plate, payload))
        normalized = normalize(plate)
        batch_p.append((sequence, 0, plate, normalized, normalized.translate(FOLD), 0.92, "TH"))
        if len(batch_d) == 20_000:
            database.executemany("INSERT INTO detection (sequence, message_id, camera_id, checkpoint_id, captured_at, received_at, confidence, plates, payload) VALUES (?,?,?,?,?,?,?,?,?)", batch_d)
            database.executemany("INSERT INTO detection_plate (sequence, position, number, normalized, folded, confidence, country) VALUES (?,?,?,?,?,?,?)", batch_p)
            database.commit()
            batch_d, batch_p = [], []
    if batch_d:
        database.executemany("INSERT INTO detection (sequence, message_id, camera_id, checkpoint_id, captured_at, received_at, confidence, plates, payload) VALUES (?,?,?,?,?,?,?,?,?)", batch_d)
        database.executemany("INSERT INTO detection_plate (sequence, position, number, normalized, folded, confidence, country) VALUES (?,?,?,?,?,?,?)", batch_p)
        database.commit()
    database.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    database.close()
    return known


def search_latency(up, queries, repeat):
    times = []
    for i in range(repeat):
        query = queries[i % len(queries)]
        started = time.perf_counter()
        body = up.get("/api/detections?" + query)
        times.append((time.perf_counter() - started) * 1000)
        assert "items" in body
    return times


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--executable", default=os.path.join(ROOT, ".build/release/databus"))
    parser.add_argument("--rate", type=int, default=2000)
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--page", type=int, default=1000)
    parser.add_argument("--stored", type=int, default=1_000_000)
    arguments = parser.parse_args()
    work = tempfile.mkdtemp(prefix="databus-bench-")
    data = os.path.join(work, "data")
    up = Up(arguments.executable, data)
    figures = {}
    up.start()
    try:
        time.sleep(10)
        figures["rss_at_rest_mib"] = round(rss_kib(up.process.pid) / 1024, 1)
        print(f"memory at rest: {figures['rss_at_rest_mib']} MiB RSS", flush=True)

        peak, sent, stored, drained = memory_under_load(up, arguments.rate, arguments.seconds)
        figures.update(rss_under_load_mib=round(peak / 1024, 1), load_sent=sent, load_stored=stored, load_drained_seconds=round(drained, 1))
        print(f"under {arguments.rate} detections/s for {arguments.seconds} s: peak {figures['rss_under_load_mib']} MiB RSS; "
              f"{stored} of {sent} stored after {drained:.1f} s", flush=True)

        latencies, missing = publish_to_page(up, arguments.page, 0.02)
        figures.update(page_p50_ms=round(percentile(latencies, 50), 1), page_p99_ms=round(percentile(latencies, 99), 1),
                       page_max_ms=round(max(latencies), 1), page_missing=missing)
        print(f"publish -> page over {len(latencies)}: p50 {figures['page_p50_ms']} ms, p99 {figures['page_p99_ms']} ms, "
              f"max {figures['page_max_ms']} ms, missing {missing}", flush=True)
        up.stop()

        rng = random.Random(7)
        started = time.time()
        known = load_million(up, arguments.stored, rng)
        print(f"wrote {arguments.stored} detections into lpr.sqlite in {time.time() - started:.0f} s", flush=True)
        up.start()
        total = up.get("/api/stats?since=2000-01-01T00:00:00Z")
        figures["stored_total"] = sum(item["count"] for item in total["items"])
        exact = [f"plate={p}" for p in known]
        prefix = [f"plate={p[:4]}*" for p in known]
        fuzzy = [f"plate={p[:-1]}{'B' if p[-1] != 'B' else 'C'}&fuzzy=true" for p in known]
        camera = [f"camera=CAM{i:02d}&limit=50" for i in range(10)]
        for name, queries in [("exact", exact), ("prefix", prefix), ("fuzzy", fuzzy), ("camera page", camera)]:
            search_latency(up, queries, 20)
            times = search_latency(up, queries, 200)
            figures[f"search_{name.replace(' ', '_')}_p50_ms"] = round(percentile(times, 50), 2)
            figures[f"search_{name.replace(' ', '_')}_p99_ms"] = round(percentile(times, 99), 2)
            print(f"REST search over {figures['stored_total']} detections, {name}: p50 {percentile(times, 50):.2f} ms, "
                  f"p99 {percentile(times, 99):.2f} ms", flush=True)
        figures["rss_with_million_mib"] = round(rss_kib(up.process.pid) / 1024, 1)
        print(json.dumps(figures))
    finally:
        if up.process and up.process.poll() is None:
            up.stop()


if __name__ == "__main__":
    sys.exit(main())
