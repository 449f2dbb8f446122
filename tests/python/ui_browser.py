"""Drives the web UI in headless Chromium (Debian's chromium and chromedriver,
through Selenium) the way a new user would, and checks what the page shows.
tests/it/ui.rs starts the server with a measurement `cpu` in database `ui`
and runs this script; the screenshots of each page are kept as test
artefacts in the directory given.

usage: ui_browser.py URL SCREENSHOT_DIR [USER PASSWORD]

Prints one line per check; exits non-zero (with the reason) on the first
that fails.
"""

import os
import sys
import tempfile
import time

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

URL, SHOTS = sys.argv[1], sys.argv[2]
CREDENTIALS = sys.argv[3:5] if len(sys.argv) >= 5 else None


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    # Headless, and nothing that reaches past loopback (this machine's
    # network is closed: Chromium's background connections would fail).
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1400,900",
        f"--user-data-dir={tempfile.mkdtemp(prefix='hourglass-ui-')}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def wait(description, condition, timeout=20.0):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            value = condition()
            if value:
                return value
        except Exception as error:  # the page is still changing
            last = error
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {description} (last error: {last})")


def shot(driver, name):
    path = os.path.join(SHOTS, f"{name}.png")
    driver.save_screenshot(path)
    print(f"screenshot {path}")


def text(driver, element_id):
    return driver.find_element(By.ID, element_id).text


def set_query(driver, sql):
    driver.execute_script("document.querySelector('.CodeMirror').CodeMirror.setValue(arguments[0])", sql)


def query_text(driver):
    return driver.execute_script("return document.querySelector('.CodeMirror').CodeMirror.getValue()")


def grid(driver):
    """The grid as (header, rows of cell texts)."""
    header = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#grid th")]
    rows = [
        [td.text for td in tr.find_elements(By.TAG_NAME, "td")]
        for tr in driver.find_elements(By.CSS_SELECTOR, "#grid tbody tr")
    ]
    return header, rows


def check(description, ok, detail=""):
    if not ok:
        raise AssertionError(f"{description}: {detail}")
    print(f"ok {description}")


