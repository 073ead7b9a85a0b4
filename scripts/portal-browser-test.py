#!/usr/bin/env python3
"""Drives Tally's portal in headless Chromium (Selenium, chromedriver) as two people would, checks every page with
axe-core, and writes a screenshot of each page. Run by PortalBrowserTests against a live server.

Usage: portal-browser-test.py BASE_URL MAIL_FOLDER ADMIN_TOKEN AXE_JS SCREENSHOT_FOLDER PHASE
PHASE "signup": a person signs up, confirms, signs out and in, and is granted credits (prints their user id);
PHASE "portal": then (the test having dated the grants two days back) they use every page, and a second person
tries to see them. Exits non-zero, saying what failed, when anything does.
"""
import glob
import json
import os
import re
import sys
import time
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.support.ui import WebDriverWait

BASE, MAIL, ADMIN, AXE, SHOTS, PHASE = sys.argv[1:7]
AXE_SOURCE = open(AXE, encoding="utf-8").read()
failures = []
audited = []


def check(condition, what):
    if not condition:
        failures.append(what)
        print("FAIL:", what, flush=True)
    return condition


def api(method, path, token=None, body=None):
    """A JSON API call: (status, parsed body)."""
    request = urllib.request.Request(BASE + path, method=method, data=None if body is None else json.dumps(body).encode())
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", "Bearer " + token)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            text = answer.read().decode()
            return answer.status, json.loads(text) if text else {}
    except urllib.error.HTTPError as error:
        text = error.read().decode()
        return error.code, json.loads(text) if text.startswith("{") else text


def status_of(path, session):
    """The HTTP status of a portal page fetched with `session` as the cookie (no redirects followed)."""

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    request = urllib.request.Request(BASE + path)
    request.add_header("Cookie", "tally_session=" + session)
    try:
        with opener.open(request, timeout=30) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


def options():
    chrome = webdriver.ChromeOptions()
    chrome.binary_location = "/usr/bin/chromium"
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1600", "--disable-gpu"]:
        chrome.add_argument(argument)
    return chrome


def browser():
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options())


def audit(driver, name):
    """axe-core on the page: no serious or critical violation; a screenshot; no inline script."""
    driver.execute_script(AXE_SOURCE)
    result = driver.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "axe.run(document, {resultTypes: ['violations']}).then(r => done(r.violations.map(v => ({id: v.id, impact: v.impact, nodes: v.nodes.length, help: v.help}))))"
        ".catch(e => done([{id: 'axe-error', impact: 'critical', nodes: 0, help: String(e)}]));")
    bad = [v for v in result if v["impact"] in ("serious", "critical")]
    check(not bad, f"axe-core on {name} ({driver.current_url}): {bad}")
    inline = driver.execute_script("return Array.from(document.scripts).filter(s => !s.src).length")
    check(inline == 0, f"{name} has {inline} inline script(s)")
    handlers = driver.execute_script(
        "return Array.from(document.querySelectorAll('*')).flatMap(e => Array.from(e.attributes).filter(a => a.name.startsWith('on')).map(a => a.name))")
    check(not handlers, f"{name} has inline event handlers: {handlers}")
    driver.save_screenshot(os.path.join(SHOTS, name + ".png"))
    audited.append(name)


def newest_link(kind, address, after):
    """The newest mailed link of `kind` to `address` written after `after` files existed."""
    deadline = time.time() + 20
    while time.time() < deadline:
        for path in sorted(glob.glob(os.path.join(MAIL, "*.eml")), key=os.path.getmtime, reverse=True):
            if path in after:
                continue
            text = open(path, encoding="utf-8", errors="replace").read()
            if address in text:
                found = re.search(r"(https?://\S+/" + kind + r"\?token=\S+)", text)
                if found:
                    return found.group(1)
        time.sleep(0.2)
    raise SystemExit(f"no {kind} mail to {address} in {MAIL}")


def sign_up(driver, email, password, screenshots=False):
    before = set(glob.glob(os.path.join(MAIL, "*.eml")))
    driver.get(BASE + "/portal/signup")
    if screenshots:
        audit(driver, "signup")
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "password").send_keys(password)
    submit(driver, "form button[type=submit]")
    check("Check your email" in driver.page_source, "sign-up answers 'check your email'")
    link = newest_link("verify-email", email, before)
    # The link points at the public URL; the test server listens elsewhere.
    driver.get(BASE + link[link.index("/verify-email"):])
    if screenshots:
        audit(driver, "verify")
    submit(driver, "form button[type=submit]")
    check(driver.current_url.rstrip("/").endswith("/portal"), f"confirming signs in and lands on the portal: {driver.current_url}")
    return driver.get_cookie("tally_session")["value"]


def sign_in(driver, email, password):
    driver.get(BASE + "/portal/login")
    driver.find_element(By.ID, "email").send_keys(email)
    driver.find_element(By.ID, "password").send_keys(password)
    submit(driver, "main form button[type=submit]")
    return driver.get_cookie("tally_session")["value"]


