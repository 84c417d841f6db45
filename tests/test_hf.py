"""`hf:` targets: transformers models built from a config alone, with inputs chosen from the
model's main input. Configs are written to tmp_path; nothing is fetched from the network (the
hf:ORG/NAME tests run offline, against a cache folder made here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from costmodel import analyze
from costmodel.cli import main

transformers = pytest.importorskip("transformers")


def config_folder(tmp_path: Path, config: Any, name: str = "model") -> Path:
    folder = tmp_path / name
    config.save_pretrained(folder)
    return folder


def torch_madds(config: Any, inputs: dict[str, torch.Tensor], head: bool = False) -> int:
    """FlopCounterMode on a real CPU run of the same config (eager attention: torch counts its
    matmuls, where the CPU's fused attention kernel would count zero), divided by 2."""
    config = type(config).from_dict({**config.to_dict(), "attn_implementation": "eager"})
    build = transformers.AutoModelForCausalLM if head else transformers.AutoModel
    model = build.from_config(config).eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(**inputs)
    return counter.get_total_flops() // 2


def gpt2_config(**kwargs: Any) -> Any:
    return transformers.GPT2Config(n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                   vocab_size=100, **kwargs)


def test_a_config_folder_with_token_ids_clipped_to_the_model_positions(tmp_path: Path) -> None:
    config = gpt2_config()
    analysis = analyze(f"hf:{config_folder(tmp_path, config)}")
    (spec,) = analysis.inputs
    assert spec.shape == (1, 64) and spec.dtype == torch.int64  # n_positions < 128
    ids = torch.randint(0, 100, (1, 64))
    assert analysis.total().madds == torch_madds(config, {"input_ids": ids})
    assert not analysis.unsupported()


def test_the_config_architecture_is_built_head_included(tmp_path: Path) -> None:
    config = gpt2_config(architectures=["GPT2LMHeadModel"])
    analysis = analyze(f"hf:{config_folder(tmp_path, config)}")
    ids = torch.randint(0, 100, (1, 64))
    madds = analysis.total().madds
    assert madds == torch_madds(config, {"input_ids": ids}, head=True)
    base = analyze(f"hf:{config_folder(tmp_path, gpt2_config(), 'base')}").total().madds
    assert madds - base == 64 * 32 * 100  # the LM head: tokens x width x vocabulary


def test_pixels_from_the_config_image_size_and_channels(tmp_path: Path) -> None:
    config = transformers.ViTConfig(image_size=32, patch_size=8, num_channels=1, hidden_size=32,
                                    num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=64)
    analysis = analyze(f"hf:{config_folder(tmp_path, config)}")
    (spec,) = analysis.inputs
    assert spec.shape == (1, 1, 32, 32) and spec.dtype == torch.float32
    pixels = torch.randn(1, 1, 32, 32)
    assert analysis.total().madds == torch_madds(config, {"pixel_values": pixels})


def test_whisper_gets_log_mel_frames_and_decoder_ids(tmp_path: Path) -> None:
    config = transformers.WhisperConfig(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, num_mel_bins=16,
        max_source_positions=40, max_target_positions=24, vocab_size=100,
        pad_token_id=1, bos_token_id=2, eos_token_id=2, decoder_start_token_id=3)
    analysis = analyze(f"hf:{config_folder(tmp_path, config)}")
    assert [s.shape for s in analysis.inputs] == [(1, 16, 80), (1, 24)]
    inputs = {"input_features": torch.randn(1, 16, 80),
              "decoder_input_ids": torch.randint(0, 100, (1, 24))}
    assert analysis.total().madds == torch_madds(config, inputs)


def test_video_frames_come_before_the_channels(tmp_path: Path) -> None:
    config = transformers.VideoMAEConfig(image_size=32, patch_size=8, num_frames=4,
                                         tubelet_size=2, hidden_size=32, num_hidden_layers=1,
                                         num_attention_heads=4, intermediate_size=64)
    analysis = analyze(f"hf:{config_folder(tmp_path, config)}")
    assert [s.shape for s in analysis.inputs] == [(1, 4, 3, 32, 32)]
    video = torch.randn(1, 4, 3, 32, 32)
    assert analysis.total().madds == torch_madds(config, {"pixel_values": video})


def test_filter_bank_frames_end_where_the_subsampled_positions_do(tmp_path: Path) -> None:
    config = transformers.Speech2TextConfig(
        d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=4,
        decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, vocab_size=100,
        max_source_positions=100, max_target_positions=20, num_conv_layers=2,
        conv_channels=16, input_feat_per_channel=10, input_channels=1, pad_token_id=1,
        bos_token_id=0, eos_token_id=2, decoder_start_token_id=2)
    analysis = analyze(f"hf:{config_folder(tmp_path, config)}")
    assert [s.shape for s in analysis.inputs] == [(1, 400, 10), (1, 20)]  # 100 x 2**2 frames
    inputs = {"input_features": torch.randn(1, 400, 10),
              "decoder_input_ids": torch.randint(0, 100, (1, 20))}
    assert analysis.total().madds == torch_madds(config, inputs)


def test_raw_audio_is_one_second_at_16_khz() -> None:
    analysis = analyze("hf:wav2vec2")  # the library's default config: no file, no network
    assert [s.shape for s in analysis.inputs] == [(1, 16000)]
    assert not analysis.unsupported()


def test_input_shape_overrides_the_size_and_keeps_token_ids_integer(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = config_folder(tmp_path, gpt2_config())
    assert main(["analyze", f"hf:{folder}", "--input-shape", "2,16", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["inputs"] == [{"shape": [2, 16], "dtype": "int64"}]
    assert report["model"] == f"hf:{folder}"


def test_hf_targets_work_in_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    small = config_folder(tmp_path, gpt2_config(), "small")
    wide = config_folder(tmp_path, gpt2_config(n_inner=256), "wide")  # MLP 4x32=128 -> 256
    assert main(["diff", f"hf:{small}", f"hf:{wide}", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    madds = report["models"][0]["totals"]["madds"]
    # two layers, two MLP matrices each, 64 tokens x 32 wide x 128 more hidden units
    assert madds["after"] - madds["before"] == 2 * 2 * 64 * 32 * 128


def test_a_budget_file_names_a_config_folder_next_to_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    project = tmp_path / "project"
    config_folder(project, gpt2_config(), "cfg")
    (project / "costmodel.toml").write_text(
        '[models.tiny]\ntarget = "hf:./cfg"\nmax_madds = "2M"\n')
    monkeypatch.chdir(tmp_path)  # the folder is found next to the budget file, not here
    code = main(["check", "--config", str(project / "costmodel.toml"), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    (limit,) = report["models"][0]["limits"]
    # per token and layer: q, k, v, out 4 x 32 x 32, MLP 2 x 32 x 128; per layer the scores
    # and the weighted sum 2 x 64 x 64 x 32; 64 tokens, 2 layers
    assert limit["value"] == 2 * (64 * (4 * 32 * 32 + 2 * 32 * 128) + 2 * 64 * 64 * 32)
    assert not limit["ok"]


BAD = [
    ("hf:", "name a model"),
    ("hf:no_such_type", "unknown model type 'no_such_type'"),
    ("hf:./no/such/folder", "no such folder"),
]


@pytest.mark.parametrize(("target", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_hf_targets_are_one_line(target: str, message: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", target]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err


def test_a_folder_without_config_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", f"hf:{tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "no config.json" in err and len(err.strip().splitlines()) == 1


def test_a_model_whose_code_lives_in_its_repository_is_refused_unrun(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ran = tmp_path / "ran"
    (tmp_path / "configuration_custom.py").write_text(
        f"open({str(ran)!r}, 'w').close()\n"
        "from transformers import PretrainedConfig\n"
        "class CustomConfig(PretrainedConfig):\n    model_type = 'custom_thing'\n")
    (tmp_path / "config.json").write_text(json.dumps(
        {"model_type": "custom_thing", "auto_map": {
            "AutoConfig": "configuration_custom.CustomConfig"}}))
    assert main(["analyze", f"hf:{tmp_path}"]) == 2
    err = capsys.readouterr().err
    assert "trust_remote_code" in err and len(err.strip().splitlines()) == 1, err
    assert not ran.exists()  # the folder's Python was never imported


def test_without_transformers_a_clear_line(monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails, as when absent
    assert main(["analyze", "hf:bert"]) == 2
    err = capsys.readouterr().err
    assert "needs the transformers library" in err and len(err.strip().splitlines()) == 1


def offline(tmp_path: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """The command line in a fresh process, offline, with a hub cache of its own."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path / "hub"),
           "HF_HOME": str(tmp_path / "home")}
    return subprocess.run([sys.executable, "-m", "costmodel.cli", *argv], env=env,
                          capture_output=True, text=True, check=False)


def test_org_name_reads_the_cached_config_offline(tmp_path: Path) -> None:
    repo = tmp_path / "hub" / "models--someone--tiny-gpt2"
    snapshot = repo / "snapshots" / ("0" * 40)
    gpt2_config().save_pretrained(snapshot)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    done = offline(tmp_path, "analyze", "hf:someone/tiny-gpt2", "--format", "json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["inputs"] == [{"shape": [1, 64], "dtype": "int64"}]
    assert report["totals"]["params"] == sum(  # the config's model, counted without weights
        p.numel() for p in transformers.GPT2Model(gpt2_config()).parameters())


def test_org_name_not_cached_offline_is_one_line(tmp_path: Path) -> None:
    done = offline(tmp_path, "analyze", "hf:someone/not-cached")
    assert done.returncode == 2
    assert "hf:someone/not-cached: cannot get config.json" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_config_attribute_that_raises_is_taken_as_absent() -> None:
    """Some configs raise their own error for an attribute defined per layer; the MoE check
    reads it as absent instead of failing the whole target (found by `batch 'hf:*'`)."""
    from costmodel.capture.hf import _is_moe

    class PerLayer(Exception):
        pass

    class Config:
        num_local_experts = 8

        @property
        def num_experts(self) -> int:
            raise PerLayer("defined per layer")

    class Dense:
        @property
        def num_experts(self) -> int:
            raise PerLayer("defined per layer")

    assert _is_moe(Config()) and not _is_moe(Dense())
