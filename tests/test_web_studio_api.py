"""The studio's own endpoints (``routes_studio``): prompt search over history and gallery, and
deleting a finished job (the real delete). Real app, real worker, the fake colour model."""

from __future__ import annotations

import sqlite3

import httpx
import pytest

from tests.service_support import fake_runner, live_server, make_settings, wait_status
from zaoxiang.api.routes_studio import LEGACY_DB
from zaoxiang.service.auth import ANONYMOUS


@pytest.fixture
def server(tmp_path):
    with live_server(make_settings(tmp_path), fake_runner(tmp_path, step_delay=0.02, steps=3)) as live:
        yield live


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def _done(client: httpx.Client, prompt: str, **kw) -> dict:
    job = client.post("/v1/jobs", json={"prompt": prompt, **kw}, headers={"Prefer": "wait=20"}).json()
    assert job["status"] == "succeeded", job
    return job


def _ids(client: httpx.Client, **params) -> list[str]:
    r = client.get("/v1/studio/jobs", params=params)
    assert r.status_code == 200, r.text
    return [j["id"] for j in r.json()["data"]]


def test_search_matches_every_word_in_any_case_newest_first(client):
    whale = _done(client, "A Blue Whale 蓝鲸")
    frog = _done(client, "a green frog 青蛙")
    blue_frog = _done(client, "a blue frog")
    assert _ids(client, q="blue") == [blue_frog["id"], whale["id"]]
    assert _ids(client, q="FROG blue") == [blue_frog["id"]]
    assert _ids(client, q="青蛙") == [frog["id"]]
    assert _ids(client, q="  ") == [blue_frog["id"], frog["id"], whale["id"]]
    assert _ids(client, q="zebra") == []


def test_status_filter_and_cursor_pages_do_not_skip_or_repeat(client):
    made = [_done(client, f"cat number {i}")["id"] for i in range(5)]
    _done(client, "a dog")
    first = client.get("/v1/studio/jobs", params={"q": "cat", "limit": 2, "status": "succeeded"}).json()
    assert [j["id"] for j in first["data"]] == made[::-1][:2] and first["next_cursor"]
    rest = client.get("/v1/studio/jobs", params={"q": "cat", "limit": 10, "cursor": first["next_cursor"]}).json()
    assert [j["id"] for j in rest["data"]] == made[::-1][2:] and rest["next_cursor"] is None
    assert _ids(client, status="failed") == []


def test_deleted_jobs_leave_history_gallery_job_store_and_images(client):
    keep = _done(client, "keep me")
    gone = _done(client, "remove me")
    r = client.delete(f"/v1/studio/jobs/{gone['id']}")
    assert r.status_code == 204 and r.content == b""
    assert _ids(client) == [keep["id"]]
    assert _ids(client, q="remove") == []
    # the real delete: the native API no longer knows the job, its image is gone, twice is 404
    assert client.get(f"/v1/jobs/{gone['id']}").status_code == 404
    assert client.get(gone["images"][0]["url"]).status_code == 404
    assert client.get(keep["images"][0]["url"]).status_code == 200
    assert client.delete(f"/v1/studio/jobs/{gone['id']}").status_code == 404


def test_removals_of_an_older_studio_become_real_deletes(tmp_path):
    settings = make_settings(tmp_path)
    with live_server(settings, fake_runner(tmp_path, steps=1)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        hidden = _done(c, "hidden before the upgrade")
        kept = _done(c, "kept")
    # the file an older studio left: its "removed" table lists jobs it only hid
    conn = sqlite3.connect(str(tmp_path / LEGACY_DB))
    conn.execute("CREATE TABLE removed (owner TEXT NOT NULL, job_id TEXT NOT NULL, removed_at REAL NOT NULL, "
                 "PRIMARY KEY (owner, job_id))")  # fmt: skip
    conn.executemany("INSERT INTO removed VALUES (?, ?, 0)", [(ANONYMOUS, hidden["id"]), (ANONYMOUS, "job_0123456789abcdef01234567")])
    conn.commit()
    conn.close()
    with live_server(settings, fake_runner(tmp_path, steps=1)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        assert _ids(c) == [kept["id"]]
        assert c.get(f"/v1/jobs/{hidden['id']}").status_code == 404
        assert c.get(f"/v1/images/{hidden['images'][0]['id']}").status_code == 404
        assert not (tmp_path / LEGACY_DB).exists()


def test_unfinished_unknown_and_malformed_jobs_are_refused(tmp_path):
    with live_server(make_settings(tmp_path), fake_runner(tmp_path, step_delay=0.5, steps=40)) as live, httpx.Client(base_url=live.url, timeout=30) as c:
        job = c.post("/v1/jobs", json={"prompt": "slow"}).json()
        wait_status(c, job["id"], {"running"})
        r = c.delete(f"/v1/studio/jobs/{job['id']}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "job_not_finished"
        assert c.delete(f"/v1/jobs/{job['id']}").json()["status"] == "cancelled"
        assert c.delete(f"/v1/studio/jobs/{job['id']}").status_code == 204
        r = c.delete("/v1/studio/jobs/job_0123456789abcdef01234567")
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found"
        assert c.delete("/v1/studio/jobs/not-a-job").status_code == 422
        r = c.get("/v1/studio/jobs", params={"limit": 0})
        assert r.status_code == 422 and r.json()["error"]["field"] == "limit"
        r = c.get("/v1/studio/jobs", params={"q": "x" * 201})
        assert r.status_code == 422 and r.json()["error"]["field"] == "q"


def test_other_keys_neither_see_nor_delete_my_jobs(tmp_path):
    settings = make_settings(tmp_path, auth="required")
    with live_server(settings, fake_runner(tmp_path, steps=1)) as live:
        keys = live.app.state.service.auth.keys
        _, mine = keys.create("me")
        _, theirs = keys.create("them")
        with httpx.Client(base_url=live.url, timeout=30, headers={"Authorization": f"Bearer {mine}"}) as me, \
                httpx.Client(base_url=live.url, timeout=30, headers={"Authorization": f"Bearer {theirs}"}) as them:  # fmt: skip
            job = _done(me, "private")
            assert _ids(them) == [] and _ids(me) == [job["id"]]
            assert them.delete(f"/v1/studio/jobs/{job['id']}").status_code == 404
            assert _ids(me) == [job["id"]]
            assert httpx.get(live.url + "/v1/studio/jobs").status_code == 401
