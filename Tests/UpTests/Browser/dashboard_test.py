#!/usr/bin/env python3
"""Drives the dashboard of a running `databus up` in real headless Chromium (selenium).

Logs in with the token, adds a watch-list entry through the page, publishes detections with
mosquitto_pub and waits for them in the feed (each within 2 s), checks that the watch-listed
plate is highlighted and its alert shows, sends a control command from a camera card and
waits for the camera's answer, publishes a configuration from the camera's dialog and waits
for the camera to report it applied, and saves screenshots at wall and phone sizes in both themes.
Prints one JSON line of what it measured; exits non-zero on the first failure.
"""
import argparse
import json
import os
import subprocess
import sys
import time
import uuid

os.environ.setdefault("SE_OFFLINE", "true")
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402


def detection(message_id, camera, plate):
    return {
        "message_id": message_id,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "camera_id": camera,
        "checkpoint_id": "CP-GATE-1",
        "detection_data": {
            "vehicles_count": 1, "plates_count": 1, "processing_time_ms": 120, "confidence_score": 0.94, "detection_type": "lpr",
            "vehicles": [{"vehicle_index": 0, "bbox": [100, 100, 200, 200], "confidence": 0.94, "vehicle_class": "car",
                          "vehicle_type": "sedan", "color": "white", "brand": "Toyota", "model": "Camry", "year": 2020}],
            "plates": [{"plate_index": 0, "plate_number": plate, "bbox": [150, 120, 180, 140], "confidence": 0.92,
                        "plate_type": "standard", "country": "TH", "province": "Bangkok", "is_valid": True}],
        },
        "metadata": {"weather": "clear", "lighting": "daylight"},
    }


