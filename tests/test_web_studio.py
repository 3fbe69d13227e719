"""The web studio end to end: Debian's Chromium, driven by Playwright, against a real
``zaoxiang serve`` subprocess with a tiny random FLUX model registered by ``--model``.

Screenshots (1280×800 and 390×844, English and Chinese) go to ``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import httpx
import pytest

sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
SMALL = {"width": 64, "height": 64}
# Generous: CI machines have 2 cores, often shared; the tiny model itself takes milliseconds a step.
WAIT_MS = 120_000

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _serve(tmp: Path, args: list[str], ready_path: str = "/readyz") -> Iterator[str]:
    """A real ``zaoxiang serve`` subprocess on a free loopback port, stopped afterwards."""
    port = _free_port()
    env = {**os.environ, "ZAOXIANG_BUILTIN": "false"}
    cmd = [sys.executable, "-m", "zaoxiang", "serve", "--port", str(port), "--data-dir", str(tmp / "data"),
           "--device", "cpu", *args]  # fmt: skip
    log = open(tmp / "serve.log", "wb")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + ready_path, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("zaoxiang serve did not start:\n" + (tmp / "serve.log").read_text())
        time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    from zaoxiang.testing.tiny_models import save_tiny_model

    tmp = tmp_path_factory.mktemp("studio")
    folder = save_tiny_model("flux", tmp / "tiny-flux")
    with _serve(tmp, ["--model", f"tiny={folder}"]) as url:
        yield url


@pytest.fixture(scope="module")
def api(server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server, timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def open_page(browser, server):
    """``open_page(locale=..., width=..., height=...)`` → a fresh page on the studio, ready."""
    contexts = []
    errors: list[str] = []

    def _open(locale: str = "en-US", width: int = 1280, height: int = 800, setup=None):
        ctx = browser.new_context(locale=locale, viewport={"width": width, "height": height})
        contexts.append(ctx)
        if setup is not None:
            setup(ctx)
        page = ctx.new_page()
        page.set_default_timeout(WAIT_MS)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(server + "/")
        page.wait_for_selector("body[data-ready=true]")
        return page

    yield _open
    for ctx in contexts:
        ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def _done(api: httpx.Client, **req) -> dict:
    """A finished job made through the API (the studio must show what others made too)."""
    r = api.post("/v1/jobs", json={**SMALL, "steps": 2, **req}, headers={"Prefer": "wait=60"})
    assert r.status_code == 200 and r.json()["status"] == "succeeded", r.text
    return r.json()


def _shot(page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"studio-{name}.png"), full_page=False)


def _record_job_states(page) -> None:
    """Keep every text a job card shows (cards go away when their job succeeds)."""
    page.evaluate(
        """() => { window.__states = [];
        new MutationObserver(() => document.querySelectorAll('.job-state').forEach(
            (n) => window.__states.push(n.textContent))).observe(
            document.getElementById('active-jobs'), {subtree: true, childList: true, characterData: true}); }"""
    )


def test_generate_streams_progress_then_shows_the_image(open_page, api):
    page = open_page()
    _record_job_states(page)
    page.fill("#prompt", "a red apple 红苹果 progress")
    page.fill("#width", "96")
    page.fill("#height", "64")
    page.fill("#steps", "12")
    page.keyboard.press("Control+Enter")
    page.wait_for_selector(".job-card")
    page.wait_for_function("document.querySelector('#stage-images img')?.naturalWidth === 96", timeout=WAIT_MS)
    states = page.evaluate("window.__states")
    assert any(re.fullmatch(r"Step \d+ of 12", s) for s in states), states
    # the job and its parameters are on the server, and the history lists it
    job = api.get("/v1/jobs", params={"limit": 1}).json()["data"][0]
    assert job["status"] == "succeeded" and job["request"]["prompt"] == "a red apple 红苹果 progress"
    assert job["request"]["steps"] == 12 and job["request"]["width"] == 96 and "seed" not in {k for k, v in job["request"].items() if v is not None}
    page.wait_for_selector(f'.history-item[data-job-id="{job["id"]}"]')
    # the random seed it used is shown, unlocked
    assert page.input_value("#seed") == str(job["resolved"]["seed"]) and not page.is_checked("#seed-lock")


def test_step_previews_are_drawn(open_page, api):
    page = open_page()
    page.fill("#prompt", "preview test")
    page.fill("#width", "256")
    page.fill("#height", "256")
    page.fill("#steps", "40")
    page.click("#generate")
    page.wait_for_selector(".job-card.has-preview .job-preview img[src^='data:image/png;base64,']", timeout=WAIT_MS)
    assert page.evaluate("document.querySelector('.job-preview img').naturalWidth") > 0
    page.click(".job-cancel")  # leave the worker free for the next test
    page.wait_for_selector('.job-card[data-status="cancelled"]', timeout=WAIT_MS)


def test_recall_restores_every_parameter(open_page, api):
    # FLUX refuses a negative prompt: that job fails, and its history entry still recalls it
    failed = api.post("/v1/jobs", json={**SMALL, "prompt": "with a negative", "negative_prompt": "blurry"}).json()
    job = _done(api, prompt="recall me 回忆", width=80, height=64, steps=3, guidance=2.5, seed=1234, n=2)
    page = open_page()
    page.wait_for_selector(f'.history-item[data-job-id="{failed["id"]}"]')
    page.click(f'.history-item[data-job-id="{failed["id"]}"] .recall')
    assert page.input_value("#negative") == "blurry" and page.input_value("#prompt") == "with a negative"
    page.fill("#prompt", "something else")
    page.click(f'.history-item[data-job-id="{job["id"]}"] .recall')
    assert page.input_value("#prompt") == "recall me 回忆"
    assert page.input_value("#negative") == ""
    assert (page.input_value("#width"), page.input_value("#height")) == ("80", "64")
    assert page.input_value("#base") == ""  # 80×64 is no preset: the size select says "Custom"
    assert page.input_value("#steps") == "3" and float(page.input_value("#guidance")) == 2.5
    assert page.input_value("#seed") == "1234" and page.is_checked("#seed-lock")
    assert page.input_value("#n") == "2" and page.input_value("#model") == "tiny"
    assert not page.is_checked("#turbo")
    # the recalled form sends the same request
    with page.expect_request(lambda r: r.url.endswith("/v1/jobs") and r.method == "POST") as req:
        page.keyboard.press("Control+Enter")
    sent = json.loads(req.value.post_data)
    assert {k: sent[k] for k in ("prompt", "negative_prompt", "width", "height", "steps", "guidance", "seed", "n", "model", "turbo")} == {
        "prompt": "recall me 回忆", "negative_prompt": "", "width": 80, "height": 64, "steps": 3,
        "guidance": 2.5, "seed": 1234, "n": 2, "model": "tiny", "turbo": False}  # fmt: skip
    # same seed and parameters: the cache answers with the same images
    page.wait_for_function("document.querySelectorAll('#stage-images img').length === 2", timeout=WAIT_MS)


def test_turbo_toggle_is_sent(open_page, api):
    page = open_page()
    page.fill("#prompt", "turbo")
    page.fill("#width", "64")
    page.fill("#height", "64")
    page.check("#turbo")
    with page.expect_request(lambda r: r.url.endswith("/v1/jobs") and r.method == "POST") as req:
        page.click("#generate")
    assert json.loads(req.value.post_data)["turbo"] is True
    # turbo is for the built-in model: on FLUX the job fails, and the card says why
    page.wait_for_selector('.job-card[data-status="failed"] .job-state >> text=/turbo/')


def test_a_server_without_models_says_how_to_add_one(browser, tmp_path):
    expect = sync_api.expect
    with _serve(tmp_path, [], ready_path="/healthz") as url:
        # the server gives a code beside its English message; the pill says it in the page's language
        assert httpx.get(url + "/readyz").json()["error"]["reason"] == "no_model_installed"
        ctx = browser.new_context(locale="zh-CN", viewport={"width": 1280, "height": 800})
        page = ctx.new_page()
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready=true]")
        notice = page.locator("#no-models")
        assert notice.is_visible() and "--model" in notice.inner_text() and "模型" in notice.inner_text()
        assert page.is_disabled("#generate")
        assert page.inner_text("#server-status") == "未就绪：未安装模型"
        _shot(page, "no-models-1280-zh")
        page.locator("#server-status").screenshot(path=str(ARTIFACTS / "studio-pill-no-models-zh.png"))
        page.select_option("#lang", "en")  # the pill follows a language switch too
        expect(page.locator("#server-status")).to_have_text("Not ready: no model is installed")
        ctx.close()
        ctx = browser.new_context(locale="en-US")
        page = ctx.new_page()
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready=true]")
        assert page.inner_text("#server-status") == "Not ready: no model is installed"
        ctx.close()


def _answer_jobs_with(page, answers: list[tuple[int, dict]]) -> None:
    """POST /v1/jobs answers each of ``answers`` in turn: error bodies the real server would send."""

    def fulfil(route):
        if route.request.method != "POST":
            return route.fallback()
        status, error = answers.pop(0)
        route.fulfill(status=status, json={"error": error}, headers={"Retry-After": "2"} if status == 429 else {})

    page.route("**/v1/jobs", fulfil)


def test_server_errors_are_shown_in_the_page_language(open_page, api):
    expect = sync_api.expect
    page = open_page(locale="zh-CN")
    cases = [
        (422, {"code": "invalid_request", "message": "n=99 is over the limit of 8 images per request", "field": "n"},
         "请检查「张数 (n)」：n=99 is over the limit of 8 images per request"),
        (422, {"code": "invalid_request", "message": "steps: Input should be less than or equal to 200", "field": "steps"},
         "请检查「步数 (steps)」：Input should be less than or equal to 200"),
        (429, {"code": "rate_limited", "message": "rate limit: 60 requests a minute (burst 20); retry in 2.0s"},
         "请求过于频繁，请稍后再试（rate limit: 60 requests a minute (burst 20); retry in 2.0s）"),
        (429, {"code": "queue_full", "message": "the queue is full (1000 jobs waiting; the limit is 1000)"},
         "队列已满，请稍后再试（the queue is full (1000 jobs waiting; the limit is 1000)）"),
        (409, {"code": "cancelled", "message": "cancelled before it started"}, "已取消"),
        (400, {"code": "prompt_blocked", "message": "the prompt was blocked by the content policy (violence)", "field": "prompt"},
         "提示词被内容策略拦截。"),
        (404, {"code": "unknown_model", "message": "unknown model 'nope'; known models: tiny", "field": "model"},
         "找不到模型（unknown model 'nope'; known models: tiny）"),
        # a code the studio does not know: the server's own message, never nothing
        (500, {"code": "kettle_boiled_over", "message": "the kettle boiled over"}, "出错了：the kettle boiled over"),
    ]  # fmt: skip
    _answer_jobs_with(page, [(status, error) for status, error, _ in cases])
    page.fill("#prompt", "errors 错误")
    for _, _, shown in cases:
        page.click("#generate")
        expect(page.locator("#form-error")).to_have_text(shown)
    page.select_option("#lang", "en")
    _answer_jobs_with(page, [(422, cases[0][1])])
    page.click("#generate")
    expect(page.locator("#form-error")).to_have_text("Check Images (n): n=99 is over the limit of 8 images per request")
    page.unroute("**/v1/jobs")
    # a real job error from the real server (FLUX has no turbo adapter): its card, in both languages
    page.select_option("#lang", "zh")
    page.check("#turbo")
    page.click("#generate")
    card = page.locator('.job-card[data-status="failed"] .job-state')
    expect(card).to_have_text(re.compile(r"^失败：请检查「加速 \(turbo\)」：model 'tiny' has no turbo adapter"))
    page.select_option("#lang", "en")
    expect(card).to_have_text(re.compile(r"^Failed: Check Turbo \(turbo\): model 'tiny' has no turbo adapter"))


def test_size_presets_follow_typed_sizes(open_page, api):
    page = open_page()
    assert not page.locator("#no-models").is_visible() and not page.is_disabled("#generate")
    page.select_option("#base", "512")
    assert (page.input_value("#width"), page.input_value("#height")) == ("512", "512")
    page.fill("#width", "96")
    assert page.input_value("#base") == ""  # custom
    page.fill("#width", "256")
    page.fill("#height", "256")
    assert page.input_value("#base") == "256" and page.is_checked('input[name="aspect"][value="1:1"]')


def test_language_follows_the_browser_then_the_choice(open_page, api):
    expect = sync_api.expect
    _done(api, prompt="language", seed=1)
    page = open_page(locale="zh-CN")
    assert page.get_attribute("html", "lang") == "zh-CN"
    assert page.inner_text("#generate span") == "生成"
    page.select_option("#lang", "en")
    expect(page.locator("#generate span")).to_have_text("Generate")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    assert page.get_attribute("#prompt", "placeholder").startswith("Describe")
    page.reload()
    page.wait_for_selector("body[data-ready=true]")
    assert page.inner_text("#generate span") == "Generate"  # remembered over the browser's language
    page.select_option("#lang", "zh")
    expect(page.locator("#tab-gallery")).to_have_text("图库")
    expect(page.locator("#history-list .recall").first).to_have_text("调用参数")  # rendered lists follow too


def test_cancel_a_running_job(open_page, api):
    page = open_page()
    page.fill("#prompt", "a long job to cancel")
    page.fill("#width", "256")
    page.fill("#height", "256")
    page.fill("#steps", "150")
    page.click("#generate")
    page.wait_for_selector(".job-card .job-state >> text=/Step \\d+ of 150/", timeout=WAIT_MS)
    job_id = page.get_attribute(".job-card", "data-job-id")
    page.click(".job-card .job-cancel")
    page.wait_for_selector('.job-card[data-status="cancelled"] >> text=Cancelled', timeout=WAIT_MS)
    assert api.get(f"/v1/jobs/{job_id}").json()["status"] == "cancelled"
    page.wait_for_selector(f'.history-item[data-job-id="{job_id}"] .badge.status-cancelled')


def test_gallery_search_details_and_delete(open_page, api):
    keep = _done(api, prompt="a blue whale 蓝鲸", seed=7)
    gone = _done(api, prompt="a green frog 青蛙", seed=8)
    page = open_page()
    page.click("#tab-gallery")
    page.fill("#gallery-search", "WHALE")
    page.wait_for_function(
        f"""() => {{ const ids = [...document.querySelectorAll('#gallery-grid li')].map((li) => li.dataset.jobId);
        return ids.length > 0 && ids.every((id) => id === '{keep["id"]}'); }}"""
    )
    page.fill("#gallery-search", "青蛙")
    item = page.wait_for_selector(f'#gallery-grid li[data-job-id="{gone["id"]}"] button')
    item.click()
    page.wait_for_selector("#detail-dialog[open]")
    meta = page.inner_text("#detail-meta")
    assert "a green frog 青蛙" in meta and "8" in meta and "64×64" in meta
    href = page.get_attribute("#detail-download", "href")
    assert href.endswith(gone["images"][0]["id"]) and page.get_attribute("#detail-download", "download") == "zaoxiang-8.png"
    page.once("dialog", lambda d: d.accept())
    page.click("#detail-delete")
    page.wait_for_selector("#gallery-empty:not([hidden])")
    ids = [j["id"] for j in api.get("/v1/studio/jobs", params={"limit": 100}).json()["data"]]
    assert gone["id"] not in ids and keep["id"] in ids
    assert page.locator(f'.history-item[data-job-id="{gone["id"]}"]').count() == 0


MASK_COUNT = """() => window.__maskCount = (above) => { const c = document.getElementById('edit-mask');
    const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; let n = 0;
    for (let i = 3; i < d.length; i += 4) if (d[i] > above) n++; return n; }"""
COUNT = "window.__maskCount(0)"  # pixels the mask touches at all
SOLID = "window.__maskCount(254)"  # pixels fully masked (stroke edges are antialiased)


def _open_editor(open_page, api, setup=None):
    job = _done(api, prompt="mask me", seed=3, width=128, height=128)
    page = open_page(setup=setup)
    page.click(f'.history-item[data-job-id="{job["id"]}"] .thumb-button')
    page.click("#detail-edit")
    page.wait_for_selector("#editor:not([hidden])")
    page.evaluate(MASK_COUNT)
    return page


def _paint_across(page) -> None:
    box = page.locator("#edit-mask").bounding_box()
    page.mouse.move(box["x"] + 10, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] - 10, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()


def test_paint_a_mask_and_run_an_inpaint(open_page, api):
    page = _open_editor(open_page, api)
    assert page.get_attribute("#panel-edit", "data-edit-api") == "available"  # this server has POST /v1/edits
    assert page.evaluate(COUNT) == 0 and page.is_enabled("#edit-run")
    _paint_across(page)
    painted, solid = page.evaluate(COUNT), page.evaluate(SOLID)
    assert 0 < solid <= painted < 128 * 128
    page.click("#mask-invert")
    assert page.evaluate(COUNT) == 128 * 128 - solid
    page.click("#mask-invert")
    _shot(page, "edit-1280-en")
    with page.expect_request(lambda r: r.url.endswith("/v1/edits") and r.method == "POST") as req:
        page.click("#edit-run")
    body = json.loads(req.value.post_data)
    assert body["mode"] == "inpaint" and body["prompt"] == "mask me" and body["mask"].startswith("data:image/png;base64,")
    page.wait_for_function("document.querySelector('#stage-images img')?.naturalWidth === 128", timeout=WAIT_MS)


def test_extend_the_canvas_and_run_an_outpaint(open_page, api):
    page = _open_editor(open_page, api)
    page.click("#tool-eraser")
    page.click("#mask-clear")
    assert page.evaluate(COUNT) == 0
    page.fill("#ext-right", "32")
    page.fill("#ext-down", "16")
    page.click("#ext-apply")
    # the canvas grew by exactly that; the new border is masked, the image is not
    assert page.evaluate("[document.getElementById('edit-mask').width, document.getElementById('edit-mask').height]") == [160, 144]
    assert page.evaluate(COUNT) == 160 * 144 - 128 * 128
    with page.expect_request(lambda r: r.url.endswith("/v1/edits") and r.method == "POST") as req:
        page.click("#edit-run")
    body = json.loads(req.value.post_data)
    assert body["mode"] == "outpaint" and body["outpaint"] == {"left": 0, "right": 32, "top": 0, "bottom": 16}
    page.wait_for_function("document.querySelector('#stage-images img')?.naturalWidth === 160", timeout=WAIT_MS)


def test_editor_is_disabled_and_says_why_without_the_editing_api(open_page, api):
    def no_edit_api(ctx):  # a server from before the editing API: its spec has no /v1/edits
        ctx.route("**/openapi.json", lambda route: route.fulfill(json={"openapi": "3.1.0", "paths": {"/v1/jobs": {}}}))

    page = _open_editor(open_page, api, setup=no_edit_api)
    assert page.get_attribute("#panel-edit", "data-edit-api") == "missing"
    assert page.is_disabled("#edit-run") and "editing API" in page.inner_text("#edit-status")
    _paint_across(page)  # painting still works, ready for when the API lands
    assert page.evaluate(COUNT) > 0


@pytest.mark.parametrize("lang", ["en", "zh"])
@pytest.mark.parametrize("size", [(1280, 800), (390, 844)])
def test_screenshots(open_page, api, lang, size):
    _done(api, prompt="a red apple 红苹果", seed=11)
    page = open_page(locale="zh-CN" if lang == "zh" else "en-US", width=size[0], height=size[1])
    first = page.wait_for_selector(".history-item .recall")
    first.click()
    page.click("#generate")
    page.wait_for_selector("#stage-images img", timeout=WAIT_MS)
    page.wait_for_function("[...document.querySelectorAll('#stage-images img')].every((i) => i.complete && i.naturalWidth)")
    # nothing may stick out sideways at phone width
    assert page.evaluate("document.documentElement.scrollWidth") <= size[0]
    _shot(page, f"{size[0]}-{lang}")
    page.click("#tab-gallery")
    page.wait_for_selector("#gallery-grid img")
    _shot(page, f"{size[0]}-{lang}-gallery")


def test_keyboard_only_generate_and_tabs(open_page, api):
    page = open_page()
    page.keyboard.press("Tab")  # skip link first
    assert page.evaluate("document.activeElement.className") == "skip-link"
    page.keyboard.press("Enter")
    page.keyboard.type("keyboard only")
    assert page.evaluate("document.activeElement.id") == "prompt"
    page.click("#tab-history")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-gallery"
    assert page.is_visible("#panel-gallery") and not page.is_visible("#panel-history")
    page.keyboard.press("End")
    assert page.evaluate("document.activeElement.id") == "tab-edit"


def test_empty_prompt_is_refused_in_the_page(open_page):
    page = open_page()
    page.fill("#prompt", "   ")
    page.click("#generate")
    assert page.inner_text("#form-error") == "Write a prompt first."
    assert page.locator(".job-card").count() == 0


def test_a_one_size_model_sets_the_form_to_its_size(browser, tmp_path):
    """The built-in model draws only its own size: the form shows that size, not the 1024 preset."""
    from tests._tiny_builtin import save_tiny_builtin
    from zaoxiang.model.config import preset

    folder = tmp_path / "mini"
    folder.mkdir()
    save_tiny_builtin(folder)
    size = str(preset("tiny").image_size)
    with _serve(tmp_path, ["--model", f"mini={folder}"]) as url:
        assert httpx.get(url + "/v1/models").json()["data"][0]["native_size"] == int(size)
        ctx = browser.new_context(locale="en-US")
        page = ctx.new_page()
        page.goto(url + "/")
        page.wait_for_selector("body[data-ready=true]")
        assert (page.input_value("#width"), page.input_value("#height")) == (size, size)
        assert page.is_checked('input[name="aspect"][value="1:1"]')
        ctx.close()
