"""The four flat LivePortrait checkpoints: our modules' state-dict layout and the filled weights' digests equal the manifest's."""

from __future__ import annotations

import pytest
import torch

from conftest import LP_NETWORKS, lp_file_entry


@pytest.mark.parametrize("network_id", ["F", "M", "W", "G"])
def test_state_dict_layout_matches_manifest(network_id, lp_manifest):
    entry = lp_file_entry(lp_manifest, network_id)
    with torch.device("meta"):
        module = LP_NETWORKS[network_id](**entry["config"])
        default = LP_NETWORKS[network_id]()
    shapes = {name: t.shape for name, t in module.state_dict().items()}
    assert {name: t.shape for name, t in default.state_dict().items()} == shapes, "defaults != manifest config"
    actual = [(name, list(t.shape), str(t.dtype).removeprefix("torch.")) for name, t in module.state_dict().items()]
    expected = [(t["name"], t["shape"], t["dtype"]) for t in entry["tensors"]]
    assert actual == expected
    parameters = {name for name, _ in module.named_parameters()}
    assert parameters == {t["name"] for t in entry["tensors"] if t["kind"] == "parameter"}
    assert sum(p.numel() for p in module.parameters()) == entry["num_parameters"]


@pytest.mark.parametrize("network_id", ["F", "M", "W", "G"])
def test_fill_digest_matches_manifest(network_id, fill_weights, lp_manifest, filled):
    entry = lp_file_entry(lp_manifest, network_id)
    _, state_dict = filled(network_id)
    assert fill_weights.state_dict_digest(state_dict) == entry["fill_digest_sha256"]
