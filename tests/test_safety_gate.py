import json
import threading

import numpy as np
import pytest

from tests.test_safety_watermark import emoji_image, roundtrip
import argparse

from zaoxiang.cli import COMMAND_MODULES, verify
from zaoxiang.safety.audit import AuditLog, AuditRecord
from zaoxiang.safety.errors import PromptBlocked
from zaoxiang.safety.gate import SafetyGate
from zaoxiang.safety.settings import AuditSettings, SafetySettings
from zaoxiang.safety.watermark import make_payload, read_watermark, short_id


def settings(tmp_path, **parts) -> SafetySettings:
    return SafetySettings.model_validate({"audit": {"path": tmp_path / "audit.jsonl"}, **parts})


def test_everything_is_on_by_default():
    gate = SafetyGate(SafetySettings())
    assert gate.prompt_filter_on and gate.image_check_on and gate.watermark_on and gate.audit_on


def test_prompt_checks_and_negative_prompt_switch(tmp_path):
    gate = SafetyGate(settings(tmp_path))
    assert not gate.check_prompt("p o r n").allowed
    # "nude" in a negative prompt asks for less of it; only checked when switched on.
    assert gate.check_prompt("a cat", "nude, blurry").allowed
    strict = SafetyGate(settings(tmp_path, prompt_filter={"check_negative_prompt": True}))
    assert not strict.check_prompt("a cat", "nude, blurry").allowed
    with pytest.raises(PromptBlocked) as info:
        gate.require_prompt("色情图片")
    assert info.value.code == "prompt_blocked" and info.value.http_status == 400
    assert info.value.field == "prompt" and "sexual" in info.value.message and "色情" not in info.value.message


def test_master_switch_turns_every_part_off(tmp_path):
    gate = SafetyGate(settings(tmp_path, enabled=False))
    image = emoji_image("🍎", (255, 255, 255), 256)
    assert gate.check_prompt("porn").allowed
    assert gate.check_images([image])[0].action == "pass"
    assert gate.watermark([image])[0] is image
    gate.audit(prompt="porn", decision="allowed")
    assert not (tmp_path / "audit.jsonl").exists()


def test_process_images_marks_passing_outputs_and_skips_small_ones(tmp_path):
    gate = SafetyGate(settings(tmp_path))
    big, small = emoji_image("🍎", (255, 255, 255), 256), emoji_image("🍎", (255, 255, 255), 128)
    out, decisions = gate.process_images([big, small], job_id="job-42")
    assert [d.action for d in decisions] == ["pass", "pass"]
    assert read_watermark(roundtrip(out[0], "JPEG", quality=90)) == make_payload(short_id("job-42"))
    assert out[1] is small  # below 256×256: documented as returned unmarked


def test_audit_records_are_json_lines(tmp_path):
    gate = SafetyGate(settings(tmp_path))
    decision = gate.check_prompt("ｐｏｒｎ")
    gate.audit(prompt="ｐｏｒｎ", decision="prompt_blocked", key_id="k1", request_hash="abc", prompt_decision=decision)
    gate.audit(prompt="一只猫", decision="allowed", key_id="k1", request_hash="def", image_decisions=gate.check_images([]))
    gate.close()
    lines = (tmp_path / "audit.jsonl").read_text("utf-8").splitlines()
    first, second = (json.loads(line) for line in lines)
    assert first["decision"] == "prompt_blocked" and first["category"] == "sexual" and first["key_id"] == "k1"
    assert first["request_hash"] == "abc" and first["matched_term"] == "porn" and "time" in first
    assert second["prompt"] == "一只猫" and "一只猫" in lines[1]  # readable Chinese, not \u escapes
    assert second["image_scores"] == []


def test_audit_rotates_by_size_and_keeps_n_files_under_threads(tmp_path):
    log = AuditLog(AuditSettings(path=tmp_path / "a" / "audit.jsonl", max_bytes=2048, backup_count=3))

    def write(worker: int):
        for i in range(100):
            log.write(AuditRecord(prompt=f"w{worker} p{i} " + "x" * 40, decision="allowed"))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.3"]
    for p in (tmp_path / "a").iterdir():
        assert p.stat().st_size <= 2048
        for line in p.read_text("utf-8").splitlines():
            assert json.loads(line)["decision"] == "allowed"  # no interleaved half-lines


def main(argv):
    # Only the verify subcommand, so this test does not depend on the other commands importing.
    parser = argparse.ArgumentParser(prog="zaoxiang")
    verify.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_verify_cli(tmp_path, capsys):
    assert "verify" in COMMAND_MODULES
    from tests.test_metadata import result

    from zaoxiang.engine.metadata import encode_image

    gate = SafetyGate(settings(tmp_path))
    marked = gate.watermark([emoji_image("🐱", (30, 90, 200), 256)], job_id="job-7")[0]
    png = tmp_path / "marked.png"
    png.write_bytes(encode_image(marked, result(), 0, "png"))
    jpg = tmp_path / "marked.jpg"
    marked.save(jpg, quality=90)
    plain = tmp_path / "plain.png"
    emoji_image("🐱", (30, 90, 200), 256).save(plain)

    assert main(["verify", str(png), str(jpg)]) == 0
    out = capsys.readouterr().out
    assert out.count(f"watermark present (zaoxiang, id {short_id('job-7').hex()})") == 2
    assert "parameters: 一只红苹果, red apple" in out and "zaoxiang:" in out
    assert main(["verify", "--json", str(plain)]) == 1
    record = json.loads(capsys.readouterr().out)
    assert record["watermark"] is False and record["payload"] is None
    assert main(["verify", str(tmp_path / "missing.png")]) == 1
    assert "cannot read image" in capsys.readouterr().out
    assert np.asarray(marked).shape == (256, 256, 3)
