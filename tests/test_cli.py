import subprocess
import sys

from zaoxiang.cli import main
from zaoxiang.cli.common import output_paths
from zaoxiang.cli.generate import parse_size


def test_generate_without_model_says_how_to_point_at_one(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("ZAOXIANG_BUILTIN", "false")
    monkeypatch.delenv("ZAOXIANG_MODELS", raising=False)
    code = main(["generate", "a red apple", "-o", str(tmp_path / "x.png")])
    err = capsys.readouterr().err
    assert code == 1
    assert "no model is installed" in err and "--model" in err
    assert not (tmp_path / "x.png").exists()


def test_generate_bad_size_names_the_flag(capsys):
    assert main(["generate", "a", "--size", "big"]) == 1
    assert "--size" in capsys.readouterr().err


def test_generate_bad_value_names_the_field(capsys, monkeypatch):
    monkeypatch.setenv("ZAOXIANG_BUILTIN", "false")
    assert main(["generate", "a", "--steps", "0"]) == 1
    assert "steps" in capsys.readouterr().err


def test_size_parsing():
    assert parse_size("1024x768") == (1024, 768)
    assert parse_size(None) == (None, None)


def test_output_paths(tmp_path):
    assert output_paths(str(tmp_path / "a.png"), 1, [5], "png") == [tmp_path / "a.png"]
    two = output_paths(str(tmp_path / "a.png"), 2, [5, 6], "png")
    assert [p.name for p in two] == ["a-1.png", "a-2.png"]
    in_dir = output_paths(str(tmp_path), 2, [5, 6], "webp")
    assert all(p.parent == tmp_path and p.suffix == ".webp" for p in in_dir)
    assert in_dir[0].name.endswith("-5.webp")


def test_console_script_runs():
    out = subprocess.run([sys.executable, "-m", "zaoxiang", "--help"], capture_output=True, text=True, check=True)
    assert "generate" in out.stdout and "models" in out.stdout


def test_generate_tiny_flux_writes_png_with_metadata_and_watermark(tmp_path, tiny_model_dir, monkeypatch):
    from PIL import Image

    from zaoxiang.engine.metadata import read_metadata
    from zaoxiang.safety.watermark import read_watermark

    monkeypatch.setenv("ZAOXIANG_DATA_DIR", str(tmp_path / "data"))
    folder = tiny_model_dir("flux")
    out = tmp_path / "apple.png"
    code = main(["generate", "--model", str(folder), "a red apple", "--size", "256x256", "--steps", "2",
                 "--seed", "5", "-o", str(out), "--quiet"])
    assert code == 0 and out.is_file()
    meta = read_metadata(out.read_bytes())
    assert "Seed: 5" in meta["parameters"] and meta["zaoxiang"]["model"]["family"] == "flux"
    assert read_watermark(Image.open(out)) is not None

    plain = tmp_path / "plain.png"
    assert main(["generate", "--model", str(folder), "a red apple", "--size", "256x256", "--steps", "2",
                 "--seed", "5", "-o", str(plain), "--quiet", "--no-watermark"]) == 0
    assert read_watermark(Image.open(plain)) is None
