import pytest

from keras_hiri import cli


def test_profile_verb(capsys):
    assert cli.main(["profile", "--variant", "S", "--resolution", "448"]) == 0
    out = capsys.readouterr().out
    assert "hiri_vit_s @ 448x448" in out and "stage5" in out


def test_unknown_verb_exits_with_usage():
    with pytest.raises(SystemExit) as info:
        cli.main(["fly"])
    assert info.value.code == 2


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="Unknown HIRI-ViT variant"):
        cli.main(["profile", "--variant", "XXL"])


def test_train_verb_help(capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert "--no-distillation" in out and "--ema-momentum" in out and "BackupAndRestore" in out


def test_train_verb_needs_a_data_source():
    with pytest.raises(SystemExit) as info:
        cli.main(["train", "--output-dir", "x"])
    assert info.value.code == 2