def publish(port, camera, payload):
    subprocess.run(
        ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-q", "1",
         "-t", f"lprserver/cameras/{camera}/detection", "-m", json.dumps(payload)],
        check=True, timeout=10,
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--token", required=True)
    parser.add_argument("--mqtt-port", type=int, required=True)
    parser.add_argument("--control-camera", required=True)
    parser.add_argument("--screenshots", required=True)
    arguments = parser.parse_args()
    os.makedirs(arguments.screenshots, exist_ok=True)

    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1920,1080",
                 "--force-device-scale-factor=1", "--hide-scrollbars"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    figures = {}
    try:
        wait = WebDriverWait(driver, 15)
        driver.get(arguments.url + "?theme=dark")
        token_input = wait.until(EC.visibility_of_element_located((By.ID, "token-input")))
        driver.save_screenshot(os.path.join(arguments.screenshots, "login.png"))
        token_input.send_keys(arguments.token)
        driver.find_element(By.ID, "login-button").click()
        wait.until(EC.visibility_of_element_located((By.ID, "app")))
        wait.until(EC.text_to_be_present_in_element((By.ID, "live-text"), "Live"))

        # A detection published with mosquitto_pub shows in the feed within 2 s.
        plain_id = "browser-" + uuid.uuid4().hex
        started = time.monotonic()
        publish(arguments.mqtt_port, "CAM-GATE", detection(plain_id, "CAM-GATE", "PLAIN01"))
        WebDriverWait(driver, 2, poll_frequency=0.02).until(
            EC.presence_of_element_located((By.CSS_SELECTOR, f'.detection[data-message-id="{plain_id}"]')))
        figures["feed_seconds"] = round(time.monotonic() - started, 3)

        # A watch-list entry added through the page; the next detection of that plate is highlighted and alerted.
        driver.find_element(By.CSS_SELECTOR, '.tab[data-view="watchlist"]').click()
        driver.find_element(By.ID, "watch-plate").send_keys("KX19ABC")
        driver.find_element(By.ID, "watch-reason").send_keys("reported stolen")
        driver.find_element(By.ID, "watch-add").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "watch-entries"), "KX19ABC"))
        driver.save_screenshot(os.path.join(arguments.screenshots, "watchlist.png"))
        driver.find_element(By.CSS_SELECTOR, '.tab[data-view="live"]').click()
        hit_id = "browser-hit-" + uuid.uuid4().hex
        started = time.monotonic()
        publish(arguments.mqtt_port, "CAM-GATE", detection(hit_id, "CAM-GATE", "KX-19-ABC"))
        WebDriverWait(driver, 2, poll_frequency=0.02).until(
            EC.presence_of_element_located((By.CSS_SELECTOR, f'.detection.hit[data-message-id="{hit_id}"]')))
        figures["hit_seconds"] = round(time.monotonic() - started, 3)
        badge = driver.find_element(By.CSS_SELECTOR, f'.detection[data-message-id="{hit_id}"] .hit-badge')
        assert badge.text == "WATCH-LIST", badge.text
        WebDriverWait(driver, 2, poll_frequency=0.02).until(
            lambda d: any("KX19ABC" in a.text for a in d.find_elements(By.CSS_SELECTOR, '#alerts .alert[data-kind="watchlist_hit"]')))
        hits = driver.find_element(By.ID, "figure-hits").text
        assert int(hits) >= 1, hits

        # A control command from a camera card reaches the camera; its answer shows on the card.
        card = f'.camera[data-camera="{arguments.control_camera}"]'
        wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, card + " .restart")))
        driver.find_element(By.CSS_SELECTOR, card + " .restart").click()
        WebDriverWait(driver, 12).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, card + " .camera-answer"), "restart_camera: ok"))
        figures["control_answer"] = driver.find_element(By.CSS_SELECTOR, card + " .camera-answer").text

        # Per-camera configuration: published from the dialog, applied and reported back by the camera.
        driver.find_element(By.CSS_SELECTOR, card + " .configure").click()
        wait.until(EC.visibility_of_element_located((By.ID, "config-data")))
        driver.execute_script("document.getElementById('config-data').value = arguments[0];",
                              json.dumps({"confidence_threshold": 0.7, "detection_interval": 800}))
        driver.find_element(By.ID, "config-save").click()
        wait.until(EC.invisibility_of_element_located((By.ID, "config-dialog")))
        def reported(d):
            d.find_element(By.CSS_SELECTOR, card + " .configure").click()
            text = d.find_element(By.ID, "config-reported").text
            d.find_element(By.ID, "config-cancel").click()
            return "0.7" in text and "800" in text
        WebDriverWait(driver, 10, poll_frequency=0.3).until(reported)

        # Plate search, fuzzy: the OCR-confused plate finds the watch-listed one.
        driver.find_element(By.CSS_SELECTOR, '.tab[data-view="search"]').click()
        driver.find_element(By.ID, "search-plate").send_keys("KX19A8C")
        driver.find_element(By.ID, "search-fuzzy").click()
        driver.find_element(By.CSS_SELECTOR, "#search-form button[type=submit]").click()
        wait.until(EC.text_to_be_present_in_element((By.ID, "search-results"), "KX-19-ABC"))
        driver.save_screenshot(os.path.join(arguments.screenshots, "search.png"))
        driver.find_element(By.CSS_SELECTOR, '.tab[data-view="live"]').click()

        # Screenshots: a wall screen in both themes, a phone in both themes.
        time.sleep(1.0)
        driver.save_screenshot(os.path.join(arguments.screenshots, "wall-dark.png"))
        driver.find_element(By.ID, "theme-toggle").click()
        time.sleep(0.5)
        driver.save_screenshot(os.path.join(arguments.screenshots, "wall-light.png"))
        driver.set_window_size(1280, 800)
        time.sleep(0.5)
        driver.save_screenshot(os.path.join(arguments.screenshots, "laptop-light.png"))
        driver.set_window_size(390, 844)
        time.sleep(0.5)
        driver.save_screenshot(os.path.join(arguments.screenshots, "phone-light.png"))
        driver.find_element(By.ID, "theme-toggle").click()
        time.sleep(0.5)
        driver.save_screenshot(os.path.join(arguments.screenshots, "phone-dark.png"))
        overflow = driver.execute_script("return document.documentElement.scrollWidth - document.documentElement.clientWidth")
        assert overflow <= 1, f"the phone layout scrolls sideways by {overflow}px"
        errors = [entry for entry in driver.get_log("browser") if entry.get("level") == "SEVERE"]
        assert not errors, f"errors in the browser console: {errors}"
        print(json.dumps(figures))
    except Exception:
        driver.save_screenshot(os.path.join(arguments.screenshots, "failure.png"))
        raise
    finally:
        driver.quit()


if __name__ == "__main__":
    sys.exit(main())
