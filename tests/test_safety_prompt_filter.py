import json
import threading
from pathlib import Path

import pytest

from zaoxiang.safety.errors import SafetyConfigError
from zaoxiang.safety.normalize import canonical, normalize
from zaoxiang.safety.prompt_filter import PromptFilter, parse_blocklist
from zaoxiang.safety.settings import PromptFilterSettings

CORPUS = [json.loads(line) for line in (Path(__file__).parent / "data" / "safety_corpus.jsonl").read_text("utf-8").splitlines()]


@pytest.fixture(scope="module")
def default_filter():
    return PromptFilter.from_settings(PromptFilterSettings())


def test_corpus_covers_both_languages_evasions_and_traps():
    kinds = {(r["lang"], r["expect"]) for r in CORPUS}
    assert {("en", "block"), ("zh", "block"), ("en", "allow"), ("zh", "allow")} <= kinds
    notes = " ".join(r["note"] for r in CORPUS)
    for evasion in ("full-width", "spaced", "punctuated", "leet", "pinyin", "mixed case", "zero-width", "allow list"):
        assert evasion in notes


@pytest.mark.parametrize("row", CORPUS, ids=[f'{r["expect"]}:{r["prompt"]}' for r in CORPUS])
def test_corpus(default_filter, row):
    d = default_filter.check(row["prompt"])
    assert d.allowed == (row["expect"] == "allow"), d
    if not d.allowed:
        assert d.category == row["category"]
        assert d.matched_term


def test_canonical_form():
    assert canonical("ＳＥＸ　Ｏｎ\u200b  the  BEACH!!") == "sex on the beachii"
    assert canonical("Pörn") == "porn"
    assert normalize("色 情").han.chars == "色情"
    assert normalize("p0rn 色情").latin.chars == "porn"


def test_allow_list_is_what_lets_a_trap_through(default_filter):
    bare = PromptFilter([e for e in default_filter.block_terms()], allow=[])
    assert not bare.check("an old sextant").allowed
    assert not bare.check("特色情况").allowed
    assert default_filter.check("an old sextant").allowed
    # The allow list hides only overlapping matches: a real term elsewhere still blocks.
    assert not default_filter.check("sextant and porn").allowed


def test_runtime_add_and_remove():
    f = PromptFilter()
    assert f.check("a zorblax monster").allowed
    f.add_block_term("zorblax", "custom")
    d = f.check("a Z0RBLAX monster")
    assert (d.allowed, d.matched_term, d.category) == (False, "zorblax", "custom")
    f.add_allow_term("zorblax toy")
    assert f.check("a zorblax toy").allowed
    assert f.remove_allow_term("zorblax toy")
    assert not f.check("a zorblax toy").allowed
    assert f.remove_block_term("ZORBLAX")
    assert not f.remove_block_term("zorblax")
    assert f.check("a zorblax monster").allowed


def test_chinese_term_added_at_runtime_gets_pinyin():
    f = PromptFilter()
    f.add_block_term("怪兽", "custom")
    assert not f.check("guai shou").allowed
    f.add_block_term("怪物", "custom", pinyin=False)
    assert not f.check("怪物").allowed and f.check("guaiwu").allowed


def test_list_files_extend_defaults(tmp_path):
    block = tmp_path / "block.txt"
    block.write_text("# deployment terms\n\nzorblax\tcustom\n鬼怪\tcustom\tnopinyin\n", encoding="utf-8")
    allow = tmp_path / "allow.txt"
    allow.write_text("# ok\nzorblax toy\tfrom a toy shop\n", encoding="utf-8")
    f = PromptFilter.from_settings(PromptFilterSettings(blocklist_paths=[block], allowlist_paths=[allow]))
    assert not f.check("zorblax").allowed
    assert not f.check("porn").allowed  # defaults still on
    assert f.check("zorblax toy").allowed
    assert f.check("guiguai").allowed and not f.check("鬼怪").allowed
    only = PromptFilter.from_settings(PromptFilterSettings(use_default_lists=False, blocklist_paths=[block]))
    assert only.check("porn").allowed and not only.check("zorblax").allowed


@pytest.mark.parametrize(
    "text, message",
    [("porn\n", "expected 'term<TAB>category"), ("porn\tsexual\tloud\n", "unknown flag"), ("\tsexual\n", "expected")],
)
def test_bad_list_lines_name_file_and_line(text, message):
    with pytest.raises(SafetyConfigError) as info:
        parse_blocklist("# header\n" + text, "deploy.txt")
    assert "deploy.txt:2" in info.value.message and message in info.value.message


def test_missing_list_file_is_a_config_error(tmp_path):
    with pytest.raises(SafetyConfigError, match="cannot read"):
        PromptFilter.from_settings(PromptFilterSettings(blocklist_paths=[tmp_path / "nope.txt"]))


def test_empty_term_rejected():
    with pytest.raises(SafetyConfigError):
        PromptFilter().add_block_term(" ?. ", "custom")


def test_checks_stay_consistent_while_lists_change(default_filter):
    f = PromptFilter(default_filter.block_terms(), default_filter.allow_terms())
    errors: list[BaseException] = []

    def edit():
        for i in range(200):
            f.add_block_term(f"zz{i}term", "custom")
            f.remove_block_term(f"zz{i}term")

    def read():
        try:
            for _ in range(200):
                assert not f.check("porn").allowed
                assert f.check("a red apple").allowed
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=edit)] + [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
