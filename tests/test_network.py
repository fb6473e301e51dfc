"""The network is one setting: ``course.toml`` ``[model] name`` -> ``$SALIENCY_MODEL`` -> ``helpers.load_model``."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import helpers
from course_tools.network import course_network, kernel_env
from course_tools.paths import CourseError
from helpers.model import (DEFAULT_NETWORK, MODEL_ENV_VAR, NETWORKS, UntrainedWeightsWarning, load_model,
                           network, network_metadata, weights_description, weights_fingerprint)

OTHERS = ["resnet18", "mobilenet_v3_small"]


def _untrained(name: str) -> torch.nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UntrainedWeightsWarning)
        return load_model("untrained", "cpu", name=name)


def test_the_default_is_squeezenet_without_any_setting(monkeypatch):
    monkeypatch.delenv(MODEL_ENV_VAR, raising=False)
    assert network().name == DEFAULT_NETWORK == "squeezenet1_1"
    assert set(OTHERS) <= set(NETWORKS)


def test_the_environment_names_the_network_and_a_wrong_name_is_refused(monkeypatch):
    monkeypatch.setenv(MODEL_ENV_VAR, "resnet18")
    assert network().name == "resnet18"
    monkeypatch.setenv(MODEL_ENV_VAR, "vgg16")
    with pytest.raises(ValueError, match=r"\$SALIENCY_MODEL must name one of the course's networks .*'vgg16'"):
        network()
    with pytest.raises(ValueError, match=r"^name must name one of"):
        load_model("untrained", "cpu", name="alexnet")


@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_network_uses_imagenets_preprocessing_and_class_names(name):
    meta = network_metadata(name)
    assert np.allclose(meta["mean"], helpers.IMAGENET_MEAN) and np.allclose(meta["std"], helpers.IMAGENET_STD)
    assert meta["crop_size"] == 224 and len(meta["categories"]) == 1000
    assert meta["categories"] == network_metadata(DEFAULT_NETWORK)["categories"]


@pytest.mark.parametrize("name", OTHERS)
def test_each_untrained_network_is_deterministic_frozen_and_alive(name, dataset):
    first, second = _untrained(name), _untrained(name)
    assert weights_fingerprint(first) == weights_fingerprint(second)
    assert weights_fingerprint(first) != weights_fingerprint(_untrained(DEFAULT_NETWORK))
    assert not first.training and not any(p.requires_grad for p in first.parameters())
    assert first.network == name and NETWORKS[name].title in weights_description(first)
    X = helpers.preprocess_batch(dataset.X[:4]).requires_grad_(True)
    scores = first(X)
    scores.gather(1, torch.from_numpy(dataset.y[:4]).view(-1, 1)).sum().backward()
    assert scores.shape == (4, 1000) and torch.isfinite(scores).all()
    assert (X.grad.flatten(1).abs().amax(1) > 0).all(), "every image has a non-zero gradient"


def test_the_untrained_warning_names_the_network():
    with pytest.warns(UntrainedWeightsWarning, match="ResNet-18 has UNTRAINED"):
        load_model("untrained", "cpu", name="resnet18")


def test_a_weights_file_of_another_network_is_refused_by_its_hash(tmp_path):
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(_untrained("resnet18").state_dict(), path)
    from helpers.model import WeightsUnavailableError

    with pytest.raises(WeightsUnavailableError, match=r"not torchvision's ResNet-18 file: .*expected f37072fd"):
        load_model(path, "cpu", name="resnet18")


def test_course_toml_names_the_network(tmp_path):
    assert course_network(tmp_path) == DEFAULT_NETWORK                          # no course.toml
    (tmp_path / "course.toml").write_text('[student]\nrepository = "https://x.org/a"\n')
    assert course_network(tmp_path) == DEFAULT_NETWORK                          # no [model]
    (tmp_path / "course.toml").write_text('[model]\nname = "mobilenet_v3_small"\n')
    assert course_network(tmp_path) == "mobilenet_v3_small"
    assert kernel_env(tmp_path, {"SALIENCY_WEIGHTS": "untrained"}) == {
        MODEL_ENV_VAR: "mobilenet_v3_small", "SALIENCY_WEIGHTS": "untrained"}
    for text, words in (('[model]\nname = "vgg16"\n', r"\[model\] name in .* must be one of squeezenet1_1"),
                        ('model = "resnet18"\n', r"\[model\] in .* must be a table"),
                        ("[model\n", "cannot be read as TOML")):
        (tmp_path / "course.toml").write_text(text)
        with pytest.raises(CourseError, match=words):
            course_network(tmp_path)


def test_this_course_uses_the_default_network():
    assert course_network(Path(__file__).resolve().parents[1]) == DEFAULT_NETWORK