def gone(element):
    """Whether `element`'s page has been replaced. While Chromium swaps documents, chromedriver may answer "Node
    with given id does not belong to the document" instead of a stale reference: that is gone too."""
    def predicate(_driver):
        try:
            element.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as error:
            if "does not belong to the document" in str(error):
                return True
            raise
    return predicate


def submit(driver, selector):
    """Clicks the form's button and waits for the page it leads to."""
    button = driver.find_element(By.CSS_SELECTOR, selector)
    page = driver.find_element(By.TAG_NAME, "html")
    button.click()
    WebDriverWait(driver, 20).until(gone(page))
    WebDriverWait(driver, 20).until(lambda d: d.execute_script("return document.readyState") == "complete")


def text(driver, element_id):
    return driver.find_element(By.ID, element_id).text.strip()


def signup_phase(driver):
    # Sign up, confirm by the mailed link, sign out, sign in.
    session = sign_up(driver, "ada@example.com", "correct horse battery", screenshots=True)
    cookie = driver.get_cookie("tally_session")
    check(cookie["httpOnly"] and cookie.get("sameSite") == "Lax", f"the session cookie is HttpOnly and SameSite=Lax: {cookie}")
    submit(driver, "form.signout button")
    check("/portal/login" in driver.current_url, "signing out goes to the sign-in page")
    audit(driver, "login")
    check(status_of("/portal", session) == 303, "the signed-out session no longer opens the portal")
    session = sign_in(driver, "ada@example.com", "correct horse battery")
    check(driver.current_url.rstrip("/").endswith("/portal"), "signing in lands on the portal")
    # Credits arrive: an admin grants (the test then dates them two days back, as history).
    status, me = api("GET", "/v1/me", session)
    user_id = me["user"]["id"] if "user" in me else me["id"]
    expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 5 * 86400))
    status, _ = api("POST", "/v1/admin/grants", ADMIN, {"user_id": user_id, "amount": 1000, "description": "welcome", "expires_at": expires})
    check(status == 201, f"the admin's grant: {status}")
    status, _ = api("POST", "/v1/admin/grants", ADMIN, {"user_id": user_id, "amount": 500, "description": "plan"})
    check(status == 201, f"the admin's second grant: {status}")
    print(json.dumps({"user_id": user_id}), flush=True)