def main():
    os.makedirs(SHOTS, exist_ok=True)
    driver = browser()
    try:
        driver.get(URL)
        if CREDENTIALS:
            wait("the login form", lambda: driver.find_element(By.ID, "login").is_displayed())
            shot(driver, "0-login")
            driver.find_element(By.ID, "login-user").send_keys(CREDENTIALS[0])
            driver.find_element(By.ID, "login-password").send_keys("wrong")
            driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
            wait("a refusal", lambda: "refused" in text(driver, "login-error"))
            check("wrong credentials are refused on the form", True)
            password = driver.find_element(By.ID, "login-password")
            password.clear()
            password.send_keys(CREDENTIALS[1])
            driver.find_element(By.CSS_SELECTOR, "#login-form button").click()
            wait("the form to close", lambda: not driver.find_element(By.ID, "login").is_displayed())
            check("the login form lets the right credentials in", True)

        # The browser: databases, then the tables of the one chosen.
        wait("database ui in the list", lambda: "ui" in [
            o.text for o in driver.find_elements(By.CSS_SELECTOR, "#database option")])
        driver.execute_script(
            "const s = document.getElementById('database'); s.value = 'ui'; s.dispatchEvent(new Event('change'))")
        item = wait("table cpu", lambda: driver.find_element(By.CSS_SELECTOR, "#tables li[data-table='cpu']"))
        check("the table list shows cpu with its rows", "cpu" in item.text and "240" in item.text, item.text)
        item.click()
        detail = wait("the table's detail", lambda: text(driver, "table-detail"))
        check("the detail names tags and fields", "host" in detail and "tag" in detail and "usage" in detail
              and "field" in detail, detail)
        check("the detail has the catalog's counts", "240 rows" in detail and "hour partitions" in detail, detail)
        shot(driver, "1-tables")

        # A query, run with Ctrl-Enter; the grid pages.
        set_query(driver, "SELECT time, host, usage FROM cpu ORDER BY time, host")
        driver.find_element(By.CSS_SELECTOR, ".CodeMirror textarea").send_keys(Keys.CONTROL, Keys.ENTER)
        wait("the first page", lambda: "rows 1-100 of more" in text(driver, "status"))
        header, rows = grid(driver)
        check("the grid has the columns in order", header == ["time", "host", "usage"], header)
        check("the grid shows one page", len(rows) == 100, len(rows))
        check("the first row is the earliest", rows[0][0].startswith("2024-01-01T00:00:00") and rows[0][1] == "a",
              rows[0])
        driver.find_element(By.ID, "next-page").click()
        wait("the second page", lambda: "rows 101-200" in text(driver, "status"))
        check("the second page starts at row 101", grid(driver)[1][0][0].startswith("2024-01-01T00:50:00"),
              grid(driver)[1][0])
        driver.find_element(By.ID, "next-page").click()
        wait("the last page", lambda: "rows 201-240" in text(driver, "status"))
        check("the last page ends the result", not driver.find_element(By.ID, "next-page").is_enabled())
        shot(driver, "2-grid")

        # History keeps it.
        options = [o.get_attribute("value") for o in driver.find_elements(By.CSS_SELECTOR, "#history option")]
        check("the history has the query", "SELECT time, host, usage FROM cpu ORDER BY time, host" in options,
              options)

        # An error is shown, not thrown.
        set_query(driver, "SELECT nope FROM cpu")
        driver.find_element(By.ID, "run").click()
        wait("the error", lambda: "nope" in text(driver, "status"))
        check("a bad query shows the server's error", "error" in driver.find_element(
            By.ID, "status").get_attribute("class"))

        # The chart: one line per host; a drag zooms and rewrites the time filter.
        set_query(driver, "SELECT date_bin(INTERVAL '10 minutes', time) AS time, host, avg(usage) AS usage "
                          "FROM cpu WHERE time >= '2024-01-01T00:00:00Z' AND time < '2024-01-01T02:00:00Z' "
                          "GROUP BY 1, 2 ORDER BY 1, 2")
        driver.find_element(By.ID, "run").click()
        wait("the aggregate", lambda: "rows 1-24" in text(driver, "status"))
        driver.find_element(By.ID, "show-chart").click()
        wait("the chart", lambda: driver.find_element(By.CSS_SELECTOR, "#chart canvas"))
        legend = text(driver, "chart")
        check("the chart has a line per host", "host=a" in legend and "host=b" in legend, legend)
        shot(driver, "3-chart")
        overlay = driver.find_element(By.CSS_SELECTOR, "#chart .u-over")
        width = overlay.size["width"]
        ActionChains(driver).move_to_element_with_offset(overlay, -width // 4, 0).click_and_hold() \
            .move_by_offset(width // 4, 0).release().perform()
        wait("the zoomed query", lambda: "'2024-01-01T00:00:00Z'" not in query_text(driver))
        zoomed = query_text(driver)
        check("the zoom rewrote both time bounds", zoomed.count("time >= '2024-01-01T0") == 1
              and zoomed.count("time < '2024-01-01T0") == 1, zoomed)
        wait("the zoomed result", lambda: "rows 1-" in text(driver, "status")
             and "rows 1-24 " not in text(driver, "status"))
        check("the zoomed result has fewer rows", True, text(driver, "status"))
        shot(driver, "4-zoomed")
        canvas = driver.find_element(By.CSS_SELECTOR, "#chart canvas")
        check("the zoomed chart is drawn", canvas.size["width"] > 100, canvas.size)

        # Export: the same statement as CSV, fetched with the credentials.
        csv = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            runSql(ui.shown, 'csv').then((blob) => blob.text()).then(done, (e) => done('error ' + e.message));
        """)
        check("the CSV export has a header and rows", csv.startswith("time,host,usage") and csv.count("\n") > 2,
              csv[:200])
        parquet = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            runSql(ui.shown, 'parquet').then((blob) => blob.arrayBuffer())
              .then((b) => { const a = new Uint8Array(b); done([a.length, String.fromCharCode(...a.slice(0, 4)),
                                                           String.fromCharCode(...a.slice(a.length - 4))]); },
                    (e) => done(['error ' + e.message]));
        """)
        check("the Parquet export is a Parquet file", parquet[1:] == ["PAR1", "PAR1"] and parquet[0] > 100, parquet)

        # The server page.
        driver.find_element(By.ID, "tab-server").click()
        wait("the cards", lambda: "Rows written" in text(driver, "server-cards"))
        wait("the levels", lambda: len(driver.find_elements(By.CSS_SELECTOR, "#server-levels tr")) > 1)
        check("the server page shows the state and files per level", "ready" in text(driver, "server-health"),
              text(driver, "server-health"))
        shot(driver, "5-server")
    finally:
        driver.quit()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        print(f"FAILED: {error}")
        sys.exit(1)
