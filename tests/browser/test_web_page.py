"""The upload page in a real browser: key in, CSV dropped (straight to S3 through the presigned POST), live
progress to the end, the product table with before/after thumbnails, bytes saved, failures' reasons, the output
CSV downloaded; and a refused CSV's problems listed in plain words."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import requests
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.conftest import KEYS, ROOT, Cloud

SAMPLE = ROOT / "samples" / "products.csv"
STABLE_SCREENSHOT = ROOT / ".local" / "test-output" / "browser.png"


def open_page(browser, cloud: Cloud, key: str) -> None:
    browser.get(f"{cloud.url}/")  # the gateway sends / to the page, /app/
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-ready"))
    assert browser.current_url == f"{cloud.url}/app/"
    field = browser.find_element(By.ID, "api-key")
    field.clear()
    field.send_keys(key)


def upload(browser, path: Path, timeout: float = 240) -> str:
    browser.find_element(By.ID, "file").send_keys(str(path))
    WebDriverWait(browser, timeout, poll_frequency=0.5).until(
        lambda b: b.find_element(By.TAG_NAME, "body").get_attribute("data-finished")
    )
    return browser.find_element(By.TAG_NAME, "body").get_attribute("data-finished")


def text(browser, element_id: str) -> str:
    return browser.find_element(By.ID, element_id).text


def loaded(browser, image) -> int:
    browser.execute_script("arguments[0].scrollIntoView({block: 'center'})", image)
    WebDriverWait(browser, 30).until(lambda b: b.execute_script("return arguments[0].complete", image))
    return browser.execute_script("return arguments[0].naturalWidth", image)


def test_the_sample_from_drop_to_download(browser, cloud: Cloud, image_server, tmp_path: Path, downloads) -> None:
    sample = tmp_path / "products.csv"
    sample.write_text(SAMPLE.read_text().replace("http://127.0.0.1:8765", image_server.url))
    open_page(browser, cloud, KEYS[0])
    assert browser.execute_script("return sessionStorage.getItem('ips.apiKey')") == KEYS[0]
    assert browser.execute_script("return localStorage.length") == 0  # the key is kept for this tab only

    assert upload(browser, sample) == "COMPLETED_WITH_ERRORS"
    assert text(browser, "state") == "Completed with errors"
    assert (text(browser, "done"), text(browser, "succeeded"), text(browser, "failed")) == ("18 / 18", "15", "3")
    assert browser.find_element(By.ID, "bar").get_attribute("value") == "18"
    request_id = text(browser, "request-id").removeprefix("request ")

    rows = browser.find_elements(By.CSS_SELECTOR, "#products tbody tr")
    assert [row.find_element(By.TAG_NAME, "td").text for row in rows] == ["1", "2", "3", "4", "5", "6"]
    assert rows[2].find_elements(By.TAG_NAME, "td")[1].text == "Raindrops Canvas"
    failures = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, ".image.failed .code")]
    assert sorted(failures) == ["ADDRESS_REFUSED", "HTTP_STATUS", "NOT_AN_IMAGE"]
    assert "404" in rows[2].find_element(By.CSS_SELECTOR, ".image.failed").text  # the reason, in words

    after = browser.find_elements(By.CSS_SELECTOR, "img.after")
    before = browser.find_elements(By.CSS_SELECTOR, "img.before")
    assert len(after) == len(before) == 15
    assert all(image.get_attribute("src").startswith(f"{cloud.url}/assets/") for image in after)
    assert all(loaded(browser, image) > 0 for image in after)
    assert all(loaded(browser, image) > 0 for image in before)
    assert len(browser.find_elements(By.CSS_SELECTOR, ".image.done .size")) == 15
    assert text(browser, "saved").endswith(("KB", "MB")) and not text(browser, "saved").startswith("-")

    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(tmp_path / "browser.png"))
    STABLE_SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tmp_path / "browser.png", STABLE_SCREENSHOT)

    browser.find_element(By.ID, "download").click()
    target = downloads / f"output-{request_id}.csv"
    deadline = time.monotonic() + 30
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    status = requests.get(
        f"{cloud.url}/api/v1/status/{request_id}?limit=1", headers={"x-api-key": KEYS[0]}, timeout=30
    ).json()
    assert target.read_bytes() == requests.get(status["outputCsvUrl"], timeout=30).content
    assert not [
        entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE" and "/assets/" in entry["message"]
    ]


def test_a_refused_csv_is_listed_row_by_row(browser, cloud: Cloud, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("S. No.,Product Name,Input Image Urls\n1,Mug,ftp://files/mug.png\n2,,http://127.0.0.1:9/a.jpg\n")
    open_page(browser, cloud, KEYS[0])
    assert upload(browser, bad) == "FAILED"
    assert browser.find_element(By.ID, "problem").is_displayed()
    assert text(browser, "problem-title") == "The CSV has problems"
    items = [item.text for item in browser.find_elements(By.CSS_SELECTOR, "#problem-list li")]
    assert any(item.startswith('Row 2, column "Input Image Urls":') and "INVALID_URL" in item for item in items)
    assert any(item.startswith("Row 3") and "EMPTY_PRODUCT_NAME" in item for item in items)


def test_a_wrong_key_is_said_in_plain_words(browser, cloud: Cloud, tmp_path: Path) -> None:
    csv_file = tmp_path / "one.csv"
    csv_file.write_text("S. No.,Product Name,Input Image Urls\n1,Mug,http://127.0.0.1:9/a.jpg\n")
    open_page(browser, cloud, "not-a-key")
    browser.find_element(By.ID, "file").send_keys(str(csv_file))
    WebDriverWait(browser, 30).until(lambda b: b.find_element(By.ID, "problem").is_displayed())
    assert text(browser, "problem-title") == "The API key was refused"