def portal_phase(driver):
    session = sign_in(driver, "ada@example.com", "correct horse battery")
    driver.get(BASE + "/portal")
    status, balance = api("GET", "/v1/credits/balance", session)
    check(text(driver, "balance") == f"{balance['balance']:,}" and text(driver, "available") == f"{balance['available']:,}",
          f"the page's balance {text(driver, 'balance')} is the API's {balance['balance']}")
    points_before = len(driver.find_elements(By.CSS_SELECTOR, "#burndown-chart circle.point"))
    projection_before = text(driver, "runs-out")
    check("within 7 days" in driver.page_source, "the grant expiring in five days is marked")
    audit(driver, "balance")

    # A key, shown once: a reload does not show it again.
    driver.get(BASE + "/portal/keys")
    driver.find_element(By.ID, "key-name").send_keys("browser key")
    submit(driver, "main form.card button[type=submit]")
    key = driver.find_element(By.ID, "new-key").get_attribute("value").strip()
    check(key.startswith("tly_"), f"the new key is shown: {key[:8]}…")
    audit(driver, "key-created")
    driver.refresh()
    check(not driver.find_elements(By.ID, "new-key") and key not in driver.page_source, "a reload does not show the key again")
    audit(driver, "keys")

    # Spending with it: the chart gains a point (the projected zero) and the projection moves.
    for _ in range(3):
        status, _ = api("POST", "/v1/credits/consume", key, {"amount": 30, "description": "browser test"})
        check(status == 200, f"a spend with the new key: {status}")
    driver.get(BASE + "/portal")
    status, balance = api("GET", "/v1/credits/balance", session)
    check(text(driver, "balance") == f"{balance['balance']:,}", f"after spending the page shows {text(driver, 'balance')}, the API {balance['balance']}")
    points_after = len(driver.find_elements(By.CSS_SELECTOR, "#burndown-chart circle.point"))
    projection_after = text(driver, "runs-out")
    check(points_after == points_before + 1, f"the chart gains a point: {points_before} → {points_after}")
    check(projection_after != projection_before and "run out on" in projection_after, f"the projection moves: {projection_before!r} → {projection_after!r}")
    check(driver.find_elements(By.CSS_SELECTOR, "#burndown-chart polyline.projected"), "the dashed projection is drawn")
    titles = [t.get_attribute("textContent") for t in driver.find_elements(By.CSS_SELECTOR, "#burndown-chart circle.point title")]
    check(any("spent 90" in t for t in titles), f"today's point says what was spent: {titles[-1:]}")
    check(driver.find_elements(By.CSS_SELECTOR, "#key-chart rect"), "the spend per key chart has bars")
    check("browser key" in driver.find_element(By.ID, "key-chart").get_attribute("textContent"), "the key is named in the chart")
    audit(driver, "balance-after-spending")

    # Revoke it, after a confirmation.
    driver.get(BASE + "/portal/keys")
    submit(driver, "#keys a[href$='/revoke']")
    audit(driver, "revoke-confirm")
    submit(driver, "button.danger")
    check("revoked" in driver.find_element(By.ID, "keys").text, "the key is listed as revoked")
    status, _ = api("POST", "/v1/credits/consume", key, {"amount": 1})
    check(status == 401, f"the revoked key is refused at once: {status}")

    # The ledger, filtered, and as CSV.
    driver.get(BASE + "/portal/ledger?kind=consume")
    rows = driver.find_elements(By.CSS_SELECTOR, "#ledger tbody tr")
    check(len(rows) == 3, f"the ledger filtered to spends has the 3 spends: {len(rows)}")
    audit(driver, "ledger")
    check(status_of("/portal/ledger.csv?kind=consume", session) == 200, "the CSV downloads")

    # A team, a member invited.
    driver.get(BASE + "/portal/teams")
    driver.find_element(By.ID, "team-name").send_keys("Analytical Engines")
    submit(driver, "main form.card button[type=submit]")
    team_url = driver.current_url
    team_id = team_url.rstrip("/").split("/")[-1]
    driver.find_element(By.ID, "invite-email").send_keys("grace@example.com")
    submit(driver, "main form.card button[type=submit]")
    check("grace@example.com" in driver.find_element(By.ID, "pending-list").text, "the invitation is pending")
    audit(driver, "team")
    driver.get(BASE + "/portal/teams")
    audit(driver, "teams")
    driver.get(BASE + "/portal/alerts")
    driver.find_element(By.ID, "alert-threshold").send_keys("100")
    submit(driver, "main form.card button[type=submit]")
    check("100" in driver.find_element(By.ID, "alerts").text, "the alert is listed")
    audit(driver, "alerts")

    # As an admin (the test made Ada one, with an endpoint and a delivery): the webhooks, and a redelivery.
    driver.get(BASE + "/portal/webhooks")
    check("203.0.113.7" in driver.page_source and "balance.depleted" in driver.page_source, "the endpoint and its delivery are listed")
    audit(driver, "webhooks")
    submit(driver, "main form.inline button")
    check(driver.current_url.endswith("/portal/webhooks"), f"redelivering comes back to the webhooks: {driver.current_url}")

    # A forgotten password: the mailed link sets a new one, and every session ends.
    submit(driver, "form.signout button")
    check("/portal/login" in driver.current_url, "signed out")
    before = set(glob.glob(os.path.join(MAIL, "*.eml")))
    driver.get(BASE + "/portal/forgot")
    audit(driver, "forgot")
    driver.find_element(By.ID, "email").send_keys("ada@example.com")
    submit(driver, "main form button[type=submit]")
    check("on its way" in driver.page_source, "the reset answers 'on its way'")
    link = newest_link("reset-password", "ada@example.com", before)
    driver.get(BASE + link[link.index("/reset-password"):])
    audit(driver, "reset")
    driver.find_element(By.ID, "new-password").send_keys("a brand new password")
    submit(driver, "main form button[type=submit]")
    check("Your password is set" in driver.page_source, "the new password is set")
    check(status_of("/portal", session) == 303, "the reset ended the old session")
    sign_in(driver, "ada@example.com", "a brand new password")
    check(driver.current_url.rstrip("/").endswith("/portal"), "signing in with the new password works")
    submit(driver, "form.signout button")

    # A second person sees none of the first's pages.
    driver.delete_all_cookies()
    other = sign_up(driver, "mallory@example.com", "another password")
    for path in [f"/portal/accounts/{team_id}", f"/portal/teams/{team_id}", f"/portal/ledger?account={team_id}", f"/portal/alerts?account={team_id}"]:
        code = status_of(path, other)
        check(code in (403, 404), f"{path} for another user: {code}")
    driver.get(BASE + f"/portal/teams/{team_id}")
    check("Analytical Engines" not in driver.page_source, "the other user's page names nothing of the team")
    audit(driver, "not-found")
    check(status_of("/portal/webhooks", other) == 403, "a non-admin does not see the webhooks")


def main():
    os.makedirs(SHOTS, exist_ok=True)
    driver = browser()
    try:
        signup_phase(driver) if PHASE == "signup" else portal_phase(driver)
    finally:
        driver.quit()
    print(json.dumps({"audited": audited, "failures": failures}), flush=True)
    sys.exit(1 if failures else 0)


main()
