"""GET /readyz: 200 when the server takes jobs, else 503 ``not_ready`` with a stable ``reason``
code beside the English message (the studio translates the code; API clients read either)."""

from __future__ import annotations

import sqlite3

import httpx

from tests.service_support import fake_runner, live_server, make_settings


def test_ready_with_a_model(tmp_path):
    with live_server(make_settings(tmp_path), fake_runner(tmp_path)) as live:
        r = httpx.get(live.url + "/readyz")
        assert r.status_code == 200 and r.json() == {"status": "ready"}


def test_no_model_installed_is_a_code_and_a_message(tmp_path):
    with live_server(make_settings(tmp_path), fake_runner(tmp_path, names=())) as live:
        r = httpx.get(live.url + "/readyz")
        assert r.status_code == 503
        assert r.json() == {"error": {"code": "not_ready", "reason": "no_model_installed", "message": "no model is installed"}}


def test_database_failure_is_its_own_code(tmp_path, monkeypatch):
    with live_server(make_settings(tmp_path), fake_runner(tmp_path)) as live:
        queue = live.app.state.service.queue

        def broken() -> int:
            raise sqlite3.OperationalError("disk I/O error")

        monkeypatch.setattr(queue, "depth", broken)
        err = httpx.get(live.url + "/readyz").json()["error"]
        assert err["reason"] == "database_unavailable" and "OperationalError" in err["message"]


def test_the_spec_documents_the_reason(tmp_path):
    with live_server(make_settings(tmp_path), fake_runner(tmp_path)) as live:
        spec = httpx.get(live.url + "/openapi.json").json()
        ref = spec["paths"]["/readyz"]["get"]["responses"]["503"]["content"]["application/json"]["schema"]["$ref"]
        body = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        detail = spec["components"]["schemas"][body["properties"]["error"]["$ref"].rsplit("/", 1)[-1]]
        assert "reason" in detail["required"] and "code" in detail["required"]
